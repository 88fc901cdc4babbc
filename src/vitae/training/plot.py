"""``vitae plot``: the figures of a trained run (``vitae.plotting.figures``) into ``DIR/figures/``."""

from __future__ import annotations

from pathlib import Path

from vitae.plotting.figures import all_figures
from vitae.training import lock
from vitae.training.trainer import Run, check_image_shape, load_data, load_trained


def plot(out: str | Path, *, device: str | None = None, data=None) -> list[Path]:
    """Write the figures of the run in ``out`` from its test images and return their paths.
    ``data``: for a run trained on data passed in from Python, the same data again."""
    run = Run(Path(out))
    run.require()
    with lock.exclusive(run.path):  # one writer per run folder
        config, model, state = load_trained(run, device)
        return plot_model(config, model, state, run.figures, run.log, data=data)


def plot_model(config, model, state: dict, figures: Path, log: Path | None, *, data=None) -> list[Path]:
    """The figures of ``plot`` for a loaded model (``state``: its ``image_shape``) into ``figures``,
    the training curves from ``log`` when it is given; ``data`` as for ``plot``."""
    dataset = load_data(config, data)
    check_image_shape(dataset, state)
    return all_figures(model, dataset.test.images, figures, log, seed=config.seed)
