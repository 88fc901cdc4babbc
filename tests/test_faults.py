"""Bad input and faults, tried as a careful user would: each case ends with a non-zero exit, no
traceback, one line starting ``vitae: error:`` (or the documented interrupt line), and every file
that was in the run folders before byte-identical (or, for a resumed run, the result of an
uninterrupted one). Families: values, the file system, damaged run files, signals, ``vitae
reproduce`` and the Python API (the concurrent writers are in ``tests/training/test_lock.py``)."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import write_mnist_folder
from vitae import cli, models, transforms
from vitae.training import checkpoint

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "mnist_vae.toml")


def train_args(data, out, *extra):
    return ["train", CONFIG, f"data_root={data}", "epochs=1", "warmup=1", "batch_size=128", "eval_batch_size=64",
            *extra, "--quiet", "--out", str(out)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_mnist_folder(tmp_path_factory.mktemp("faults") / "idx")


@pytest.fixture(scope="module")
def trained_once(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("faults") / "run"
    assert cli.main(train_args(data, out)) == 0
    assert cli.main(["evaluate", str(out), "--samples", "2", "--quiet"]) == 0
    return out


@pytest.fixture
def run(trained_once, tmp_path):
    """A fresh copy of a trained and evaluated run folder."""
    copy = tmp_path / "run"
    shutil.copytree(trained_once, copy)
    return copy


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} \
        if folder.is_dir() else {}


def expect_one_line(capsys, argv, *, status=2, contains="", folders=()):
    """Run ``vitae argv``: the exit status, one stderr line ``vitae: error: ...``, no traceback,
    and every folder in ``folders`` byte-identical afterwards."""
    before = [snapshot(f) for f in folders]
    capsys.readouterr()
    assert cli.main([str(a) for a in argv]) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vitae: error: "), err
    assert "Traceback" not in err[0] and contains in err[0], err[0]
    assert [snapshot(f) for f in folders] == before
    for folder in folders:  # no temporary file left behind
        assert not [p for p in folder.rglob("*.tmp")]
    return err[0]


# ---- values -------------------------------------------------------------------------------------

@pytest.mark.parametrize("override, message", [
    ("appearance_dim=0", "appearance_dim"), ("latent_dim=0", "latent_dim"), ("width=0", "width"),
    ("width=-1", "width"), ("beta=nan", "beta"), ("lr=inf", "lr"), ("lr=0", "lr"), ("epochs=0", "epochs"),
    ("batch_size=-4", "batch_size"), ("warmup=-1", "warmup"), ("eval_samples=0", "eval_samples"),
    ("architecture=resnet", "unknown architecture"), ("likelihood=poisson", "unknown likelihood"),
    ("nonsense=1", "unknown config key"), ("epochs=ten", "must be a int"),
    ("'data_options={n_trian=5}'", "takes no data_options"),
    ("'data_options={random_affine={degrees=400}}'", "degrees must be a number in [0, 180]"),
    ("'data_options={random_affine={translate=[2, 0]}}'", "translate must be two fractions"),
    ("'data_options={random_affine=5}'", "random_affine must be a table"),
    ("'metric_options={num_trian=5}'", "unknown metric_options"),
    ("'metric_options={dci_estimator=\"forest\"}'", "unknown DCI estimator"),
    ("'metric_options={protocols=[1]}'", "protocols must be a table"),
    ("device=tpu", "unknown device"),
])
def test_invalid_values_stop_before_any_work(override, message, data, tmp_path, capsys):
    out = tmp_path / "new"
    argv = train_args(data, out, override.strip("'"))
    expect_one_line(capsys, argv, contains=message)
    assert not (out / "config.json").exists() and not (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "{run}", "--limit", "0"], "--limit must be at least 1"),
    (["evaluate", "{run}", "--limit", "-5"], "--limit must be at least 1"),
    (["evaluate", "{run}", "--samples", "0"], "--samples must be at least 1"),
    (["evaluate", "{run}", "--device", "tpu"], "unknown device"),
    (["train", "--resume", "--out", "{run}", "lr=1"], "--resume keeps the run's config"),
    (["train", "--resume", "--out", "{run}", "model=cvitae"], "--resume keeps the run's config"),
    (["train", CONFIG, "--out", "{run}"], "already holds a run"),
])
def test_invalid_commands_on_a_run_leave_it_as_it_was(argv, message, run, capsys):
    expect_one_line(capsys, [a.format(run=run) for a in argv], contains=message, folders=[run])


# ---- the file system ----------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "evaluate", "plot", "resume", "reproduce"])
def test_out_naming_a_file(command, data, tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("keep me")
    argv = {"train": train_args(data, target), "evaluate": ["evaluate", target], "plot": ["plot", target],
            "resume": ["train", "--resume", "--out", target],
            "reproduce": ["reproduce", "table1", "--scale", "quick", "--out", target, "--quiet"]}[command]
    expect_one_line(capsys, argv)
    assert target.read_text() == "keep me"


def test_a_missing_run_folder(tmp_path, capsys):
    for argv in (["evaluate", tmp_path / "none"], ["plot", tmp_path / "none"], ["train", "--resume", "--out", tmp_path / "none"]):
        expect_one_line(capsys, argv, contains="does not exist")


@pytest.mark.parametrize("errno_value, message", [(errno.ENOSPC, "no space left"), (errno.EACCES, "permission denied"),
                                                  (errno.EROFS, "read-only")])
@pytest.mark.parametrize("command", ["resume", "evaluate"])
def test_a_failing_disk_keeps_what_was_saved(command, errno_value, message, run, capsys, monkeypatch):
    """A full disk, a folder without write permission, a read-only file system: the write of the
    checkpoint or metrics fails, simulated at ``fsync`` (where a full disk shows up)."""
    def failing_fsync(fd):
        raise OSError(errno_value, os.strerror(errno_value))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    argv = ["train", "--resume", "--quiet", "--out", run, "epochs=2"] if command == "resume" else \
        ["evaluate", run, "--samples", "2", "--quiet"]
    before = snapshot(run)
    capsys.readouterr()
    assert cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vitae: error: ") and message in err[0], err
    after = snapshot(run)
    # the checkpoint and the metrics are the saved ones; nothing half-written, no temporary file
    for name in ("checkpoint.pt", "metrics.json", "config.json"):
        assert after[name] == before[name], name
    assert not list(run.rglob("*.tmp"))


def test_an_unwritable_parent_folder(data, tmp_path, capsys, monkeypatch):
    real_mkdir = Path.mkdir

    def refused(self, *args, **kwargs):
        if self.name == "new":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refused)
    expect_one_line(capsys, train_args(data, tmp_path / "new"), contains="permission denied")


def test_figures_being_a_file(run, capsys):
    (run / "figures").write_text("not a folder")
    expect_one_line(capsys, ["plot", run], contains="figures")


# ---- damaged run files --------------------------------------------------------------------------

DAMAGE = {
    "config_not_json": ("config.json", b"{ not json"),
    "config_a_list": ("config.json", b"[1, 2, 3]"),
    "config_binary": ("config.json", bytes(range(256))),
    "config_unknown_key": ("config.json", b'{"model": "vae", "colour": "red"}'),
    "config_wrong_type": ("config.json", b'{"model": "vae", "epochs": "many"}'),
    "metrics_a_list": ("metrics.json", b"[1, 2]"),
    "metrics_not_json": ("metrics.json", b"{ half"),
    "checkpoint_random": ("checkpoint.pt", bytes(range(256)) * 16),
    "checkpoint_random_2": ("checkpoint.pt", b"\x80\x02" + bytes((i * 37) % 256 for i in range(4094))),  # a pickle header
    "checkpoint_empty": ("checkpoint.pt", b""),
    "checkpoint_truncated": ("checkpoint.pt", None),  # the first half of the real one
    "log_garbage_row": ("log.csv", None),  # a row of garbage appended
    "log_no_header": ("log.csv", b"1,2,3\n4,5,6\n"),
}


def readers(name: str) -> list[str]:
    """The commands that read a run file: the log only on resume, the metrics only in evaluate."""
    return {"log.csv": ["resume"], "metrics.json": ["evaluate"]}.get(name, ["resume", "evaluate", "plot"])


@pytest.mark.parametrize("damage, command", [(d, c) for d in sorted(DAMAGE) for c in readers(DAMAGE[d][0])])
def test_damaged_run_files(damage, command, run, capsys):
    name, content = DAMAGE[damage]
    path = run / name
    if damage == "checkpoint_truncated":
        content = path.read_bytes()[: path.stat().st_size // 2]
    elif damage == "log_garbage_row":
        content = path.read_bytes() + b"x,y,z\n"
    path.write_bytes(content)
    argv = {"resume": ["train", "--resume", "--quiet", "--out", run, "epochs=2"],
            "evaluate": ["evaluate", run, "--samples", "2", "--quiet"], "plot": ["plot", run]}[command]
    line = expect_one_line(capsys, argv, folders=[run])
    assert "weights_only=False" not in line  # never advise loading an untrusted file unsafely


def test_a_checkpoint_of_another_model(run, data, tmp_path, capsys):
    other = tmp_path / "other"
    assert cli.main(train_args(data, other, "model=cvitae")) == 0
    shutil.copy(other / "checkpoint.pt", run / "checkpoint.pt")
    for argv in (["evaluate", run, "--samples", "2", "--quiet"], ["train", "--resume", "--quiet", "--out", run, "epochs=2"]):
        expect_one_line(capsys, argv, contains="does not match", folders=[run])


class Payload:
    """An object that is not a tensor: a checkpoint holding it needs unsafe unpickling."""


def test_a_checkpoint_holding_other_objects_is_refused_safely(run, capsys):
    torch.save({"model": Payload()}, run / "checkpoint.pt")
    line = expect_one_line(capsys, ["evaluate", run, "--samples", "2", "--quiet"], folders=[run])
    assert "weights_only" not in line


def test_a_run_killed_before_its_first_checkpoint_resumes(data, tmp_path, capsys):
    out = tmp_path / "killed"
    assert cli.main(train_args(data, out)) == 0
    reference = checkpoint.load(out / "checkpoint.pt")["model"]
    (out / "checkpoint.pt").unlink()
    (out / "log.csv").unlink()
    assert cli.main(["train", "--resume", "--quiet", "--out", str(out)]) == 0
    resumed = checkpoint.load(out / "checkpoint.pt")["model"]
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)


def test_resuming_a_finished_run_says_nothing_was_left(run, capsys):
    before = snapshot(run)
    capsys.readouterr()
    assert cli.main(["train", "--resume", "--quiet", "--out", str(run)]) == 0
    assert "nothing left to do" in capsys.readouterr().err
    after = snapshot(run)
    assert {k: v for k, v in after.items() if k != "log.csv"} == {k: v for k, v in before.items() if k != "log.csv"}


def test_log_rows_are_replaced_atomically_not_appended(run):
    with (run / "log.csv").open() as old:  # a reader holding the file sees it whole and unchanged
        before = old.read()
        assert cli.main(["train", "--resume", "--quiet", "--out", str(run), "epochs=2"]) == 0
        old.seek(0)
        assert old.read() == before  # the new rows went into a new file, renamed over the old one
    assert len((run / "log.csv").read_text().splitlines()) == 3


# ---- signals ------------------------------------------------------------------------------------

def run_cli(args, **kwargs):
    # Ctrl-C's default handler, as in a terminal (a test runner started in the background inherits
    # an ignored SIGINT)
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from vitae.cli import main; sys.exit(main(sys.argv[1:]))")
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, **kwargs)


@pytest.mark.parametrize("sig, status, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_a_signal_during_training_keeps_the_checkpoint_and_resumes_exactly(sig, status, name, data, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    argv = ["train", CONFIG, f"data_root={data}", "epochs=40", "warmup=1", "batch_size=32", "eval_batch_size=64",
            "--quiet"]
    assert subprocess.run([sys.executable, "-m", "vitae", *argv, "--out", str(straight)], capture_output=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}).returncode == 0
    process = run_cli([*argv, "--out", killed])
    deadline = time.time() + 60
    while not (killed / "log.csv").is_file() and time.time() < deadline:  # at least one epoch done
        time.sleep(0.05)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("training finished before the signal arrived")
    assert process.returncode == status, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"vitae: interrupted ({name})") and "--resume" in lines[0]
    assert not list(killed.rglob("*.tmp"))
    assert cli.main(["train", "--resume", "--quiet", "--out", str(killed)]) == 0
    a = checkpoint.load(straight / "checkpoint.pt")["model"]
    b = checkpoint.load(killed / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigint_during_evaluate_leaves_the_metrics(run):
    before = snapshot(run)
    process = run_cli(["evaluate", run, "--samples", "300000", "--quiet"])  # about a minute of work
    time.sleep(5)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    if process.returncode in (0, -signal.SIGINT):
        pytest.skip("evaluation finished before the signal arrived")
    lines = err.strip().splitlines()
    assert process.returncode == 130 and len(lines) == 1 and "metrics.json is as it was" in lines[0]
    assert "--resume" not in lines[0]
    assert snapshot(run) == before


# ---- vitae reproduce ----------------------------------------------------------------------------

SCALES = {
    "not_toml": b"name = [unclosed",
    "not_utf8": b"name = \"\xff\xfe\"\n",
    "models_a_string": None,
    "seeds_strings": None,
    "no_timing": b"name = \"x\"\n[table1]\nmodels = [\"vae\"]\ndatasets = []\nseeds = [0]\n[stability]\n[figures]\n",
}


@pytest.mark.parametrize("case", sorted(SCALES))
def test_bad_scale_files_leave_nothing_behind(case, tmp_path, capsys):
    quick = (ROOT / "src" / "vitae" / "reproduce" / "scales" / "quick.toml").read_text()
    content = SCALES[case]
    if case == "models_a_string":
        content = quick.replace('models = ["vae", "beta_vae", "beta_tcvae", "dip_vae", "uvitae", "cvitae"]', 'models = "vae"').encode()
    elif case == "seeds_strings":
        content = quick.replace("seeds = [0]", 'seeds = ["zero"]', 1).encode()
    scale = tmp_path / "scale.toml"
    scale.write_bytes(content)
    out = tmp_path / "out"
    expect_one_line(capsys, ["reproduce", "table1", "--scale", scale, "--out", out, "--quiet"])
    assert not out.exists()  # no reproduce.json marker that would refuse the next scale


# ---- the Python API -----------------------------------------------------------------------------

TRANSFORM_CASES = {
    "theta_batch": (lambda t, x, th: t.warp(x, th[:3]), r"images must have shape \[3, C, H, W\]"),
    "images_3d": (lambda t, x, th: t.warp(x[:, 0], th), r"images must have shape \[4, C, H, W\]"),
    "theta_width": (lambda t, x, th: t.warp(x, th[:, :2]), r"theta must have shape \[B, \d+\]"),
    "theta_1d": (lambda t, x, th: t.warp(x, th[0]), r"theta must have shape \[B, \d+\]"),
    "theta_list": (lambda t, x, th: t.warp(x, th.tolist()), r"theta must have shape \[B, \d+\], got list"),
    "prepared_batch": (lambda t, x, th: t.prepare(th)(x[:2]), r"images must have shape \[4, C, H, W\]"),
    "points_2d": (lambda t, x, th: t.transform_points(torch.zeros(4, 2), th), r"points must have shape \[4, P, 2\]"),
    "points_batch": (lambda t, x, th: t.transform_points(torch.zeros(3, 5, 2), th), r"points must have shape \[4, P, 2\]"),
    "points_3_coordinates": (lambda t, x, th: t.transform_points(torch.zeros(4, 5, 3), th), r"points must have shape \[4, P, 2\]"),
}


@pytest.mark.parametrize("case", sorted(TRANSFORM_CASES))
@pytest.mark.parametrize("family", ["affine", "affine_decomp", "affine_diffeo", "cpab"])
def test_transforms_name_the_argument_and_the_shape(family, case):
    t = transforms.create(family)
    call, message = TRANSFORM_CASES[case]
    with pytest.raises(ValueError, match=message):
        call(t, torch.rand(4, 1, 8, 8), torch.zeros(4, t.theta_dim))


MODEL_CASES = {
    "wrong_size": (lambda m: m(torch.rand(2, 1, 32, 32)), r"x must be images \[B, 1, 28, 28\], got \[2, 1, 32, 32\]"),
    "three_d": (lambda m: m(torch.rand(2, 28, 28)), r"x must be images \[B, 1, 28, 28\]"),
    "channels": (lambda m: m.encode(torch.rand(2, 3, 28, 28)), r"x must be images"),
    "flat": (lambda m: m.reconstruct(torch.rand(2, 784)), r"x must be images"),
    "representation": (lambda m: m.representation(torch.rand(2, 1, 27, 28)), r"x must be images"),
    "zero_samples": (lambda m: m.log_weights(torch.rand(2, 1, 28, 28), 0), r"n_samples must be a whole number of at least 1"),
    "negative_sample": (lambda m: m.sample(-1), r"n must be a whole number of at least 0"),
    "fractional_sample": (lambda m: m.sample(2.5), r"n must be a whole number"),
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
@pytest.mark.parametrize("name", sorted(models.REGISTRY))
def test_models_name_the_argument_and_the_shape(name, case):
    model = models.create(name, (1, 28, 28), dataset_size=100)
    call, message = MODEL_CASES[case]
    with pytest.raises(ValueError, match=message):
        call(model)


# ---- the real file system: a small tmpfs, a read-only folder without root's override -----------

@pytest.fixture
def small_disk(tmp_path):
    """A 5 MB tmpfs: room for one MNIST VAE run folder (about 3.4 MB) but not for a second checkpoint."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root); the simulated full disk above still runs")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], capture_output=True)


