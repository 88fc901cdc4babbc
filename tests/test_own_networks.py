"""docs/own_networks.md runs as written: its module and config are written to an empty folder,
its Python block trains a C-VITAE with the user's conv encoder and decoder on a user-made tensor,
resumes, evaluates and plots it; its shell block does the same from a config naming the plugin's
architecture and data set, each command importing the plugin anew (as a fresh process would)."""

import csv
import json
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch

from vitae import data
from vitae.cli import main
from vitae.models import networks

DOC = Path(__file__).parents[1] / "docs" / "own_networks.md"
FIGURES = {"reconstructions.png", "samples.png", "traversals_appearance.png", "traversals_perspective.png",
           "swap.png", "training.png"}


def blocks() -> list[tuple[str | None, str, str]]:
    """``(file name or None, language, code)`` of every fenced block; a block right after a line
    ```NAME`:`` is that file's content."""
    pattern = re.compile(r"(?:^`([\w.]+)`:\n\n)?^```(\w+)\n(.*?)^```", re.M | re.S)
    return [(m.group(1), m.group(2), m.group(3)) for m in pattern.finditer(DOC.read_text())]


def forget_plugin() -> None:
    """What a fresh process would have: no module my_networks and none of its registrations."""
    sys.modules.pop("my_networks", None)
    networks.ARCHITECTURES.pop("small_resnet", None)
    data.REGISTRY.pop("squares", None)


def epochs_logged(run: Path) -> list[str]:
    with (run / "log.csv").open() as f:
        return [row["epoch"] for row in csv.DictReader(f)]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: a second thread only waits (10x slower on a busy machine)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    forget_plugin()
    torch.set_num_threads(threads)


def test_the_worked_example_runs_as_written(folder, capsys):
    found = blocks()
    files = {name: code for name, _, code in found if name}
    assert set(files) == {"my_networks.py", "squares.toml"}
    for name, code in files.items():
        (folder / name).write_text(code)
    python = [code for name, language, code in found if language == "python" and not name]
    shell = [code for name, language, code in found if language == "bash"]
    assert len(python) == 1 and len(shell) == 1

    forget_plugin()
    exec(compile(python[0], str(DOC), "exec"), {"__name__": "own_networks_doc"})
    run = folder / "runs" / "squares"
    assert epochs_logged(run) == ["1", "2"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_trained"] == 2 and metrics["test_images"] == 20 and metrics["log_px_samples"] == 10
    assert metrics["test_log_px"] >= metrics["test_elbo"] - 1.0  # the importance bound is the tighter one
    assert {p.name for p in (run / "figures").glob("*.png")} == FIGURES
    assert "test ELBO" in capsys.readouterr().out
    stored = json.loads((run / "config.json").read_text())
    assert stored["data"] == "in_memory" and stored["architecture"] == "small_resnet"
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["model"]["appearance_encoder.net.net.2.body.0.weight"].shape == (8, 8, 3, 3)  # the user's block
    # in-memory data cannot come back in another process: one line that says what to do
    assert main(["evaluate", str(run), "--quiet"]) == 2
    assert "trained on data passed in from Python" in capsys.readouterr().err

    for line in shell[0].strip().splitlines():
        forget_plugin()  # each command imports my_networks itself, from the config's imports
        argv = shlex.split(line)
        assert argv[0] == "vitae"
        assert main(argv[1:]) == 0, (line, capsys.readouterr().err)
    cli_run = folder / "runs" / "squares_cli"
    assert epochs_logged(cli_run) == ["1", "2"]
    assert json.loads((cli_run / "config.json").read_text())["imports"] == ["my_networks"]
    assert json.loads((cli_run / "metrics.json").read_text())["epochs_trained"] == 2
    assert {p.name for p in (cli_run / "figures").glob("*.png")} == FIGURES
