"""The warning for epochs of fewer than 10 gradient steps: when it appears, what it counts and
the batch size it proposes (a power of two giving at least 10 steps)."""

import pytest
import torch

from vitae import config as config_module
from vitae.training.trainer import MIN_STEPS, few_steps_warning, train


@pytest.mark.parametrize("n, batch, steps, proposed", [(180, 512, 1, 16), (1000, 128, 8, 64), (95, 10, 10, None),
                                                       (9, 4, 3, 1), (5000, 512, 10, None)])
def test_the_warning_counts_the_steps_and_proposes_a_batch(n, batch, steps, proposed):
    text = few_steps_warning(n, batch)
    assert (text is None) == (steps >= MIN_STEPS)
    if text is not None:
        assert f"only {steps} gradient step(s) ({n} training images, batch_size {batch})" in text
        assert f"batch_size={proposed} ({-(-n // proposed)} steps)" in text
        assert proposed == 1 or -(-n // proposed) >= MIN_STEPS


def test_training_warns_once_on_stderr_unless_quiet(tmp_path, capsys):
    images = torch.rand(60, 1, 8, 8)  # 54 training images at batch 32: two steps an epoch
    config = config_module.Config(model="vae", epochs=2, warmup=1, batch_size=32)
    train(config, tmp_path / "run", data=images)
    err = capsys.readouterr().err
    assert err.count("vitae: warning: an epoch is only 2 gradient step(s) (54 training images, batch_size 32)") == 1
    train(config, tmp_path / "quiet", data=images, progress=False)  # --quiet: no bar, no advice
    assert "warning" not in capsys.readouterr().err
