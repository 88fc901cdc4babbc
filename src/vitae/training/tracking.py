"""Experiment tracking: what a run shows in TensorBoard, besides ``log.csv``.

The config key ``logger`` names one of ``LOGGERS``; ``auto`` (the default) is ``tensorboard``
when the ``tensorboard`` package is installed (``pip install 'vitae-perspective[tensorboard]'``)
and ``none`` otherwise. Under torchrun, rank 0 alone logs. Nothing needs a network.

``tensorboard`` writes event files into ``RUN/tensorboard/`` (``tensorboard --logdir runs/``):

* every epoch (step = epoch), each column of ``log.csv`` as a scalar (``scalar_tag``: ``train/elbo``,
  ``test/recon``, ``test/kl_z_A``, ``schedule/kl_weight``, ``time/epoch_seconds``, ...), with the
  learning rate ``schedule/lr``, ``time/step_seconds`` and ``time/images_per_second``;
* every ``log_images_every`` epochs and at the last one: the figures of ``vitae plot`` as images
  (``images/reconstructions``, ``images/samples``, ``images/traversals_<group>``, ``images/swap``)
  and, for VITAE models, histograms of the perspective parameters ``gamma = g_P(z_P)`` at the
  posterior means of the first ``EMBEDDED`` test images (``gamma/0``, ``gamma/1``, ...);
* at the end of training: the configuration as hparams, with the last epoch's train and test
  scalars as its metrics, and the posterior means of the first ``EMBEDDED`` test images in the
  embedding projector (tag ``latent``), labelled by digit and known factors, with the images
  themselves where they are square and at most ``THUMBNAIL_LIMIT`` pixels;
* from ``vitae evaluate`` (``evaluated``): its numbers as scalars ``evaluate/<key>`` at the last
  epoch trained; the hparams list ``EVALUATED`` of them among their metrics (blank until
  evaluated: TensorBoard keeps the first hparams a run wrote, those of the end of training).

The images and histograms use no random numbers but a seeded generator of their own, so a run
trains the same parameters with any logger. A resumed run drops (TensorBoard's ``purge_step``) the
events of the epochs after its checkpoint, which it trains again: no step is logged twice.
Event files are appended as TensorBoard writes them (flushed every epoch), not replaced atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vitae import collectives, files
from vitae.errors import VitaeError

EMBEDDED = 1000  # test images in the projector and the gamma histograms
FIGURE_IMAGES = 64  # test images the figures draw on, as in ``vitae plot``
THUMBNAIL_LIMIT = 64  # the projector shows square images themselves up to this size
EVALUATED = ("test_log_px", "d_score", "mig")  # of ``vitae evaluate``'s numbers, the hparams' metrics
TAGS = {"kl_weight": "schedule/kl_weight", "seconds": "time/epoch_seconds"}


def scalar_tag(column: str) -> str:
    """The TensorBoard tag of a ``log.csv`` column: ``train_elbo`` -> ``train/elbo``."""
    for split in ("train", "test"):
        if column.startswith(split + "_"):
            return f"{split}/{column[len(split) + 1:]}"
    return TAGS.get(column, column)


class Logger:
    """Logs nothing: ``logger = "none"``, and every process of a distributed run but rank 0."""

    requirement = ""  # what to install for it, in an error message

    @staticmethod
    def available() -> bool:
        """Whether the packages it needs are installed."""
        return True

    def epoch(self, epoch: int, row: dict, *, model, lr: float, steps: int, images: int) -> None:
        """After an epoch's row of ``log.csv``: its scalars, ``steps`` optimizer steps over
        ``images`` training images, and (when due) images and histograms of ``model``."""

    def finish(self, model, row: dict) -> None:
        """After the last epoch (``row``, as in ``log.csv``): the run's summary; closes the logger."""

    def evaluation(self, metrics: dict, epoch: int) -> None:
        """``vitae evaluate``'s ``metrics`` of the model trained ``epoch`` epochs; closes the logger."""


