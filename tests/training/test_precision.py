"""The hint that amp=true would train faster: shown for float32 training on a CPU with bfloat16
instructions and images of at least ``HINT_VALUES`` values, never otherwise, and once per run on
stderr unless quiet."""

import pytest
import torch

from vitae import config as config_module
from vitae.training import precision
from vitae.training.trainer import train

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def bfloat16_cpu(monkeypatch):
    """This CPU taken to have bfloat16 instructions, whatever it has (the hint only reads it)."""
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: True)


@pytest.mark.parametrize("shape, shown", [((1, 400, 200), True), ((3, 128, 128), True), ((1, 100, 100), True),
                                          ((1, 9999), False), ((1, 28, 28), False)])
def test_the_hint_is_shown_from_the_size_on(bfloat16_cpu, shape, shown):
    assert precision.HINT_VALUES == 10_000 and (torch.Size(shape).numel() >= 10_000) == shown
    hint = precision.amp_hint(CPU, shape, amp=False)
    assert (hint is not None) == shown
    if shown:
        assert "amp=true" in hint and "\n" not in hint


def test_no_hint_with_amp_on_a_gpu_or_without_bfloat16(bfloat16_cpu, monkeypatch):
    assert precision.amp_hint(CPU, (1, 400, 200), amp=True) is None
    assert precision.amp_hint(CUDA, (1, 400, 200), amp=False) is None
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: False)
    assert precision.amp_hint(CPU, (1, 400, 200), amp=False) is None


def test_training_gives_the_hint_once_unless_quiet(bfloat16_cpu, tmp_path, capsys):
    images = torch.rand(40, 1, 100, 100)  # 10,000 values an image
    config = config_module.Config(model="vae", epochs=1, warmup=1, batch_size=8, device="cpu")
    train(config, tmp_path / "run", data=images)
    assert capsys.readouterr().err.count("amp=true would run the networks in bfloat16") == 1
    train(config, tmp_path / "quiet", data=images, progress=False)
    assert "amp=true" not in capsys.readouterr().err
    small = torch.rand(40, 1, 28, 28)
    train(config, tmp_path / "small", data=small)
    assert "amp=true" not in capsys.readouterr().err