def test_a_really_full_disk_keeps_the_checkpoint(run, small_disk, capsys):
    target = small_disk / "run"
    shutil.copytree(run, target)
    before = snapshot(target)
    capsys.readouterr()
    assert cli.main(["train", "--resume", "--quiet", "--out", str(target), "epochs=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left" in err[0] and str(target) in err[0]
    after = snapshot(target)
    assert after["checkpoint.pt"] == before["checkpoint.pt"] and after["metrics.json"] == before["metrics.json"]
    assert not [p for p in target.rglob("*") if p.name.endswith(".tmp")]


WITHOUT_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]


@pytest.mark.parametrize("command", [["evaluate", "{run}", "--samples", "2", "--quiet"], ["plot", "{run}"],
                                     ["train", "--resume", "--quiet", "--out", "{run}", "epochs=2"]])
def test_a_read_only_run_folder_without_root_override(command, run):
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to drop the override capabilities")
    before = snapshot(run)
    for path in [run, *run.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        done = subprocess.run([*WITHOUT_OVERRIDE, sys.executable, "-m", "vitae", *[a.format(run=run) for a in command]],
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    finally:
        for path in [run, *run.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("vitae: error: "), done.stderr[-1500:]
    assert "permission denied" in lines[0]
    assert snapshot(run) == before


def test_a_path_writer_replaces_whole_or_not_at_all(tmp_path):
    """vitae.files.replace_by_path (the image cache's memmap, the compiled kernels): the new file
    appears whole under its name; a writer that fails, with a full disk or anything else, leaves
    the old file as it was and no temporary file, and the disk's error names the path."""
    from vitae import files
    from vitae.errors import VitaeError

    target = tmp_path / "cache.npy"
    files.replace_by_path(target, lambda tmp: tmp.write_bytes(b"first"))
    assert target.read_bytes() == b"first"

    def full_disk(tmp):
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(VitaeError, match=f"no space left on the device to write {target}"):
        files.replace_by_path(target, full_disk)

    def interrupted(tmp):
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.replace_by_path(target, interrupted)
    assert target.read_bytes() == b"first" and sorted(p.name for p in tmp_path.iterdir()) == ["cache.npy"]
