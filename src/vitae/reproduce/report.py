"""The Markdown of ``vitae reproduce``: one section per target, ours beside the paper's, with the
command and configuration behind every number. Pure formatting and plotting; the runs are made in
``vitae.reproduce``."""

from __future__ import annotations

import csv
import datetime
import platform
from pathlib import Path

import numpy as np
import torch

from vitae import __version__, files
from vitae.reproduce import paper
from vitae.reproduce.jobs import Job

TITLES = {"table1": "Table 1: likelihood and disentanglement", "stability": "Stability (supplement Figure 1)",
          "timing": "Timing (supplement Table 5)", "figures": "Figures (supplement Figures 2-7) and faces"}
TABLE1_COLUMNS = [("test_elbo", "ELBO", 1), ("test_log_px", "log p(x)", 1), ("d_score", "D_score", 3),
                  ("dci_completeness", "DCI compl.", 3), ("dci_informativeness", "DCI inform.", 3), ("mig", "MIG", 3),
                  ("factorvae_score", "FactorVAE", 3), ("sap", "SAP", 3)]


def write_atomically(path: Path, text: str) -> None:
    files.write_text(path, text)


def header(scale: dict, out: Path) -> str:
    return (f"# vitae: reproducing Detlefsen & Hauberg (NeurIPS 2019)\n\n"
            f"Scale `{scale['name']}` ({scale.get('description', '')}); vitae {__version__}, torch {torch.__version__}, "
            f"Python {platform.python_version()}, {platform.machine()} with {torch.get_num_threads()} threads"
            f"{', CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else ''}; "
            f"written {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}. Every run folder is under `{out}/runs/`, "
            "with its `config.json`, `log.csv` and `metrics.json`.\n")


