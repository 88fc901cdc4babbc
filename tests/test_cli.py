"""The command line end to end on a tiny IDX data set, and its one-line errors."""

import json
from pathlib import Path
import subprocess
import sys

import pytest

from vitae.cli import main

CONFIG = str(Path(__file__).parents[1] / "configs" / "mnist_cvitae.toml")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vitae", *args], capture_output=True, text=True)


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["plot"]])
def test_help(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0 and "usage: vitae" in result.stdout


def test_train_evaluate_plot(tiny_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", CONFIG, f"data_root={tiny_mnist}", "epochs=2", "warmup=1",
            "batch_size=64", "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert main(["evaluate", str(out), "--samples", "5", "--quiet"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["log_px_samples"] == 5 and metrics["test_images"] == 64 and metrics["epochs_trained"] == 2
    assert metrics["test_log_px"] < 0 and metrics["test_elbo"] < 0
    assert main(["plot", str(out)]) == 0
    names = {p.name for p in (out / "figures").glob("*.png")}
    assert names == {"reconstructions.png", "samples.png", "traversals_appearance.png",
                     "traversals_perspective.png", "swap.png", "training.png"}
    assert main(["train", "--resume", "--out", str(out), "epochs=3", "--quiet"]) == 0
    assert (out / "log.csv").read_text().count("\n") == 4  # header + 3 epochs


@pytest.mark.parametrize("args, message", [
    (["train", CONFIG, "model=vea", "--out", "{tmp}/r"], "unknown model 'vea'"),
    (["train", CONFIG, "transform=rigid", "--out", "{tmp}/r"], "unknown transformation 'rigid'"),
    (["train", CONFIG, "colour=red", "--out", "{tmp}/r"], "unknown config key 'colour'"),
    (["train", CONFIG, "data_root={tmp}", "--out", "{tmp}/r"], "no IDX file"),
    (["train", "missing.toml", "--out", "{tmp}/r"], "config file missing.toml does not exist"),
    (["evaluate", "{tmp}"], "is not a run folder"),
    (["plot", "{tmp}/nothing"], "does not exist"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    result = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == 2
    assert result.stderr.startswith("vitae: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
