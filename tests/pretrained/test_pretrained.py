"""The shipped models: their files, their loading checks and ``pretrained:NAME`` on the command line."""

from __future__ import annotations

import fractions
import json
import re
import shutil

import pytest
import torch

from vitae import pretrained
from vitae.cli import main
from vitae.errors import VitaeError
from vitae.training.trainer import evaluate_elbo, load_data

SHIPPED = ("mnist_cvitae", "mnist_vae", "sprites_cvitae")


def test_the_shipped_models_and_their_records():
    assert set(SHIPPED) <= set(pretrained.names())
    total = sum(p.stat().st_size for p in pretrained.ROOT.rglob("*") if p.is_file())
    assert total < 5 * 2**20
    for name in SHIPPED:
        info = pretrained.info(name)
        assert info["command"].startswith("python scripts/make_pretrained.py")
        assert re.fullmatch(r"[0-9a-f]{40}", info["commit"]) and info["vitae_version"]
        assert pretrained.metrics(name)["epochs_trained"] == info["epochs_trained"] > 0


def test_load_gives_the_stored_float16_parameters():
    model = pretrained.load("mnist_cvitae")
    stored = torch.load(pretrained.folder("mnist_cvitae") / pretrained.WEIGHTS, weights_only=True)["state_dict"]
    assert not model.training
    for key, value in model.state_dict().items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, stored[key].float(), rtol=0, atol=0)


def test_shipped_metrics_belong_to_the_shipped_weights():
    """The test ELBO in metrics.json, computed again from the shipped file (same seed, one sample)."""
    config, model, _, _ = pretrained.load_run("pretrained:mnist_cvitae")
    images = load_data(config).test.images
    torch.manual_seed(config.seed)
    elbo = evaluate_elbo(model, images, config.eval_batch_size)["elbo"]
    assert elbo == pytest.approx(pretrained.metrics("mnist_cvitae")["test_elbo"], rel=1e-3)


@pytest.fixture
def copy(tmp_path, monkeypatch):
    """A copy of the shipped mnist_vae as the only installed model, to damage."""
    shutil.copytree(pretrained.folder("mnist_vae"), tmp_path / "mnist_vae")
    monkeypatch.setattr(pretrained, "ROOT", tmp_path)
    return tmp_path / "mnist_vae"


def _rewrite(folder, **changes):
    path = folder / pretrained.WEIGHTS
    stored = torch.load(path, weights_only=True)
    stored.update(changes)
    torch.save(stored, path)


def _one_line_error(match: str):
    with pytest.raises(VitaeError, match=match) as caught:
        pretrained.load("mnist_vae")
    assert "\n" not in str(caught.value)


def test_corrupt_file(copy):
    (copy / pretrained.WEIGHTS).write_bytes((copy / pretrained.WEIGHTS).read_bytes()[:5000])
    _one_line_error("truncated or corrupt")


def test_not_weights_only(copy):
    torch.save({"format": pretrained.FORMAT, "trap": fractions.Fraction(1, 3)}, copy / pretrained.WEIGHTS)
    _one_line_error("objects other than tensors")


def test_wrong_format_version(copy):
    _rewrite(copy, format_version=99)
    _one_line_error("format version 99, this vitae reads version 1")


def test_not_a_pretrained_file(copy):
    torch.save({"model": {}}, copy / pretrained.WEIGHTS)
    _one_line_error("not a vitae pretrained model file")


def test_wrong_architecture(copy):
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "latent_dim": 6}))
    _one_line_error(r"latent_dims \{'z': 4\}, config.json builds \{'z': 6\}")


def test_parameters_of_another_shape(copy):
    stored = torch.load(copy / pretrained.WEIGHTS, weights_only=True)
    key = next(iter(stored["state_dict"]))
    stored["state_dict"][key] = torch.zeros(3, 3, dtype=torch.float16)
    torch.save(stored, copy / pretrained.WEIGHTS)
    _one_line_error("do not fit the architecture of config.json")


def test_unknown_name():
    with pytest.raises(VitaeError, match="unknown pretrained model 'nope'; choose one of: .*mnist_cvitae"):
        pretrained.load("nope")


def _snapshot():
    return sorted((str(p), p.stat().st_mtime_ns) for p in pretrained.ROOT.rglob("*"))


def test_evaluate_and_plot_a_shipped_model_need_out(tmp_path, capsys):
    before = _snapshot()
    assert main(["evaluate", "pretrained:mnist_vae", "--samples", "2"]) == 2
    err = capsys.readouterr().err
    assert "give --out DIR" in err and err.count("\n") == 1
    assert main(["plot", "pretrained:mnist_vae"]) == 2
    assert main(["evaluate", "pretrained:mnist_vae", "--out", str(tmp_path / "ev"), "--samples", "2", "--limit", "64",
                 "--quiet"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["test_images"] == 64 and metrics["log_px_samples"] == 2
    assert main(["plot", "pretrained:mnist_cvitae", "--out", str(tmp_path / "fig")]) == 0
    assert {"swap.png", "training.png", "traversals_perspective.png"} <= {p.name for p in (tmp_path / "fig").iterdir()}
    assert _snapshot() == before  # nothing written into the package
