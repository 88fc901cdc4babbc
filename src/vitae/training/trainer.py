"""The training loop (supplement section 2): Adam, KL warm-up ``w = min(epoch / warmup, 1)``,
no early stopping; one readable function, nanoGPT style.

A run folder holds ``config.json``, ``checkpoint.pt`` (atomic, every ``checkpoint_every`` epochs
and at the end), ``log.csv`` (one row per epoch: train and test ELBO and their terms) and, once
evaluated or diverged, ``metrics.json``. ``resume`` restores model, optimizer and both RNG streams
(reparameterisation noise and data order), so an interrupted run ends with the same parameters
as an uninterrupted one. With a logger (``vitae.training.tracking``), ``tensorboard/`` holds its events.

Under ``torchrun`` with several processes the same loop trains with DistributedDataParallel
(``vitae.training.distributed``): ``batch_size`` is the global batch, each process trains on its
chunk of it with its rows of the global batch's noise (``vitae.collectives.noise_like``), so N
processes train the model of one up to float rounding; every process evaluates the whole test set
(the same numbers as one process), and rank 0 alone writes the run folder and shows progress.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from vitae import collectives, plugins
from vitae import config as config_module
from vitae import files
from vitae import data as data_module
from vitae import models
from vitae.config import Config
from vitae.errors import DivergedError, VitaeError
from vitae.training import checkpoint, distributed, lock, tracking
from vitae.training.precision import cpu_has_bfloat16, use_mixed_precision  # noqa: F401 (also public here)

RESUMABLE_KEYS = {"epochs", "checkpoint_every", "device", "amp", "eval_batch_size", "eval_samples", "metric_options",
                  "metric_data", "imports", "logger", "log_images_every"}
MIN_STEPS = 10  # gradient steps per epoch below which training warns


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise VitaeError(f"unknown device '{name}'; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VitaeError(f"device '{name}' asked for, but this machine has no CUDA GPU; use device=auto or cpu")
    return device


def training_device(name: str) -> torch.device:
    """``resolve_device``, but each process of a distributed run on a GPU takes its own
    (``LOCAL_RANK``)."""
    device = resolve_device(name)
    if device.type == "cuda" and distributed.is_distributed():
        return torch.device("cuda", distributed.local_rank())
    return device


def kl_weight(epoch: int, warmup: int) -> float:
    """KL warm-up for the ``epoch``-th epoch, counted from 1: ``min(epoch / warmup, 1)``."""
    return 1.0 if warmup == 0 else min(epoch / warmup, 1.0)


FUSED_ADAM_DEVICES = ("cpu", "cuda")


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam with a fixed learning rate, as in the paper.

    Where every parameter lives on a CPU or a CUDA GPU, the fused implementation: one kernel over
    all parameters instead of a chain of element-wise ops per tensor, the same update up to float
    rounding, and 11x faster on the bodies MLP's 61.6 M parameters (``benchmarks/optimizer.py``).
    A run resumed from a checkpoint keeps the implementation it was saved with (the flag is part
    of the optimizer's state), so resume stays bit-identical.
    """
    devices = {p.device.type for p in model.parameters()}
    fused = len(devices) == 1 and devices <= set(FUSED_ADAM_DEVICES)
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True if fused else None)


def build_model(config: Config, image_shape, dataset_size: int | None = None) -> models.GenerativeModel:
    """The configured model; ``dataset_size`` (N) reaches the estimators that need it (beta-TCVAE);
    a ``model_options.dataset_size`` in the config takes precedence."""
    return models.create(config.model, image_shape, **{"dataset_size": dataset_size, **config.model_kwargs()})


def load_data(config: Config, data=None) -> data_module.Dataset:
    """The configured data set, or ``data`` passed in from Python (a tensor, a
    ``torch.utils.data.Dataset`` or a ``Dataset``: ``vitae.data.as_dataset``; a folder is the
    config's ``images`` data set, see ``with_data``)."""
    if data is None or isinstance(data, (str, Path)):
        return data_module.create(config.data, config.data_root or None, **config.data_options)
    if config.data != data_module.in_memory.NAME:
        raise VitaeError(f"this run's data is '{config.data}' (its config.json); data= is only for runs trained on "
                         "data passed in from Python")
    return data_module.as_dataset(data)


def with_data(config: Config | None, data) -> Config | None:
    """The configuration a run on ``data`` passed in from Python records: a folder becomes the
    ``images`` data set (loadable again by name), anything else ``in_memory`` (which is not)."""
    if config is None or data is None:
        return config
    if isinstance(data, (str, Path)):
        return dataclasses.replace(config, data="images", data_root=str(Path(data).expanduser().resolve()))
    return dataclasses.replace(config, data=data_module.in_memory.NAME, data_root="", data_options={})


