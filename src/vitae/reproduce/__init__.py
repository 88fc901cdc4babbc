"""``vitae reproduce TARGET --scale SCALE --out DIR``: the paper's results, one command each, and a
report that puts ours beside the paper's.

Targets: ``table1`` (six models on sprites, MNIST and bodies: ELBO, log p(x), D_score and the other
disentanglement scores), ``stability`` (supplement Figure 1: C-VITAE on MNIST for the three affine
parameterisations across learning rates), ``timing`` (supplement Table 5 on this machine),
``figures`` (reconstructions, prior samples and latent traversals of every model on every data set,
supplement Figures 2-7, and the faces experiment), and ``all``.

A scale (``quick``, ``medium``, ``paper``, or the path of a TOML file of the same form) is
configuration only: ``vitae/reproduce/scales/SCALE.toml`` says which runs each target makes and
what it changes in the shipped configs (``vitae/configs/DATA_MODEL.toml``).

A scale file has four tables:

* ``[table1]``: ``models``, ``datasets``, ``seeds``; per data set ``[table1.DATA]`` with ``config``
  (config keys changed in ``configs/DATA_MODEL.toml``), optional ``per_model`` (``{MODEL = {...}}``),
  ``seeds``, ``eval_limit`` (test images for ELBO and log p(x); all when absent) and ``note``;
* ``[stability]``: ``transforms``, ``lrs``, ``seeds``, ``curves_lr`` and ``config`` (on
  ``configs/mnist_cvitae.toml``);
* ``[timing]``: ``architectures``, ``repeats``, ``warmup`` and ``batch_size`` (``{ARCHITECTURE = N}``);
* ``[figures]``: ``seed`` (of the Table 1 runs to draw) and ``[figures.faces]`` with ``models``,
  ``config`` (on ``configs/faces_MODEL.toml``) and ``note``.

``DIR`` holds ``reproduce.json`` (format and scale), ``runs/`` (one folder per model, data set and
seed, each an ordinary run folder of ``vitae train``), ``sections/`` (one Markdown section per
target) and ``report.md`` (all sections made so far). Running a target again skips finished runs
and resumes interrupted ones from their last checkpoint; a diverged run stays a recorded
divergence (a missing value), and nothing finished is trained or evaluated again.
"""

from __future__ import annotations

import json
import time
import tomllib
from importlib import resources
from pathlib import Path

import torch

from vitae import config as config_module
from vitae import files
from vitae.errors import VitaeError
from vitae.reproduce import report
from vitae.reproduce.jobs import Job, apply, cached, ensure, status

TARGETS = ("table1", "stability", "timing", "figures")
SCALES = ("quick", "medium", "long", "paper")
FORMAT = 1  # of DIR/reproduce.json and the layout under DIR; a change makes old folders an error


def check_target(target: str) -> None:
    if target != "all" and target not in TARGETS:
        raise VitaeError(f"unknown target '{target}'; choose one of {', '.join(TARGETS)} or all")


def config_file(name: str) -> Path:
    """A shipped config file, by file name."""
    path = Path(str(resources.files("vitae") / "configs" / name))
    if not path.is_file():
        raise VitaeError(f"no shipped config {name}; see the files under configs/")
    return path


def load_scale(scale: str) -> dict:
    """A scale by name (quick, medium, paper) or by the path of a TOML file."""
    if scale in SCALES:
        path = Path(str(resources.files("vitae") / "reproduce" / "scales" / f"{scale}.toml"))
    elif scale.endswith(".toml"):
        path = Path(scale)
        if not path.is_file():
            raise VitaeError(f"scale file {path} does not exist")
    else:
        raise VitaeError(f"unknown scale '{scale}'; choose one of {', '.join(SCALES)}, or give a .toml file")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise VitaeError(f"scale file {path} is not valid UTF-8 TOML: {exc}") from None
    except OSError as exc:
        raise VitaeError(f"cannot read scale file {path}: {exc.strerror or exc}") from None
    values.setdefault("name", path.stem)
    values["path"] = str(path)
    missing = [t for t in TARGETS if t not in values]
    if missing:
        raise VitaeError(f"scale file {path} lacks the tables [{'], ['.join(missing)}]")
    check_scale(values, path)
    return values


def _list_of(value, kind, where: str, path) -> None:
    if not isinstance(value, list) or not value or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise VitaeError(f"scale file {path}: {where} must be a non-empty list of {kind.__name__ if isinstance(kind, type) else 'numbers'}"
                         f", got {value!r}")


