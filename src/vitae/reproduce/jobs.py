"""One training run of a reproduction: its configuration, its folder, and how to bring it to
finished without redoing what is done.

``ensure`` trains a run that has not started, resumes one that was interrupted (from its last
checkpoint, ending bit-identical to an uninterrupted run), leaves a finished or diverged one
alone, and evaluates it once when asked. A folder whose configuration differs from the one asked
for (other than in keys a resume may change) is never touched: it is an error that names it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitae import config as config_module
from vitae.config import Config
from vitae.errors import BusyError, DivergedError, VitaeError
from vitae.toml_write import value as toml_value
from vitae.training import checkpoint, lock
from vitae.training.trainer import RESUMABLE_KEYS, Run


def apply(config: Config, overrides: dict, where: str) -> Config:
    """``config`` with the values of ``overrides`` (a table of a scale file) set."""
    try:
        changed = config_module.from_dict({**config.to_dict(), **overrides})
        config_module.check(changed)
    except VitaeError as exc:
        raise VitaeError(f"{where}: {exc}") from None
    return changed


@dataclass
class Job:
    """One run: ``base`` is the config file it starts from, ``overrides`` what the scale changes."""

    name: str  # e.g. "table1/mnist/cvitae/seed0"; also its folder under DIR/runs
    base: str  # config file name under vitae/configs
    overrides: dict
    config: Config
    evaluate: bool = True
    eval_limit: int | None = None
    status: str = "pending"  # pending, finished, diverged, busy (another process holds it)
    metrics: dict = field(default_factory=dict)

    def command(self, out: Path) -> str:
        """The ``vitae`` command lines that produce this run on their own."""
        args = " ".join(f"'{k}={toml_value(v)}'" if any(c in toml_value(v) for c in " {[\"") else f"{k}={toml_value(v)}"
                        for k, v in self.overrides.items())
        path = out / "runs" / self.name
        line = f"vitae train configs/{self.base} {args} --out {path}".replace("  ", " ")
        if self.evaluate:
            line += f" && vitae evaluate {path}" + (f" --limit {self.eval_limit}" if self.eval_limit else "")
        return line


def _stored_config(run: Run) -> Config:
    try:
        return config_module.load_json(run.config)
    except VitaeError as exc:
        raise VitaeError(f"{run.path} was written by an incompatible version of vitae ({exc}); "
                         "move it away or use another --out") from None


def ensure(job: Job, out: Path, *, progress: bool = False, truth=None, log=print, wait: bool = False) -> Job:
    """Bring ``job`` to finished (trained, and evaluated when ``job.evaluate``); see the module.
    A run that another process holds (a second ``vitae reproduce`` on the same folder) is left to
    it: ``job.status`` is then ``"busy"``; with ``wait``, the call waits for that process instead."""
    run = Run(out / "runs" / job.name)
    try:
        with lock.exclusive(run.path, create=True, wait=wait):  # another reproduce on DIR skips this run
            return _ensure(job, run, progress, truth, log)
    except BusyError:
        log(f"{job.name}: another process is on it; skipped")
        job.status = "busy"
        return job


def _ensure(job: Job, run: Run, progress: bool, truth, log) -> Job:
    from vitae.training.evaluate import evaluate
    from vitae.training.trainer import train

    config = job.config
    if run.config.is_file() and not run.checkpoint.is_file():
        run.config.unlink()  # killed between writing the config and the first checkpoint: nothing was trained
    if run.exists():
        stored = _stored_config(run)
        differ = sorted(k for k, v in config.to_dict().items() if v != getattr(stored, k) and k not in RESUMABLE_KEYS)
        if differ:
            raise VitaeError(f"{run.path} holds a run with another configuration ({', '.join(differ)} differ); "
                             "it was left as it is: use another --out, or move that folder away")
    metrics = run.read_metrics()
    if metrics.get("diverged"):
        job.status, job.metrics = "diverged", metrics
        return job
    done = checkpoint.load(run.checkpoint)["epoch"] if run.exists() else 0
    if done < config.epochs:
        log(f"{job.name}: {'resuming at epoch ' + str(done) if done else 'training'} ({config.epochs} epochs)")
        started = time.perf_counter()
        try:
            train(config, run.path, resume=run.exists(), progress=progress)
        except DivergedError as exc:
            log(f"{job.name}: {exc}")
            job.status, job.metrics = "diverged", run.read_metrics()
            return job
        log(f"{job.name}: trained in {time.perf_counter() - started:.0f} s")
        metrics = run.read_metrics()
    if job.evaluate and (metrics.get("epochs_trained") != config.epochs or "test_log_px" not in metrics
                         or metrics.get("test_images_limit", None) != job.eval_limit):
        started = time.perf_counter()
        evaluate(run.path, limit=job.eval_limit, progress=progress, truth=truth)
        run.write_metrics({"test_images_limit": job.eval_limit})
        log(f"{job.name}: evaluated in {time.perf_counter() - started:.0f} s")
        metrics = run.read_metrics()
    job.status, job.metrics = "finished", metrics
    return job


def status(job: Job, out: Path) -> Job:
    """``job``'s state as its folder holds it, touching nothing: ``finished`` (trained, and
    evaluated when asked), ``diverged``, or ``pending``."""
    run = Run(out / "runs" / job.name)
    metrics = run.read_metrics() if run.metrics.is_file() else {}
    if metrics.get("diverged"):
        job.status, job.metrics = "diverged", metrics
    elif metrics.get("epochs_trained") == job.config.epochs and (not job.evaluate or "test_log_px" in metrics):
        job.status, job.metrics = "finished", metrics
    elif not job.evaluate and run.checkpoint.is_file() and checkpoint.load(run.checkpoint)["epoch"] >= job.config.epochs:
        job.status = "finished"
    return job


class CachedTruth:
    """A ground-truth generator that renders each factor combination once and keeps the image,
    so that every model of a data set is scored on the same images without rendering them again
    (rendering SMPL-style bodies takes about 50 ms an image). Only for generators whose images are
    a function of the factors alone (``deterministic_render``); others are used as they are."""

    def __init__(self, truth):
        self._truth = truth
        self._memo: dict[bytes, np.ndarray] = {}

    def __getattr__(self, name):
        return getattr(self._truth, name)

    def sample_observations_from_factors(self, factors, rng=None):
        return self.render(self._truth.check_factors(factors), rng)

    def render(self, factors: np.ndarray, rng=None):
        import torch

        factors = np.asarray(factors)
        keys = [row.tobytes() for row in factors]
        missing = [i for i, key in enumerate(keys) if key not in self._memo]
        if missing:
            images = self._truth.render(factors[missing], rng).numpy()
            for i, image in zip(missing, images):
                self._memo[keys[i]] = image
        return torch.from_numpy(np.stack([self._memo[key] for key in keys]))


def cached(truth):
    return CachedTruth(truth) if truth is not None and getattr(truth, "deterministic_render", False) else truth