def check_image_shape(dataset: data_module.Dataset, state: dict) -> None:
    """The data's images must have the shape the checkpoint's model was trained on."""
    if tuple(state["image_shape"]) != tuple(dataset.image_shape):
        raise VitaeError(f"the data's images are {list(dataset.image_shape)}, the run was trained on "
                         f"{list(state['image_shape'])}; pass the data it was trained on")


def few_steps_warning(n_train: int, batch_size: int) -> str | None:
    """A warning when an epoch is fewer than ``MIN_STEPS`` gradient steps, else ``None``."""
    steps = -(-n_train // batch_size)
    if steps >= MIN_STEPS:
        return None
    suggested = max(1, 2 ** int(math.log2(max(1, n_train // MIN_STEPS))))
    return (f"vitae: warning: an epoch is only {steps} gradient step(s) ({n_train} training images, batch_size "
            f"{batch_size}), so few epochs learn little; try batch_size={suggested} ({-(-n_train // suggested)} steps) "
            "or more epochs")


def check_pixels(dataset: data_module.Dataset, likelihood: str) -> None:
    """Every image finite, and in [0, 1] for the Bernoulli likelihood: checked once per run, on
    the data as loaded (before any GPU), not in the training step."""
    for name, split in (("training", dataset.train), ("test", dataset.test)):
        images = split.images
        if not torch.isfinite(images).all():
            raise VitaeError(f"the {name} images of '{dataset.name}' hold NaN or infinite pixels; fix the data")
        if likelihood == "bernoulli" and (images.min() < 0 or images.max() > 1):
            raise VitaeError(f"the {name} images of '{dataset.name}' have pixels in [{images.min().item():g}, "
                             f"{images.max().item():g}], outside [0, 1] as the Bernoulli likelihood needs; rescale "
                             "them or use likelihood=gaussian")


@dataclass
class Run:
    """The files of one run folder."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def checkpoint(self) -> Path:
        return self.path / checkpoint.FILENAME

    @property
    def log(self) -> Path:
        return self.path / "log.csv"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    def exists(self) -> bool:
        return self.config.exists() or self.checkpoint.exists()

    def require(self) -> None:
        if not self.path.is_dir():
            raise VitaeError(f"run folder {self.path} does not exist")
        if not self.config.is_file() or not self.checkpoint.is_file():
            raise VitaeError(f"{self.path} is not a run folder (needs config.json and checkpoint.pt written by vitae train)")

    def read_metrics(self) -> dict:
        if not self.metrics.is_file():
            return {}
        try:
            values = json.loads(self.metrics.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise VitaeError(f"{self.metrics} is not valid JSON; move it away and evaluate again") from None
        if not isinstance(values, dict):
            raise VitaeError(f"{self.metrics} is not a JSON object; move it away and evaluate again")
        return values

    def write_metrics(self, values: dict) -> None:
        """Merge ``values`` into ``metrics.json`` (atomically)."""
        merged = {**self.read_metrics(), **values}
        files.write_text(self.metrics, json.dumps(merged, indent=2) + "\n")


def restore(model, optimizer, state: dict, path: Path) -> None:
    """Load a checkpoint's model (and optimizer) state; one that does not fit is a one-line error."""
    try:
        model.load_state_dict(state["model"])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise VitaeError(f"checkpoint {path} does not match its config.json ({str(exc).strip().splitlines()[0]}); "
                         "it belongs to another model: move it away") from None


def load_trained(run: Run, device: str | None = None):
    """The configuration and the trained model of a run folder, in eval mode."""
    run.require()
    config = config_module.load_json(run.config)
    plugins.import_modules(config.imports)
    state = checkpoint.load(run.checkpoint)
    dev = resolve_device(device or config.device)
    model = build_model(config, state["image_shape"])
    restore(model, None, state, run.checkpoint)
    return config, model.to(dev).eval(), state


def _rng_state(generator: torch.Generator) -> dict:
    """The RNG states to checkpoint: this process's (rank 0's) noise and the shared data order,
    and under several processes every process's noise state (``processes``)."""
    state = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if distributed.is_distributed():
        state["processes"] = distributed.gather_objects({k: v for k, v in state.items() if k != "data"})
    return state


def _set_rng_state(state: dict, generator: torch.Generator) -> None:
    """Restore the data order, and this process's noise."""
    generator.set_state(state["data"])
    processes = state.get("processes", [state])
    if len(processes) == distributed.world_size():
        own = processes[distributed.rank()]
    elif distributed.is_main():
        own = state
    else:  # resumed with another number of processes: keep this one's fresh seed
        return
    torch.set_rng_state(own["torch"])
    if "cuda" in own and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(own["cuda"])


@torch.no_grad()
def evaluate_elbo(model, images: torch.Tensor, batch_size: int) -> dict[str, float]:
    """Mean ELBO and its terms (KL weight 1) over ``images``, one posterior sample per image."""
    totals: dict[str, float] = {}
    for idx in data_module.batches(images.shape[0], batch_size, shuffle=False):
        out = model(images[idx])
        parts = {"elbo": out.elbo, "recon": out.recon, **{f"kl_{k}": v for k, v in out.kl.items()}}
        for key, value in parts.items():
            totals[key] = totals.get(key, 0.0) + value.sum().item()
    return {key: value / images.shape[0] for key, value in totals.items()}


def _check_resume(stored: Config, requested: Config | None) -> Config:
    if requested is None:
        return stored
    changed = [k for k, v in requested.to_dict().items() if v != getattr(stored, k) and k not in RESUMABLE_KEYS]
    if changed:
        raise VitaeError(f"--resume keeps the run's config; these keys differ from it: {', '.join(changed)} "
                         f"(only {', '.join(sorted(RESUMABLE_KEYS))} may change)")
    return requested


def read_log(path: Path) -> list[list[str]]:
    """``log.csv``'s rows (the header first); a damaged file is an error naming the row."""
    if not path.is_file():
        return []
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise VitaeError(f"cannot read {path} ({exc}); move it away to resume without the earlier rows") from None
    if rows and (not rows[0] or rows[0][0] != "epoch"):
        raise VitaeError(f"{path} has no header row starting with 'epoch'; move it away to resume without the earlier rows")
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(rows[0]) or not row[0].isdigit():
            raise VitaeError(f"{path} is damaged at row {number}; move it away to resume without the earlier rows")
    return rows


def _write_log(path: Path, rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    files.write_text(path, buffer.getvalue())


def _truncate_log(path: Path, epochs_done: int) -> None:
    """Drop log rows of epochs after the checkpoint (they are about to be trained again)."""
    rows = read_log(path)
    if rows:
        _write_log(path, rows[:1] + [row for row in rows[1:] if int(row[0]) <= epochs_done])


def _open_run(run: Run, config: Config | None, resume: bool) -> tuple[Config, dict | None]:
    """The run's configuration and, with ``resume``, its checkpoint (``None`` for a run killed
    before its first checkpoint: it starts again from its stored configuration)."""
    if resume:
        if run.config.is_file() and not run.checkpoint.exists():
            return _check_resume(config_module.load_json(run.config), config), None
        run.require()
        return _check_resume(config_module.load_json(run.config), config), checkpoint.load(run.checkpoint)
    if config is None:
        raise VitaeError("a config file is needed to start a run")
    if run.exists():
        raise VitaeError(f"{run.path} already holds a run; pass --resume to continue it, or choose another --out")
    return config, None


def train(config: Config | None, out: str | Path, *, resume: bool = False, progress: bool = True, data=None) -> Run:
    """Train ``config`` into the folder ``out`` (or continue the run there with ``resume``); with
    several processes under torchrun, as one of them. ``data`` replaces the config's data set: a
    folder of images, a tensor, a ``torch.utils.data.Dataset`` or a ``Dataset`` (``with_data``;
    resume such a run with the same ``data``). ``progress``: the progress bar and the warning
    for epochs of few steps (``few_steps_warning``)."""
    config = with_data(config, data)
    with distributed.process_group():
        run = Run(Path(out))
        if not distributed.is_main():
            return _train(config, run, resume, progress, data)
        if resume and not run.config.is_file():
            run.require()
        with lock.exclusive(run.path, create=not resume):  # one writer per run folder
            return _train(config, run, resume, progress, data)


def _train(config: Config | None, run: Run, resume: bool, progress: bool, data=None) -> Run:
    # rank 0 reads the run folder and every process gets what it read (no shared file system needed)
    config, state = distributed.from_main(lambda: _open_run(run, config, resume))
    plugins.import_modules(config.imports)
    from vitae.metrics.disentanglement import check_options

    check_options(**config.metric_options)  # found now, not when the trained run is evaluated
    tracking.resolve(config.logger)  # an unknown logger, or one not installed, is an error now too
    distributed.check_batch_size(config.batch_size)
    main, processes = distributed.is_main(), distributed.world_size()
    device = training_device(config.device)
    # every process draws the same noise and the same data order: each takes its rows of both
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    dataset = load_data(config, data)
    if state is not None:
        check_image_shape(dataset, state)
    model = build_model(config, dataset.image_shape, len(dataset.train)).to(device)
    if config.amp:
        use_mixed_precision(model, device)
    optimizer = make_optimizer(model, config.lr)
    start = 0
    if state is not None:
        restore(model, optimizer, state, run.checkpoint)
        _set_rng_state(state["rng"], generator)
        start = state["epoch"]
        if main:
            _truncate_log(run.log, start)
        if start >= config.epochs:
            if main:
                tqdm.write(f"vitae: {run.path} has trained all its {config.epochs} epochs; nothing left to do "
                           "(pass epochs=N to train it further)", file=sys.stderr)
            return run
    elif main:
        _truncate_log(run.log, 0)  # a run killed before its first checkpoint starts over
        config_module.save_json(config, run.config)
    network = distributed.wrap(model, device)  # after loading: DDP starts from rank 0's parameters
    check_pixels(dataset, config.likelihood)
    warning = few_steps_warning(len(dataset.train), config.batch_size)
    if warning and main and progress:  # advice, like the progress bar: --quiet turns both off
        tqdm.write(warning, file=sys.stderr)
    train_x, test_x = dataset.train.images.to(device), dataset.test.images.to(device)
    augment = dataset.train.augment

    def save(epoch: int) -> None:
        rng = _rng_state(generator)  # on every process: it gathers each one's noise state
        if main:
            checkpoint.save({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                "rng": rng, "config": config.to_dict(), "image_shape": list(dataset.image_shape),
            }, run.checkpoint)
            config_module.save_json(config, run.config)

    if state is None:
        save(0)
    if main and processes > 1:
        tqdm.write(f"vitae: {processes} processes ({distributed.backend()}) of {config.batch_size // processes} images "
                   f"each: global batch {config.batch_size}")
    tracker = tracking.create(config, run.path, dataset, start)  # TensorBoard: rank 0 alone
    bar = tqdm(range(start + 1, config.epochs + 1), initial=start, total=config.epochs,
               desc=f"{config.model} on {config.data}", disable=not (progress and main), unit="epoch")
    for epoch in bar:
        w = kl_weight(epoch, config.warmup)
        network.train()
        started, sums, count = time.perf_counter(), {}, 0
        batches = data_module.batches(len(train_x), config.batch_size, generator=generator)
        # a fresh warp per image this epoch, drawn whole from the shared generator: every process
        # and every resume sees the same ones
        warps = augment.draw(len(train_x), generator) if augment is not None else None
        for step, idx in enumerate(distributed.local_batches(batches)):
            x = train_x[idx] if warps is None else augment.warp(train_x[idx], warps[idx])
            with collectives.split_batch():  # this process's rows of the global batch's noise
                out = network(x, kl_weight=w)
            loss = distributed.mean_over_processes(out.loss.detach())  # the global batch's loss
            if not torch.isfinite(loss):
                _diverged(run, epoch, step, loss.item())
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            n = len(idx) * processes
            count += n
            for key, value in (("loss", loss * n), ("elbo", out.elbo.detach().sum())):
                sums[key] = sums.get(key, 0.0) + value
        seconds = time.perf_counter() - started
        model.eval()
        test = evaluate_elbo(model, test_x, config.eval_batch_size)
        row = {"epoch": epoch, "kl_weight": w, "train_loss": float(sums["loss"]) / count,
               "train_elbo": float(distributed.sum_over_processes(sums["elbo"])) / count,
               **{f"test_{k}": v for k, v in test.items()}, "seconds": seconds}
        if not all(math.isfinite(v) for v in row.values()):
            _diverged(run, epoch, None, row["test_elbo"])
        if main:
            _append_log(run.log, row)
        tracker.epoch(epoch, row, model=model, lr=optimizer.param_groups[0]["lr"], steps=len(batches), images=count)
        bar.set_postfix(train_elbo=f"{row['train_elbo']:.1f}", test_elbo=f"{row['test_elbo']:.1f}")
        if epoch % config.checkpoint_every == 0 or epoch == config.epochs:
            save(epoch)
    tracker.finish(model, row)
    return run


def _append_log(path: Path, row: dict) -> None:
    """Add one epoch's row: the whole (small) file is replaced atomically, never appended in place."""
    rows = read_log(path) or [list(row)]
    _write_log(path, rows + [[str(v) for v in row.values()]])


def _diverged(run: Run, epoch: int, step: int | None, value: float) -> None:
    """Stop, on every process alike: the value is the global batch's, the same everywhere."""
    where = f"epoch {epoch}" + (f", step {step}" if step is not None else "")
    if distributed.is_main():
        run.write_metrics({"diverged": True, "diverged_at_epoch": epoch, "diverged_value": str(value)})
    raise DivergedError(f"training diverged at {where} (loss {value}); recorded in {run.metrics}, "
                        "the last good checkpoint is kept; try a lower lr")