def check_scale(values: dict, path) -> None:
    """The lists and tables a scale's targets read, checked before any run starts."""
    for target in TARGETS:
        if not isinstance(values[target], dict):
            raise VitaeError(f"scale file {path}: [{target}] must be a table")
    table1 = values["table1"]
    for key, kind in (("models", str), ("datasets", str), ("seeds", int)):
        _list_of(table1.get(key), kind, f"[table1] {key}", path)
    for data in table1["datasets"]:
        setting = table1.get(data, {})
        if not isinstance(setting, dict) or not isinstance(setting.get("config", {}), dict):
            raise VitaeError(f"scale file {path}: [table1.{data}] must be a table with a config table")
        if "seeds" in setting:
            _list_of(setting["seeds"], int, f"[table1.{data}] seeds", path)
    stability = values["stability"]
    _list_of(stability.get("transforms"), str, "[stability] transforms", path)
    _list_of(stability.get("lrs"), (int, float), "[stability] lrs", path)
    _list_of(values["timing"].get("architectures"), str, "[timing] architectures", path)


def table1_jobs(scale: dict, device: str | None = None, seeds=None) -> list[Job]:
    """The Table 1 runs: every model on every data set, for every seed."""
    section = scale["table1"]
    jobs = []
    for data in section["datasets"]:
        if data not in section:
            raise VitaeError(f"scale {scale['name']}: [table1] lists data set '{data}' but has no [table1.{data}] table")
        setting = section[data]
        for model in section["models"]:
            base = f"{data}_{model}.toml"
            overrides = {**setting.get("config", {}), **setting.get("per_model", {}).get(model, {})}
            for seed in seeds if seeds is not None else setting.get("seeds", section["seeds"]):
                jobs.append(_job(f"table1/{data}/{model}/seed{seed}", base, overrides, seed, device,
                                 evaluate=True, eval_limit=setting.get("eval_limit")))
    return jobs


def _job(name: str, base: str, overrides: dict, seed: int, device: str | None, **kwargs) -> Job:
    overrides = {**overrides, "seed": seed, **({"device": device} if device else {})}
    config = apply(config_module.load(config_file(base)), overrides, f"run {name}")
    return Job(name=name, base=base, overrides=overrides, config=config, **kwargs)


def stability_jobs(scale: dict, device: str | None = None) -> list[Job]:
    section = scale["stability"]
    jobs = []
    for transform in section["transforms"]:
        for lr in section["lrs"]:
            for seed in section.get("seeds", [0]):
                overrides = {**section.get("config", {}), "transform": transform, "lr": float(lr)}
                jobs.append(_job(f"stability/{transform}/lr{lr:g}/seed{seed}", "mnist_cvitae.toml", overrides, seed,
                                 device, evaluate=False))
    return jobs


def faces_jobs(scale: dict, device: str | None = None, celeba: str | None = None) -> list[Job]:
    section = scale["figures"].get("faces")
    if not section:
        return []
    overrides = dict(section.get("config", {}))
    if celeba:
        from vitae.data.faces import celeba_folder

        celeba_folder(Path(celeba).expanduser())  # a missing or empty folder is an error now, not after hours
        overrides["data_root"] = str(Path(celeba).expanduser().resolve())
    return [_job(f"faces/{model}/seed0", f"faces_{model}.toml", overrides, 0, device, evaluate=False)
            for model in section.get("models", ["cvitae"])]


