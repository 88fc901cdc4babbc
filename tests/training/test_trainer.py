"""The training loop: warm-up schedule, resume giving the same parameters as an uninterrupted run,
atomic checkpoints readable with weights_only, divergence recorded without losing what was saved."""

import csv
import json

import pytest
import torch

from vitae import config as config_module
from vitae.errors import DivergedError, VitaeError
from vitae.training import checkpoint, trainer
from vitae.training.evaluate import evaluate
from vitae.training.trainer import Run, kl_weight, train


def tiny_config(root, **overrides):
    values = {"model": "cvitae", "data_root": str(root), "epochs": 3, "warmup": 2, "batch_size": 64,
              "eval_batch_size": 64, "lr": 1e-3, "seed": 7, **overrides}
    return config_module.from_dict(values)


def test_kl_warmup_schedule():
    assert [kl_weight(e, 4) for e in (1, 2, 4, 5, 100)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    assert kl_weight(1, 0) == 1.0


def params(run_path):
    return checkpoint.load(run_path / "checkpoint.pt")["model"]


def assert_same_parameters(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_matches_an_uninterrupted_run(tiny_mnist, tmp_path):
    straight = train(tiny_config(tiny_mnist), tmp_path / "straight", progress=False)
    train(tiny_config(tiny_mnist, epochs=1), tmp_path / "split", progress=False)
    resumed = train(tiny_config(tiny_mnist, epochs=3), tmp_path / "split", resume=True, progress=False)
    assert_same_parameters(params(straight.path), params(resumed.path))
    with (resumed.path / "log.csv").open() as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1", "2", "3"]


def test_resume_after_a_kill_mid_epoch(tiny_mnist, tmp_path, monkeypatch):
    straight = train(tiny_config(tiny_mnist), tmp_path / "straight", progress=False)

    original = trainer._append_log

    def killed_in_epoch_two(path, row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt  # as if the process were killed before epoch 2 was saved
        original(path, row)

    monkeypatch.setattr(trainer, "_append_log", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tiny_mnist), tmp_path / "killed", progress=False)
    monkeypatch.setattr(trainer, "_append_log", original)
    assert checkpoint.load(tmp_path / "killed" / "checkpoint.pt")["epoch"] == 1
    resumed = train(None, tmp_path / "killed", resume=True, progress=False)
    assert_same_parameters(params(straight.path), params(resumed.path))


def test_checkpoint_loads_with_weights_only(tiny_mnist, tmp_path):
    run = train(tiny_config(tiny_mnist, epochs=1), tmp_path / "run", progress=False)
    state = torch.load(run.checkpoint, weights_only=True)
    assert state["epoch"] == 1 and state["config"]["model"] == "cvitae"
    assert {"torch", "data"} <= set(state["rng"]) and "state" in state["optimizer"]
    assert not list(run.path.glob("*.tmp"))


def test_an_existing_run_is_not_overwritten(tiny_mnist, tmp_path):
    run = train(tiny_config(tiny_mnist, epochs=1), tmp_path / "run", progress=False)
    before = run.checkpoint.read_bytes()
    with pytest.raises(VitaeError, match="already holds a run; pass --resume"):
        train(tiny_config(tiny_mnist, epochs=1), run.path, progress=False)
    assert run.checkpoint.read_bytes() == before


def test_resume_refuses_a_changed_model(tiny_mnist, tmp_path):
    train(tiny_config(tiny_mnist, epochs=1), tmp_path / "run", progress=False)
    with pytest.raises(VitaeError, match="these keys differ from it: model"):
        train(tiny_config(tiny_mnist, epochs=2, model="vae"), tmp_path / "run", resume=True, progress=False)


def test_divergence_is_recorded_and_the_checkpoint_kept(tiny_mnist, tmp_path, monkeypatch):
    run_path = tmp_path / "run"
    train(tiny_config(tiny_mnist, epochs=1), run_path, progress=False)
    saved = (run_path / "checkpoint.pt").read_bytes()

    original_forward = trainer.models.GenerativeModel.forward

    def poisoned(self, x, kl_weight=1.0):
        out = original_forward(self, x, kl_weight)
        out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(trainer.models.GenerativeModel, "forward", poisoned)
    with pytest.raises(DivergedError, match="diverged at epoch 2, step 0"):
        train(tiny_config(tiny_mnist, epochs=2), run_path, resume=True, progress=False)
    metrics = json.loads((run_path / "metrics.json").read_text())
    assert metrics["diverged"] is True and metrics["diverged_at_epoch"] == 2
    assert (run_path / "checkpoint.pt").read_bytes() == saved
    monkeypatch.setattr(trainer.models.GenerativeModel, "forward", original_forward)
    evaluate(run_path, samples=2, progress=False)  # the last good checkpoint, the record kept
    metrics = json.loads((run_path / "metrics.json").read_text())
    assert metrics["diverged"] is True and metrics["epochs_trained"] == 1 and "test_log_px" in metrics


def test_a_truncated_checkpoint_is_a_clear_error(tiny_mnist, tmp_path):
    run = train(tiny_config(tiny_mnist, epochs=1), tmp_path / "run", progress=False)
    data = run.checkpoint.read_bytes()
    run.checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(VitaeError, match="truncated or corrupt"):
        trainer.load_trained(Run(run.path))


def test_not_a_run_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VitaeError, match="is not a run folder"):
        trainer.load_trained(Run(tmp_path / "empty"))
    with pytest.raises(VitaeError, match="does not exist"):
        trainer.load_trained(Run(tmp_path / "missing"))


def test_training_improves_the_test_elbo(tiny_mnist, tmp_path):
    run = train(tiny_config(tiny_mnist, epochs=6, warmup=0, model="vae"), tmp_path / "run", progress=False)
    with run.log.open() as f:
        elbos = [float(row["test_elbo"]) for row in csv.DictReader(f)]
    assert elbos[-1] > elbos[0] + 10


def test_the_training_set_size_reaches_beta_tcvae(tiny_mnist, tmp_path):
    run = train(tiny_config(tiny_mnist, epochs=1, model="beta_tcvae"), tmp_path / "run", progress=False)
    assert trainer.build_model(trainer.config_module.load_json(run.config), (1, 28, 28), 256).dataset_size == 256
    pinned = tiny_config(tiny_mnist, model="beta_tcvae", model_options={"dataset_size": 10})
    assert trainer.build_model(pinned, (1, 28, 28), 256).dataset_size == 10
