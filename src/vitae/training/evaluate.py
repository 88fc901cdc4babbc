"""``vitae evaluate``: the test-set numbers of a finished run, merged into ``metrics.json``.

* ``test_elbo`` (and its terms): one posterior sample per image, KL weight 1, closed-form KL;
* ``test_log_px``: the importance-weighted bound with ``samples`` samples per image (1000, as the
  authors used, unless told otherwise);
* the disentanglement scores (``d_score``, ...) when the run's data set has known factors, or on
  the factors of ``metric_data`` when the config names one (MNIST models are scored on
  ``affine_mnist``, whose images they can encode).
All in nats per image; the seed is fixed, so evaluating twice gives the same numbers. A run that
diverged is evaluated at its last good checkpoint and keeps its ``"diverged": true`` record.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vitae import data as data_module
from vitae.errors import VitaeError
from vitae.metrics.log_likelihood import dataset_log_px
from vitae.training import lock, tracking
from vitae.training.trainer import Run, check_image_shape, evaluate_elbo, load_data, load_trained


def evaluate(out: str | Path, *, samples: int | None = None, limit: int | None = None, device: str | None = None,
             progress: bool = True, truth=None, data=None) -> dict:
    """Evaluate the run in ``out`` on its test set (the first ``limit`` images when given).
    ``truth`` replaces the generator of the metrics' factors (e.g. one that caches its renders);
    ``data``: for a run trained on data passed in from Python, the same data again."""
    _check_counts(samples, limit)
    run = Run(Path(out))
    run.require()
    with lock.exclusive(run.path):  # one writer per run folder
        return _evaluate(run, samples, limit, device, progress, truth, data)


def _check_counts(samples, limit) -> None:
    for name, value in (("samples", samples), ("limit", limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise VitaeError(f"{name} must be a whole number of at least 1, got {value!r}")


def _evaluate(run: Run, samples, limit, device, progress, truth, data=None) -> dict:
    config, model, state = load_trained(run, device)
    metrics = evaluate_model(config, model, state, samples=samples, limit=limit, progress=progress, truth=truth,
                             data=data)
    run.write_metrics(metrics)
    tracking.evaluated(config, run.path, metrics, state["epoch"])  # TensorBoard too, where the run logged
    return metrics


def evaluate_model(config, model, state: dict, *, samples: int | None = None, limit: int | None = None,
                   progress: bool = True, truth=None, data=None) -> dict:
    """The numbers of ``evaluate`` for a loaded model (``state``: its ``epoch`` and ``image_shape``),
    written nowhere; ``data`` as for ``evaluate``."""
    from vitae.metrics.disentanglement import check_options

    _check_counts(samples, limit)
    truth = truth if truth is not None else metric_truth(config)
    check_options(truth, **config.metric_options)  # a misspelled option is an error now, not after log p(x)
    dev = next(model.parameters()).device
    samples = samples or config.eval_samples
    dataset = load_data(config, data)
    check_image_shape(dataset, state)
    test_x = dataset.test.images[:limit].to(dev)
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    elbo = evaluate_elbo(model, test_x, config.eval_batch_size)
    bar = tqdm(total=len(test_x), desc=f"log p(x), K={samples}", disable=not progress, unit="img")
    log_px = dataset_log_px(model, test_x, samples, progress=lambda n: bar.update(n - bar.n))
    bar.close()
    metrics = {
        "test_elbo": elbo["elbo"], "test_log_px": log_px, "test_recon": elbo["recon"],
        **{f"test_{k}": v for k, v in elbo.items() if k.startswith("kl_")},
        "log_px_samples": samples, "test_images": len(test_x), "epochs_trained": state["epoch"],
    }
    metrics.update(disentanglement(config, model, truth, tuple(state["image_shape"])))
    metrics["evaluation_seconds"] = time.perf_counter() - started
    return metrics


def metric_truth(config):
    """The generator of known factors that the run's metrics use, or None."""
    if config.metric_data and config.metric_data != config.data:
        return data_module.ground_truth(config.metric_data)
    return data_module.ground_truth(config.data, config.data_root or None, **config.data_options)


def disentanglement(config, model, truth=None, image_shape=None) -> dict:
    """The disentanglement scores of the model's posterior means, when the data has factors."""
    truth = truth if truth is not None else metric_truth(config)
    if truth is None:
        return {}
    if image_shape is not None and tuple(truth.observation_shape) != tuple(image_shape):
        raise VitaeError(f"metric_data '{config.metric_data or config.data}' has images of shape "
                         f"{list(truth.observation_shape)}, the model takes {list(image_shape)}; choose a data set of that size")
    from vitae.metrics.disentanglement import compute_protocols

    device = next(model.parameters()).device

    @torch.no_grad()
    def representation(images: torch.Tensor) -> np.ndarray:
        chunks = [model.representation(images[i:i + config.eval_batch_size].to(device)).cpu()
                  for i in range(0, len(images), config.eval_batch_size)]
        return torch.cat(chunks).numpy()

    scores = compute_protocols(truth, representation, seed=config.seed, **config.metric_options)
    return {**scores, "dci_estimator": config.metric_options.get("dci_estimator", "classifier")}
