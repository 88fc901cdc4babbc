"""One writer per run folder: while another process holds a run's lock, train (new or --resume),
evaluate, plot and reproduce refuse it (or, reproduce, skip it) with one line and leave every
file byte-identical; a holder killed with SIGKILL leaves no stale lock."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vitae import cli
from vitae.training.lock import LOCK_NAME

HOLD = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    time.sleep(120)
""")


def hold(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s lock (until killed)."""
    folder.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder / LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def train_args(root, out, *extra):
    return ["train", "configs/mnist_vae.toml", f"data_root={root}", "epochs=1", "warmup=1", "batch_size=128",
            "eval_batch_size=64", "--quiet", "--out", str(out), *extra]


@pytest.fixture
def trained(tiny_mnist, tmp_path):
    out = tmp_path / "run"
    assert cli.main(train_args(tiny_mnist, out)) == 0
    return out


@pytest.mark.parametrize("command", ["train_new", "resume", "evaluate", "plot"])
def test_a_second_process_is_refused_and_nothing_changes(command, trained, tiny_mnist, tmp_path, capsys):
    target = tmp_path / "fresh" if command == "train_new" else trained
    holder = hold(target)
    before = snapshot(target)
    try:
        argv = {"train_new": train_args(tiny_mnist, target),
                "resume": ["train", "--resume", "--quiet", "--out", str(target), "epochs=2"],
                "evaluate": ["evaluate", str(target), "--samples", "2", "--quiet"],
                "plot": ["plot", str(target)]}[command]
        capsys.readouterr()
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("vitae: error: ") and "in use by another vitae process" in err[0]
        assert snapshot(target) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holder_leaves_no_stale_lock(trained):
    holder = hold(trained)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert cli.main(["train", "--resume", "--quiet", "--out", str(trained), "epochs=2"]) == 0


def test_reproduce_skips_a_run_that_another_process_holds(tmp_path):
    from vitae.reproduce import jobs as jobs_module
    from vitae.reproduce import load_scale, table1_jobs

    job = table1_jobs(load_scale("quick"))[0]
    holder = hold(tmp_path / "runs" / job.name)
    try:
        assert jobs_module.ensure(job, tmp_path, log=lambda *_: None).status == "busy"
        assert not (tmp_path / "runs" / job.name / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
