"""vitae.kernels: the choice of path (VITAE_KERNELS), a missing compiler (one warning, torch's
path; an error when compiled kernels are demanded), a cache folder that cannot be made, where the
cache is, and processes building one kernel at once."""

import os
import subprocess
import sys

import pytest
import torch

from conftest import fixed_noise_losses
from vitae import kernels, models, transforms
from vitae.errors import VitaeError
from vitae.transforms import affine_sampler

pytestmark = pytest.mark.skipif(kernels.compiler() is None, reason="no C++ compiler")


def test_the_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("VITAE_KERNEL_DIR", raising=False)
    monkeypatch.setenv("VITAE_CACHE", str(tmp_path / "cache"))
    assert kernels.kernel_dir() == tmp_path / "cache" / "kernels"
    monkeypatch.setenv("VITAE_KERNEL_DIR", str(tmp_path / "k"))
    assert kernels.kernel_dir() == tmp_path / "k"


def test_the_choice_of_path(monkeypatch):
    images = torch.rand(2, 1, 8, 8)
    monkeypatch.setenv("VITAE_KERNELS", "torch")
    assert not affine_sampler.usable(images)
    monkeypatch.setenv("VITAE_KERNELS", "auto")
    assert affine_sampler.usable(images)
    assert not affine_sampler.usable(images.half())  # other dtypes keep F.grid_sample
    monkeypatch.setenv("VITAE_KERNELS", "fast")
    with pytest.raises(VitaeError, match="VITAE_KERNELS='fast' is not a choice of kernels; use auto, torch or compiled"):
        affine_sampler.usable(images)


@pytest.fixture
def no_compiler(monkeypatch, tmp_path):
    monkeypatch.setattr(kernels, "compiler", lambda: None)
    monkeypatch.setenv("VITAE_KERNEL_DIR", str(tmp_path))
    kernels.forget()
    yield
    kernels.forget()


def test_without_a_compiler_auto_falls_back_with_one_warning_and_compiled_refuses(monkeypatch, no_compiler):
    monkeypatch.setenv("VITAE_KERNELS", "auto")
    t = transforms.create("affine_diffeo")
    images, theta = torch.rand(2, 1, 8, 8), 0.1 * torch.randn(2, 6)
    with pytest.warns(RuntimeWarning, match="compiled .* is unavailable.*no C\\+\\+ compiler found") as caught:
        warped = t.warp(images, theta)
    assert len(caught) == 1  # the expm's kernel and the sampler's fail alike: one warning
    monkeypatch.setenv("VITAE_KERNELS", "torch")
    assert torch.equal(warped, t.warp(images, theta))  # the F.grid_sample path's numbers
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    with pytest.raises(VitaeError, match="VITAE_KERNELS=compiled, but .* no C\\+\\+ compiler found"):
        t.warp(images, theta)


def test_a_cache_folder_that_cannot_be_made_is_named(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("VITAE_KERNEL_DIR", str(blocker / "kernels"))
    with pytest.raises(VitaeError, match="cannot write the compiled affine_sampler to .*; set VITAE_KERNEL_DIR"):
        kernels.build(affine_sampler.KERNEL.source)


def test_processes_building_at_once_leave_one_whole_library(tmp_path):
    """Ranks of a torchrun job start together on an empty cache: each builds under a temporary
    name of its own and renames it into place; every one loads a whole library and warps."""
    script = ("import torch; from vitae.transforms import affine_sampler as s; "
              "x = torch.rand(2, 1, 5, 5); assert s.usable(x); "
              "assert torch.equal(s.affine_sample(x, torch.eye(2, 3).expand(2, 2, 3)), x)")
    env = {**os.environ, "VITAE_KERNEL_DIR": str(tmp_path), "VITAE_KERNELS": "compiled"}
    runs = [subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True)
            for _ in range(3)]
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 1 and names[0].startswith("affine_sampler-") and names[0].endswith(".so")


@pytest.mark.parametrize("name, transform", [("cvitae", "affine_diffeo"), ("cvitae", "cpab"), ("vae", None)])
def test_a_model_trains_alike_on_both_paths(name, transform, monkeypatch):
    """C-VITAE (the warps and the Bernoulli on its warped mean) and the VAE (the Bernoulli from
    logits) in float64, a few Adam steps from the same weights and noise, with the compiled
    kernels and with torch's operations: the same losses to rounding, step after step (so the
    kernels' gradients are the model's, not just a warp's or a likelihood's)."""
    x = torch.rand(16, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    losses = {}
    for choice in ("compiled", "torch"):
        monkeypatch.setenv("VITAE_KERNELS", choice)
        torch.manual_seed(0)
        model = models.create(name, (1, 28, 28), **({"transform": transform} if transform else {})).double()
        losses[choice] = fixed_noise_losses(model, x, lr=1e-3, steps=4)
    assert losses["compiled"][0] != losses["compiled"][-1]  # the steps did train
    torch.testing.assert_close(losses["compiled"], losses["torch"], rtol=1e-9, atol=0)