class Reproduction:
    """One output folder ``DIR`` at one scale."""

    def __init__(self, scale: str, out: str | Path, *, device: str | None = None, celeba: str | None = None,
                 progress: bool = False, log=print, report_only: bool = False):
        self.scale = load_scale(scale)
        self.out = Path(out)
        self.report_only = report_only
        self.device, self.celeba, self.progress, self.log = device, celeba, progress, log
        self.command_prefix = f"vitae reproduce {{target}} --scale {scale} --out {self.out}" + \
            (f" --celeba {celeba}" if celeba else "") + (f" --device {device}" if device else "")
        self._truths: dict = {}
        self._check_folder()

    def _check_folder(self) -> None:
        marker = self.out / "reproduce.json"
        if self.out.exists() and not self.out.is_dir():
            raise VitaeError(f"--out {self.out} is a file, not a folder; choose another --out")
        if marker.is_file():
            try:
                stored = json.loads(marker.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError, OSError):
                raise VitaeError(f"{marker} is not valid JSON; it was not written by vitae reproduce") from None
            if not isinstance(stored, dict):
                raise VitaeError(f"{marker} is not a JSON object; it was not written by vitae reproduce")
            if stored.get("format") != FORMAT:
                raise VitaeError(f"{self.out} was written by an incompatible version of vitae (format {stored.get('format')}, "
                                 f"this version writes {FORMAT}); use another --out")
            if stored.get("scale") != self.scale["name"]:
                raise VitaeError(f"{self.out} holds a reproduction at scale '{stored.get('scale')}', not "
                                 f"'{self.scale['name']}'; use another --out")
        elif self.out.exists() and any(self.out.iterdir()):
            raise VitaeError(f"{self.out} exists and is not a vitae reproduce folder; use another --out")
        elif self.report_only:
            raise VitaeError(f"{self.out} holds no reproduction to report on; run the target without --report-only first")
        else:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise files.os_error(self.out, exc) from None
            files.write_text(marker, json.dumps({"format": FORMAT, "scale": self.scale["name"]}, indent=2) + "\n")

    def truth(self, job: Job):
        """One cached ground-truth generator per (data set, options), shared by all its models."""
        from vitae.training.evaluate import metric_truth

        c = job.config
        key = (c.metric_data or c.data, json.dumps(c.data_options, sort_keys=True) if not c.metric_data else "")
        if key not in self._truths:
            self._truths[key] = cached(metric_truth(c))
        return self._truths[key]

    def run_jobs(self, jobs: list[Job]) -> list[Job]:
        """Every job, skipping those another ``vitae reproduce`` on DIR holds; then wait for
        those, so that the report has them all. With ``report_only``, only read what the run
        folders hold: finished and diverged runs count, the others are missing values."""
        if self.report_only:
            for job in jobs:
                status(job, self.out)
            return jobs
        for wait in (False, True):
            pending = [job for job in jobs if job.status in ("pending", "busy")]
            for i, job in enumerate(pending, 1):
                self.log(f"[{i}/{len(pending)}] {job.name}" + (" (waiting for the other process)" if wait else ""))
                ensure(job, self.out, progress=self.progress, truth=self.truth(job) if job.evaluate else None,
                       log=self.log, wait=wait)
        return jobs

    def run(self, target: str) -> Path:
        """Make ``target`` (or ``all``) and rewrite ``DIR/report.md``; returns its path."""
        check_target(target)
        targets = TARGETS if target == "all" else (target,)
        for name in targets:
            if self.report_only and name == "timing":  # a measurement, not a report of runs
                continue
            started = time.perf_counter()
            text = getattr(self, f"_{name}")()
            command = self.command_prefix.format(target=name)
            header = (f"## {report.TITLES[name]}\n\nMade by `{command}` (scale file `{self.scale['path']}`); this "
                      f"pass took {time.perf_counter() - started:.0f} s, not counting runs finished in earlier passes "
                      "(each run's `log.csv` has its epoch times).\n\n")
            sections = self.out / "sections"
            sections.mkdir(exist_ok=True)
            report.write_atomically(sections / f"{name}.md", header + text)
        return self.write_report()

    # the targets: each makes its runs and returns its Markdown section

    def _table1(self) -> str:
        jobs = self.run_jobs(table1_jobs(self.scale, self.device))
        return report.table1(self.scale, jobs, self.out)

    def _stability(self) -> str:
        jobs = self.run_jobs(stability_jobs(self.scale, self.device))
        return report.stability(self.scale, jobs, self.out)

    def _timing(self) -> str:
        from vitae.reproduce import timing

        section = self.scale["timing"]
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and self.device != "cpu" else [])
        tables = []
        for device in devices:
            for architecture in section["architectures"]:
                batch = section.get("batch_size", {}).get(architecture)
                self.log(f"timing: {architecture} on {device}")
                rows = timing.table(architecture, batch_size=batch, repeats=section["repeats"], device=device,
                                    warmup=section.get("warmup", 5))
                shape, default_batch, _ = timing.SETTINGS[architecture]
                tables.append((device, architecture, batch or default_batch, rows))
        return report.timing(tables)

    def _figures(self) -> str:
        seed = self.scale["figures"].get("seed", self.scale["table1"]["seeds"][0])
        jobs = table1_jobs(self.scale, self.device, seeds=[seed])
        for job in jobs:  # the figures need the trained runs, not their evaluation
            job.evaluate = False
        faces = faces_jobs(self.scale, self.device, self.celeba)
        self.run_jobs(jobs + faces)
        for job in jobs + faces:
            if job.status == "finished" and not self.report_only:
                report.run_figures(self.out / "runs" / job.name)
        return report.figures(self.scale, jobs, faces, self.out)

    def write_report(self) -> Path:
        parts = [report.header(self.scale, self.out)]
        for name in TARGETS:
            path = self.out / "sections" / f"{name}.md"
            if path.is_file():
                parts.append(path.read_text())
        path = self.out / "report.md"
        report.write_atomically(path, "\n".join(parts))
        return path


def reproduce(target: str, scale: str, out: str | Path, **kwargs) -> Path:
    """Make ``target`` at ``scale`` in ``out``; see the module. Returns the report's path."""
    check_target(target)  # before the folder is made
    return Reproduction(scale, out, **kwargs).run(target)


__all__ = ["FORMAT", "SCALES", "TARGETS", "Reproduction", "load_scale", "reproduce"]
