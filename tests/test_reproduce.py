"""``vitae reproduce``: the quick scale of every target end to end, skipping and resuming runs, the
report's numbers against the run folders, and the bad input of the issue."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from vitae import config as config_module
from vitae import reproduce as rep
from vitae.cli import main
from vitae.errors import VitaeError
from vitae.reproduce import jobs as jobs_module
from vitae.reproduce import report
from vitae.training import checkpoint


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """``vitae reproduce all --scale quick`` once for the module (a few minutes on 2 cores)."""
    out = tmp_path_factory.mktemp("quick")
    assert main(["reproduce", "all", "--scale", "quick", "--out", str(out), "--quiet"]) == 0
    return out


def test_quick_scale_of_every_target(quick):
    text = (quick / "report.md").read_text()
    for title in report.TITLES.values():
        assert f"## {title}" in text
    scale = rep.load_scale("quick")
    for job in rep.table1_jobs(scale):
        metrics = json.loads((quick / "runs" / job.name / "metrics.json").read_text())
        assert metrics["epochs_trained"] == job.config.epochs
        assert np.isfinite(metrics["test_log_px"]) and np.isfinite(metrics["test_elbo"])
        assert metrics["dci_estimator"] == "classifier"  # the paper's D_score, disentanglement_lib's
        assert 0.0 <= metrics["d_score"] <= 1.0  # every Table 1 data set has known factors (MNIST via affine_mnist)
    for job in rep.stability_jobs(scale):
        run = quick / "runs" / job.name
        assert (run / "log.csv").is_file() or json.loads((run / "metrics.json").read_text())["diverged"]
    assert (quick / "figures" / "stability.png").is_file()
    seed = scale["figures"]["seed"]
    for job in rep.table1_jobs(scale, seeds=[seed]) + rep.faces_jobs(scale):
        assert (quick / "runs" / job.name / "figures" / "reconstructions.png").is_file()
        assert f"runs/{job.name}/figures/samples.png" in text
    for row in (r for r, _, _ in __import__("vitae.reproduce.timing", fromlist=["ROWS"]).ROWS):
        assert f"| {row} |" in text


def test_table1_numbers_are_the_run_folders(quick):
    """Every ELBO in the report is the mean of its runs' metrics.json, next to the paper's."""
    text = (quick / "sections" / "table1.md").read_text()
    scale = rep.load_scale("quick")
    for job in rep.table1_jobs(scale):
        data, model = job.name.split("/")[1:3]
        metrics = json.loads((quick / "runs" / job.name / "metrics.json").read_text())
        section = text.split(f"### {rep.paper.DATA_NAMES[data]}")[1].split("###")[0]
        row = next(line for line in section.splitlines() if line.startswith(f"| {rep.paper.MODEL_NAMES[model]} |"))
        elbo_cell = row.split("|")[2]
        assert f"{metrics['test_elbo']:.1f}" in elbo_cell
        assert f"[{rep.paper.TABLE1[data][model][0]:g}]" in elbo_cell or data == "bodies"


def test_rerun_skips_finished_runs(quick):
    checkpoints = sorted((quick / "runs").rglob("checkpoint.pt"))
    before = {p: p.stat().st_mtime_ns for p in checkpoints}
    metrics = {p: p.read_text() for p in (quick / "runs").rglob("metrics.json")}
    lines = []
    rep.reproduce("table1", "quick", quick, log=lines.append)
    assert not any("training" in line or "evaluated" in line for line in lines), lines
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == before
    assert {p: p.read_text() for p in metrics} == metrics


def test_commands_in_the_report_rebuild_each_config(quick):
    """The command line printed for each run parses back to exactly the run's config.json."""
    for job in rep.table1_jobs(rep.load_scale("quick")) + rep.stability_jobs(rep.load_scale("quick")):
        words = shlex.split(job.command(quick).split(" && ")[0])
        assert words[:2] == ["vitae", "train"] and words[-2] == "--out"
        rebuilt = config_module.load(rep.config_file(Path(words[2]).name), words[3:-2])
        stored = config_module.load_json(Path(words[-1]) / "config.json")
        assert rebuilt == stored