def mean_spread(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def _paper(value: float, digits: int) -> str:
    return f"{value:.3g}" if abs(value) >= 1000 else f"{value:.{digits}f}" if digits == 3 else f"{value:g}"


def table1(scale: dict, jobs: list[Job], out: Path) -> str:
    section = scale["table1"]
    seeds = section["seeds"]
    lines = ["Each cell is the mean ± standard deviation over the seeds (one value: one seed); the paper's "
             "number follows in brackets. ELBO and log p(x) are nats per test image (log p(x): importance-weighted, "
             "KL weight 1); the best mean of each column is in bold. `-`: not computed (the data set has no known "
             "factors) or every seed diverged.\n"]
    checks = []
    for data in section["datasets"]:
        setting = section[data]
        lines.append(f"### {paper.DATA_NAMES.get(data, data)}\n")
        note = f"Seeds {setting.get('seeds', seeds)}. " + setting.get("note", "").strip()
        lines.append(note + "\n")
        by_model = {model: [j for j in jobs if j.name.startswith(f"table1/{data}/{model}/")] for model in section["models"]}
        finished_of = {model: [j.metrics for j in runs if j.status == "finished"] for model, runs in by_model.items()}
        means: dict[str, dict[str, float]] = {}
        for model, finished in finished_of.items():
            means[model] = {key: float(np.mean([m[key] for m in finished])) for key, _, _ in TABLE1_COLUMNS
                            if finished and all(key in m for m in finished)}
        best = {key: max((m[key], model) for model, m in means.items() if key in m)[1]
                for key, _, _ in TABLE1_COLUMNS if any(key in m for m in means.values())}
        lines.append("| model | " + " | ".join(title for _, title, _ in TABLE1_COLUMNS) + " | diverged |")
        lines.append("|---" * (len(TABLE1_COLUMNS) + 2) + "|")
        for model, runs in by_model.items():
            finished = finished_of[model]
            cells = []
            for index, (key, _, digits) in enumerate(TABLE1_COLUMNS):
                text = mean_spread([m[key] for m in finished if key in m], digits)
                if best.get(key) == model:
                    text = f"**{text}**"
                reference = paper.TABLE1.get(data, {}).get(model)
                if reference is not None and index < 3:
                    text += f" [{_paper(reference[index], digits)}]"
                cells.append(text)
            diverged = sum(j.status == "diverged" for j in runs)
            lines.append(f"| {paper.MODEL_NAMES.get(model, model)} | " + " | ".join(cells) + f" | {diverged}/{len(runs)} |")
        lines.append("")
        lines += protocol_table(finished_of)
        paired = paired_d_scores(by_model)
        if paired:
            lines += [paired, ""]
        if "d_score" in best:
            checks.append(f"- {paper.DATA_NAMES.get(data, data)}: best D_score **{paper.MODEL_NAMES[best['d_score']]}** "
                          f"(paper: C-VITAE){' as in the paper' if best['d_score'] == 'cvitae' else ', unlike the paper'}.")
        if data == "mnist" and "test_elbo" in best:
            agree = best["test_elbo"] in ("uvitae", "cvitae")
            checks.append(f"- MNIST: best ELBO **{paper.MODEL_NAMES[best['test_elbo']]}** (paper: C-VITAE, U-VITAE next)"
                          f"{' as in the paper' if agree else ', unlike the paper'}.")
    if checks:
        lines += ["**The paper's claims, checked on these runs:**\n", *checks, ""]
    lines.append(commands(jobs, out))
    return "\n".join(lines)


def seed_of(job: Job) -> int:
    return job.config.seed


def paired_d_scores(by_model: dict[str, list[Job]], key: str = "d_score", model: str = "cvitae") -> str:
    """C-VITAE's D_score against each other model, paired by seed: the mean and standard
    deviation of the per-seed difference, and on how many seeds C-VITAE is ahead."""
    ours = {seed_of(j): j.metrics[key] for j in by_model.get(model, []) if j.status == "finished" and key in j.metrics}
    rows = []
    for other, runs in by_model.items():
        theirs = {seed_of(j): j.metrics[key] for j in runs if j.status == "finished" and key in j.metrics}
        common = sorted(set(ours) & set(theirs))
        if other == model or not common:
            continue
        diff = [ours[s] - theirs[s] for s in common]
        rows.append(f"| {paper.MODEL_NAMES.get(other, other)} | {mean_spread(diff, 3)} | {sum(d > 0 for d in diff)}/{len(diff)} |")
    if not rows:
        return ""
    return ("C-VITAE's D_score minus each other model's, paired by seed (mean ± standard deviation of the per-seed "
            "differences; positive: C-VITAE ahead):\n\n| against | margin | seeds ahead |\n|---|---|---|\n" + "\n".join(rows))


def protocol_table(finished_of: dict[str, list[dict]]) -> list[str]:
    """D_score per scoring protocol (``metric_options.protocols``: keys ``d_score@NAME``), when there are any."""
    names = sorted({key.split("@", 1)[1] for runs in finished_of.values() for m in runs for key in m
                    if key.startswith("d_score@")})
    if not names:
        return []
    lines = ["D_score by scoring protocol (`all`: every factor of the data; the others: `metric_options.protocols`):\n",
             "| model | all | " + " | ".join(f"`{n}`" for n in names) + " |", "|---" * (len(names) + 2) + "|"]
    for model, runs in finished_of.items():
        cells = [mean_spread([m[k] for m in runs if k in m], 3) for k in ["d_score", *(f"d_score@{n}" for n in names)]]
        lines.append(f"| {paper.MODEL_NAMES.get(model, model)} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def commands(jobs: list[Job], out: Path) -> str:
    rows = "\n".join(job.command(out) for job in jobs)
    return f"<details><summary>The command of every run ({len(jobs)})</summary>\n\n```\n{rows}\n```\n</details>\n"


def read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def stability(scale: dict, jobs: list[Job], out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    section = scale["stability"]
    lrs = [float(lr) for lr in section["lrs"]]
    curves_lr = float(section.get("curves_lr", lrs[0]))
    final: dict[str, dict[float, list[float]]] = {}
    lines = ["Final test ELBO (nats, one posterior sample per test image, the last epoch's row of `log.csv`) of "
             "C-VITAE on MNIST for each affine parameterisation and learning rate; *diverged* is a run whose loss "
             "became non-finite (a missing value in the plot, as in the paper).\n",
             "| transform | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|---" * (len(lrs) + 1) + "|"]
    for transform in section["transforms"]:
        cells = []
        final[transform] = {}
        for lr in lrs:
            runs = [j for j in jobs if j.name.startswith(f"stability/{transform}/lr{lr:g}/")]
            logs = [read_log(out / "runs" / j.name / "log.csv") for j in runs if j.status == "finished"]
            values = [log[-1]["test_elbo"] for log in logs if log]
            final[transform][lr] = values
            diverged = [j for j in runs if j.status == "diverged"]
            text = mean_spread(values, 1)
            if diverged:
                epochs = ", ".join(str(j.metrics.get("diverged_at_epoch", "?")) for j in diverged)
                text = (text + "; " if values else "") + f"diverged (epoch {epochs})"
            cells.append(text)
        lines.append(f"| {transform} | " + " | ".join(cells) + " |")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 7))
    for transform, by_lr in final.items():
        xs = [lr for lr in lrs if by_lr[lr]]
        top.plot(xs, [np.mean(by_lr[lr]) for lr in xs], "o-", label=transform)
        for job in jobs:
            if job.name.startswith(f"stability/{transform}/lr{curves_lr:g}/") and job.status == "finished":
                log = read_log(out / "runs" / job.name / "log.csv")
                bottom.plot([r["epoch"] for r in log], [r["test_elbo"] for r in log], label=transform)
    top.set(xscale="log", xlabel="learning rate", ylabel="final test ELBO", title="C-VITAE on MNIST")
    top.set_xticks(lrs)
    bottom.set(xlabel="epoch", ylabel="test ELBO", title=f"learning curves at lr {curves_lr:g}")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    (out / "figures").mkdir(exist_ok=True)
    fig.savefig(out / "figures" / "stability.png", dpi=100)
    plt.close(fig)
    lines += ["", "![stability](figures/stability.png)", "", commands(jobs, out)]
    return "\n".join(lines)


def timing(tables: list[tuple[str, str, int, list[dict]]]) -> str:
    lines = ["Median seconds per batch over repeated steps, every model taking turns in one process (so the "
             "ratios survive a busy machine); forward = the loss, backward = gradients and the Adam step. The "
             "paper's figures (GTX TITAN X, its own code) are in brackets where it gives them.\n"]
    for device, architecture, batch, rows in tables:
        lines += [f"**{architecture} on {device}, batch {batch}**\n",
                  "| model | forward s | backward s | step s | step / VAE |", "|---|---|---|---|---|"]
        for row in rows:
            ref = paper.TIMING.get(row["label"], (None, None)) if architecture == "mnist_mlp" else (None, None)
            fwd = f"{row['forward']:.4f}" + (f" [{ref[0]}]" if ref[0] is not None else "")
            bwd = f"{row['backward']:.4f}" + (f" [{ref[1]}]" if ref[1] is not None else "")
            lines.append(f"| {row['label']} | {fwd} | {bwd} | {row['step']:.4f} | {row['ratio']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def run_figures(path: Path) -> None:
    """Write a run's figures (``vitae plot``) unless they were drawn from its current checkpoint."""
    from vitae.plotting.figures import all_figures
    from vitae.training.trainer import Run, load_data, load_trained

    run = Run(path)
    drawn = run.figures / "reconstructions.png"
    if drawn.is_file() and drawn.stat().st_mtime >= run.checkpoint.stat().st_mtime:
        return  # drawn from the current checkpoint
    config, model, _ = load_trained(run, "cpu")
    dataset = load_data(config)
    all_figures(model, dataset.test.images, run.figures, run.log, seed=config.seed)


FIGURE_KINDS = [("reconstructions", "reconstructions (Fig. 2, 5)"), ("samples", "prior samples (Fig. 3, 6)"),
                ("traversals_latent", "traversals"), ("traversals_appearance", "traversals of z_A (Fig. 7)"),
                ("traversals_perspective", "traversals of z_P (Fig. 7)"), ("swap", "appearance of the left, perspective of the top")]


def figures(scale: dict, jobs: list[Job], faces: list[Job], out: Path) -> str:
    lines = ["Test images with their reconstructions, samples from the prior, and traversals of each latent "
             "dimension from -3 to 3 with the others at 0 (for VITAE models, the appearance and perspective spaces "
             "separately). Made with `vitae plot` on the Table 1 runs of the seed shown.\n"]
    groups = [(paper.DATA_NAMES.get(data, data), [j for j in jobs if j.name.startswith(f"table1/{data}/")])
              for data in scale["table1"]["datasets"]]
    if faces:
        note = scale["figures"]["faces"].get("note", "")
        groups.append(("faces (conv model, CPAB [4,4])" + (f": {note.strip()}" if note else ""), faces))
    for title, group in groups:
        lines += [f"### {title}\n", "| model | " + " | ".join(t for _, t in FIGURE_KINDS) + " |", "|---" * (len(FIGURE_KINDS) + 1) + "|"]
        for job in group:
            cells = []
            for kind, _ in FIGURE_KINDS:
                path = out / "runs" / job.name / "figures" / f"{kind}.png"
                cells.append(f"![{kind}](runs/{job.name}/figures/{kind}.png)" if path.is_file() else "")
            label = paper.MODEL_NAMES.get(job.config.model, job.config.model)
            lines.append(f"| {label}{' (diverged)' if job.status == 'diverged' else ''} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(commands(jobs + faces, out))
    return "\n".join(lines)