def _summary_writer():
    """TensorBoard's ``SummaryWriter`` class, or None without the ``tensorboard`` package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter


class TensorBoard(Logger):
    """Event files in ``folder`` (see the module), continuing after epoch ``start`` (None: adding
    to the events there, dropping none)."""

    requirement = "the tensorboard package: pip install 'vitae-perspective[tensorboard]'"

    @staticmethod
    def available() -> bool:
        return _summary_writer() is not None

    def __init__(self, folder: Path, config, dataset, start: int | None = 0):
        if folder.exists() and not folder.is_dir():
            raise VitaeError(f"{folder} is a file, where the TensorBoard folder should be; move it away or set logger=none")
        purge = start + 1 if start is not None and folder.is_dir() else None  # epochs to train again
        try:
            self.writer = _summary_writer()(log_dir=str(folder), purge_step=purge)
        except OSError as exc:
            raise files.os_error(folder, exc) from None
        self.config, self.dataset = config, dataset

    def epoch(self, epoch: int, row: dict, *, model, lr: float, steps: int, images: int) -> None:
        for column, value in row.items():
            if column != "epoch":
                self.writer.add_scalar(scalar_tag(column), value, epoch)
        self.writer.add_scalar("schedule/lr", lr, epoch)
        self.writer.add_scalar("time/step_seconds", row["seconds"] / steps, epoch)
        self.writer.add_scalar("time/images_per_second", images / row["seconds"], epoch)
        every = self.config.log_images_every
        if every and (epoch % every == 0 or epoch == self.config.epochs):
            self._figures(model, epoch)
        self.writer.flush()

    @torch.no_grad()
    def _figures(self, model, epoch: int) -> None:
        from vitae.plotting import figures

        x = self._test_images(model, FIGURE_IMAGES)
        grids = {"reconstructions": figures.reconstruction_grid(model, x),
                 "samples": figures.sample_grid(model, seed=self.config.seed)}
        for group in model.latent_dims:
            grids[f"traversals_{figures.GROUP_NAMES.get(group, 'latent')}"] = figures.traversal_grid(model, group)
        if {"z_A", "z_P"} <= set(model.latent_dims):
            grids["swap"] = figures.swap_grid(model, x)
        for name, grid in grids.items():
            self.writer.add_image(f"images/{name}", grid, epoch, dataformats="HW" if grid.ndim == 2 else "HWC")
        gamma = perspective_parameters(model, self._test_images(model, EMBEDDED), self.config.eval_batch_size)
        if gamma is not None:
            for i in range(gamma.shape[1]):
                self.writer.add_histogram(f"gamma/{i}", gamma[:, i], epoch)

    def _test_images(self, model, n: int) -> torch.Tensor:
        return self.dataset.test.images[:n].to(next(model.parameters()).device)

    def finish(self, model, row: dict) -> None:
        from torch.utils.tensorboard.summary import hparams

        metrics = {scalar_tag(k): v for k, v in row.items() if k.startswith(("train_", "test_"))}
        metrics.update({f"evaluate/{key}": None for key in EVALUATED})
        for summary in hparams(hparam_values(self.config), metrics):  # the metrics: scalars, here or from evaluate
            self.writer.file_writer.add_summary(summary)
        self._embedding(model, row["epoch"])
        self.writer.close()

    def evaluation(self, metrics: dict, epoch: int) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"evaluate/{key}", value, epoch)
        self.writer.close()

    @torch.no_grad()
    def _embedding(self, model, epoch: int) -> None:
        x = self._test_images(model, EMBEDDED)
        codes = torch.cat([model.representation(chunk) for chunk in x.split(self.config.eval_batch_size)])
        metadata, header = projector_metadata(self.dataset, len(x))
        height, width = x.shape[2:]  # torch's sprite sheet takes square images only
        thumbnails = x.float().cpu() if height == width <= THUMBNAIL_LIMIT else None
        self.writer.add_embedding(codes.cpu(), metadata=metadata, label_img=thumbnails, global_step=epoch,
                                  tag="latent", metadata_header=header)


def projector_metadata(dataset, n: int) -> tuple[list | None, list[str] | None]:
    """The projector's labels of the first ``n`` test images: their label and known factors, as
    ``(rows, header)``; one column goes without a header (TensorBoard's format), none is None."""
    test, columns = dataset.test, {}
    if test.labels is not None:
        columns["label"] = [str(v) for v in test.labels[:n].tolist()]
    if test.factors is not None:
        names = list(dataset.factor_names) or [f"factor_{i}" for i in range(test.factors.shape[1])]
        for name, values in zip(names, test.factors[:n].T.tolist()):
            columns[name] = [f"{v:g}" for v in values]
    if len(columns) <= 1:
        return next(iter(columns.values()), None), None
    return [list(row) for row in zip(*columns.values())], list(columns)


def perspective_parameters(model, images: torch.Tensor, batch_size: int) -> torch.Tensor | None:
    """``gamma = g_P(z_P)`` at the posterior mean of ``z_P`` per image ``[N, theta_dim]`` (on the
    CPU), or None for a model without a perspective."""
    decoder = getattr(model, "perspective_decoder", None)
    if decoder is None:
        return None
    return torch.cat([decoder(model.encode(chunk)["z_P"].mean).cpu() for chunk in images.split(batch_size)])


def hparam_values(config) -> dict:
    """The configuration as TensorBoard hparams: numbers, strings and booleans as they are, the
    option tables as JSON text."""
    return {key: value if isinstance(value, (bool, int, float, str)) else json.dumps(value, sort_keys=True)
            for key, value in config.to_dict().items()}


LOGGERS = {"none": Logger, "tensorboard": TensorBoard}
AUTO = ("tensorboard",)  # what ``auto`` picks, the first one installed (else none)


def resolve(name: str) -> str:
    """The logger that ``name`` stands for; an unknown name, or a logger whose package is missing,
    is a one-line error."""
    if name == "auto":
        return next((n for n in AUTO if LOGGERS[n].available()), "none")
    if name not in LOGGERS:
        raise VitaeError(f"unknown logger '{name}'; config key 'logger' must be one of: auto, {', '.join(LOGGERS)}")
    if name != "none" and not LOGGERS[name].available():
        raise VitaeError(f"logger '{name}' needs {LOGGERS[name].requirement}; or set logger=none")
    return name


def create(config, run_path: Path, dataset, start: int = 0) -> Logger:
    """The configured logger of the run in ``run_path`` (``dataset``: the run's data), continuing
    after epoch ``start``; on every process but rank 0, one that logs nothing."""
    name = resolve(config.logger)
    if name == "none" or not collectives.is_main():
        return Logger()
    return LOGGERS[name](Path(run_path) / name, config, dataset, start)


def evaluated(config, run_path: Path, metrics: dict, epoch: int) -> None:
    """``vitae evaluate``'s ``metrics`` of the run in ``run_path``, trained ``epoch`` epochs, into
    each logger it trained with (whose folder is there and whose package is installed)."""
    for name, logger in LOGGERS.items():
        folder = Path(run_path) / name
        if name != "none" and folder.is_dir() and logger.available() and collectives.is_main():
            logger(folder, config, None, start=None).evaluation(metrics, epoch)