def _tiny_scale(tmp_path: Path, lr: float = 1e-3, epochs: int = 2) -> Path:
    text = rep.load_scale("quick")["path"]
    source = Path(text).read_text()
    source = source.replace('name = "quick"', 'name = "tiny"')
    source = re.sub(r"\[stability\][\s\S]*?\n\[timing\]",
                    f'[stability]\ntransforms = ["affine_diffeo"]\nlrs = [{lr}]\nseeds = [0]\n'
                    f'config = {{ epochs = {epochs}, warmup = 1, data_options = {{ n_train = 256, n_test = 64 }} }}\n\n[timing]',
                    source)
    path = tmp_path / "tiny.toml"
    path.write_text(source)
    return path


def test_interrupted_run_resumes_to_the_same_parameters(tmp_path):
    scale = _tiny_scale(tmp_path)
    whole = rep.Reproduction(str(scale), tmp_path / "whole", log=lambda _: None)
    whole.run("stability")
    # the same run interrupted after its first epoch: what is on disk is a 1-epoch checkpoint
    cut = rep.Reproduction(str(scale), tmp_path / "cut", log=lambda _: None)
    job = rep.stability_jobs(cut.scale)[0]
    first = jobs_module.Job(job.name, job.base, job.overrides, config_module.override(job.config, ["epochs=1"]), evaluate=False)
    jobs_module.ensure(first, cut.out, log=lambda _: None)
    assert checkpoint.load(cut.out / "runs" / job.name / "checkpoint.pt")["epoch"] == 1
    lines = []
    cut.log = lines.append
    cut.run("stability")
    assert any("resuming at epoch 1" in line for line in lines)
    a = checkpoint.load(tmp_path / "whole" / "runs" / job.name / "checkpoint.pt")["model"]
    b = checkpoint.load(cut.out / "runs" / job.name / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_diverged_run_is_a_missing_value(tmp_path):
    scale = _tiny_scale(tmp_path, lr=1e6)
    path = rep.reproduce("stability", str(scale), tmp_path / "out", log=lambda _: None)
    row = next(line for line in path.read_text().splitlines() if line.startswith("| affine_diffeo |"))
    assert "diverged (epoch" in row and re.search(r"-\d", row) is None
    rep.reproduce("stability", str(scale), tmp_path / "out", log=lambda _: None)  # a second pass keeps the record


def test_mean_and_spread_over_seeds():
    values = [-120.0, -124.5, -121.25]
    assert report.mean_spread(values, 2) == f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"
    assert report.mean_spread([0.5], 3) == "0.500" and report.mean_spread([], 1) == "-"


def test_cached_truth_renders_each_factor_row_once():
    from vitae.data.bodies import BodiesData

    truth = BodiesData(height=40, width=20)
    calls = []
    render = truth.render
    truth.render = lambda f, rng=None: calls.append(len(f)) or render(f, rng)
    memo = jobs_module.cached(truth)
    rng = np.random.default_rng(0)
    factors = truth.sample_factors(3, rng)
    first = memo.sample_observations_from_factors(factors, rng)
    again = memo.sample_observations_from_factors(np.concatenate([factors[::-1], truth.sample_factors(1, rng)]), rng)
    assert calls == [3, 1]  # the three seen rows are not rendered again
    assert torch.equal(again[:3], first.flip(0)) and torch.equal(first, render(factors, None))
    assert jobs_module.cached(rep.load_scale) is rep.load_scale  # not deterministic: left as it is


def test_paper_scale_is_the_shipped_configs():
    """At paper scale a Table 1 run is its configs/ file, changed only in seed and metric settings."""
    for job in rep.table1_jobs(rep.load_scale("paper")):
        shipped = config_module.load(rep.config_file(job.base)).to_dict()
        differ = {k for k, v in job.config.to_dict().items() if shipped[k] != v}
        # MNIST: the authors' protocol (RandomAffine), the one data option the paper's configs lack
        allowed = {"seed", "metric_data", "metric_options"} | ({"data_options"} if job.config.data == "mnist" else set())
        assert differ <= allowed, (job.name, differ)
        if job.config.data == "mnist":
            assert job.config.data_options == {"random_affine": {"degrees": 20, "translate": [0.1, 0.1]}}


@pytest.mark.parametrize("scale", rep.SCALES)
def test_every_scale_warms_up_over_half_the_epochs(scale):
    """The supplement's rule, warmup = epochs / 2 (rounded either way), for every run of every scale."""
    loaded = rep.load_scale(scale)
    jobs = rep.table1_jobs(loaded) + rep.stability_jobs(loaded) + rep.faces_jobs(loaded)
    for job in jobs:
        assert 2 * job.config.warmup in (job.config.epochs, job.config.epochs + 1), (job.name, job.config.epochs, job.config.warmup)


def test_shipped_configs_warm_up_over_half_the_epochs():
    for path in sorted(Path(str(rep.config_file("mnist_vae.toml"))).parent.glob("*.toml")):
        c = config_module.load(path)
        assert 2 * c.warmup in (c.epochs, c.epochs + 1), path.name


@pytest.mark.parametrize("args, message", [
    (["nonsense", "--scale", "quick"], "unknown target 'nonsense'; choose one of table1, stability, timing, figures or all"),
    (["table1", "--scale", "huge"], "unknown scale 'huge'"),
    (["table1", "--scale", "missing.toml"], "scale file missing.toml does not exist"),
    (["figures", "--scale", "quick", "--celeba", "/no/such/celeba"], "CelebA folder /no/such/celeba does not exist"),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    assert main(["reproduce", *args, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_incompatible_or_foreign_folders_are_left_alone(tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    old = tmp_path / "old"
    old.mkdir()
    (old / "reproduce.json").write_text(json.dumps({"format": 0, "scale": "quick"}))
    other = tmp_path / "other"
    other.mkdir()
    (other / "reproduce.json").write_text(json.dumps({"format": rep.FORMAT, "scale": "medium"}))
    for folder, message in ((foreign, "is not a vitae reproduce folder"), (old, "incompatible version of vitae"),
                            (other, "holds a reproduction at scale 'medium'")):
        before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        assert main(["reproduce", "table1", "--scale", "quick", "--out", str(folder), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err
        assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_run_folder_of_another_config_or_version_is_an_error(tmp_path):
    scale = _tiny_scale(tmp_path)
    out = tmp_path / "out"
    rep.reproduce("stability", str(scale), out, log=lambda _: None)
    job = rep.stability_jobs(rep.load_scale(str(scale)))[0]
    stored = out / "runs" / job.name / "config.json"
    values = json.loads(stored.read_text())
    for change, message in (({"width": 0.25}, "holds a run with another configuration (width differ)"),
                            ({"future_key": 1}, "written by an incompatible version of vitae")):
        stored.write_text(json.dumps({**values, **change}))
        before = {p: p.read_bytes() for p in (out / "runs").rglob("*") if p.is_file()}
        with pytest.raises(VitaeError, match=re.escape(message)):
            rep.reproduce("stability", str(scale), out, log=lambda _: None)
        assert {p: p.read_bytes() for p in (out / "runs").rglob("*") if p.is_file()} == before


def test_mnist_options_and_metric_data_shape():
    from vitae import data
    from vitae.training.evaluate import disentanglement

    full, part = data.create("mnist"), data.create("mnist", n_train=100, n_test=10)
    assert torch.equal(part.train.images, full.train.images[:100]) and len(part.test) == 10
    with pytest.raises(VitaeError, match="data_options.n_train must be a positive whole number"):
        data.create("mnist", n_train=0)
    cfg = config_module.Config(data="sprites", metric_data="affine_mnist")
    with pytest.raises(VitaeError, match=r"metric_data 'affine_mnist' has images of shape \[1, 28, 28\], the model takes \[1, 64, 64\]"):
        disentanglement(cfg, None, image_shape=(1, 64, 64))


def test_scale_tables_reach_each_run_config():
    """A data set's ``config`` reaches every model, ``per_model`` only its model, ``seeds`` override."""
    scale = rep.load_scale("quick")
    scale["table1"]["mnist"] = {**scale["table1"]["mnist"], "seeds": [3, 4],
                                "per_model": {"cvitae": {"transform": "affine", "width": 0.25}}}
    jobs = {job.name: job.config for job in rep.table1_jobs(scale)}
    assert jobs["table1/mnist/cvitae/seed4"].transform == "affine" and jobs["table1/mnist/cvitae/seed4"].width == 0.25
    assert jobs["table1/mnist/uvitae/seed3"].transform == "affine_diffeo" and jobs["table1/mnist/uvitae/seed3"].seed == 3
    assert all(c.epochs == 1 and c.metric_data == "affine_mnist" for name, c in jobs.items() if "/mnist/" in name)
    assert not any(name.endswith("seed0") for name in jobs if "/mnist/" in name)
    scale["table1"]["mnist"]["config"] = {"epochs": 0}
    with pytest.raises(VitaeError, match="run table1/mnist/vae/seed3: config key 'epochs' must be at least 1"):
        rep.table1_jobs(scale)


def test_figures_are_redrawn_after_more_training(quick):
    import os

    run = quick / "runs" / "table1" / "mnist" / "vae" / "seed0"
    drawn = run / "figures" / "reconstructions.png"
    before = drawn.stat().st_mtime_ns
    report.run_figures(run)  # drawn from the current checkpoint: left alone
    assert drawn.stat().st_mtime_ns == before
    later = drawn.stat().st_mtime + 10
    os.utime(run / "checkpoint.pt", (later, later))  # as if training had continued
    report.run_figures(run)
    assert drawn.stat().st_mtime >= later - 10 and drawn.stat().st_mtime_ns != before


def test_paired_d_score_margins_by_hand():
    """C-VITAE's margin over a model is the mean and sample sd of the per-seed differences; a seed
    one of the two lacks is left out of the pairing."""
    def job(model, seed, d):
        j = rep.table1_jobs(rep.load_scale("quick"), seeds=[seed])[0]
        j.config = config_module.from_dict({**j.config.to_dict(), "seed": seed})
        j.status, j.metrics = "finished", {"d_score": d}
        return j

    by_model = {"cvitae": [job("cvitae", 0, 0.5), job("cvitae", 1, 0.4), job("cvitae", 2, 0.6)],
                "vae": [job("vae", 0, 0.2), job("vae", 1, 0.5), job("vae", 2, 0.1)],
                "uvitae": [job("uvitae", 1, 0.3)]}
    text = report.paired_d_scores(by_model)
    diffs = np.array([0.3, -0.1, 0.5])
    assert f"| VAE | {diffs.mean():.3f} ± {diffs.std(ddof=1):.3f} | 2/3 |" in text
    assert "| U-VITAE | 0.100 | 1/1 |" in text


def test_the_quick_bodies_report_has_the_protocol_table(quick):
    text = (quick / "sections" / "table1.md").read_text()
    assert "D_score by scoring protocol" in text and "`pose_beta0`" in text
    metrics = json.loads((quick / "runs" / "table1/bodies/cvitae/seed0" / "metrics.json").read_text())
    assert 0 <= metrics["d_score@pose_beta0"] <= 1


def test_report_only_reads_the_runs_and_touches_nothing(quick, tmp_path, capsys):
    """--report-only writes the report from what the folders hold: the same Table 1 as the run that
    made them, with no run trained, evaluated or drawn again."""
    runs = {p: p.stat().st_mtime_ns for p in (quick / "runs").rglob("*") if p.is_file()}
    made = (quick / "sections" / "table1.md").read_text()
    assert main(["reproduce", "table1", "--scale", "quick", "--out", str(quick), "--quiet", "--report-only"]) == 0
    again = (quick / "sections" / "table1.md").read_text()
    assert again.split("\n", 3)[3] == made.split("\n", 3)[3]  # all but the header's pass time
    assert {p: p.stat().st_mtime_ns for p in (quick / "runs").rglob("*") if p.is_file()} == runs
    capsys.readouterr()
    assert main(["reproduce", "table1", "--scale", "quick", "--out", str(tmp_path / "none"), "--report-only"]) == 2
    assert "holds no reproduction to report on" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
