"""TensorBoard logging, read back with TensorBoard's own reader (``EventAccumulator``): every
``log.csv`` column is a scalar of the same value at the same epoch; the images are the figures of
the trained model, at the configured epochs; the gamma histograms hold the perspective parameters
of the test images; the hparams hold the configuration; the projector holds the test codes and
labels. Logging changes no parameter; ``none`` writes nothing; a resumed run logs no step twice;
an unknown or missing logger is a one-line error."""

import csv
import io
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_mnist_folder
from vitae import config as config_module
from vitae import models
from vitae.data.base import Dataset, Split
from vitae.errors import VitaeError
from vitae.plotting import figures
from vitae.training import checkpoint, tracking, trainer
from vitae.training.evaluate import evaluate
from vitae.training.trainer import Run, train

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402

EPOCHS, EVERY, BATCH, N_TRAIN = 3, 2, 128, 256


def tiny_config(root, **overrides):
    values = {"model": "cvitae", "data_root": str(root), "epochs": EPOCHS, "warmup": 2, "batch_size": BATCH,
              "eval_batch_size": 64, "lr": 1e-3, "seed": 7, "logger": "tensorboard", "log_images_every": EVERY,
              **overrides}
    return config_module.from_dict(values)


def events(run_path) -> EventAccumulator:
    reader = EventAccumulator(str(run_path / "tensorboard"), size_guidance={"scalars": 0, "images": 0,
                                                                              "histograms": 0, "tensors": 0})
    reader.Reload()
    return reader


def log_rows(run_path) -> list[dict]:
    with (run_path / "log.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A C-VITAE trained 3 epochs with TensorBoard (images every 2 epochs), its events, and the
    trained model."""
    root = tmp_path_factory.mktemp("tensorboard")
    data = write_mnist_folder(root / "idx", n_train=N_TRAIN, n_test=64)
    run = train(tiny_config(data), root / "run", progress=False)
    _, model, _ = trainer.load_trained(Run(run.path), "cpu")
    test = trainer.load_data(tiny_config(data)).test
    return run.path, events(run.path), model, test, data


def test_every_log_column_is_a_scalar_of_the_same_value(logged):
    path, reader, _, _, _ = logged
    rows = log_rows(path)
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    for column in rows[0]:
        if column == "epoch":
            continue
        scalars = reader.Scalars(tracking.scalar_tag(column))
        assert [s.step for s in scalars] == list(range(1, EPOCHS + 1)), column
        for s, row in zip(scalars, rows):
            assert s.value == pytest.approx(float(row[column]), rel=1e-6, abs=1e-6), column
    for s, row in zip(reader.Scalars("time/images_per_second"), rows):
        assert s.value == pytest.approx(N_TRAIN / float(row["seconds"]), rel=1e-6)
    for s, row in zip(reader.Scalars("time/step_seconds"), rows):
        assert s.value == pytest.approx(float(row["seconds"]) / (N_TRAIN // BATCH), rel=1e-6)
    assert [s.value for s in reader.Scalars("schedule/lr")] == pytest.approx([1e-3] * EPOCHS)
    assert {"test/kl_z_A", "test/kl_z_P", "test/recon", "train/elbo", "schedule/kl_weight"} <= set(reader.Tags()["scalars"])


def test_the_images_are_the_figures_at_the_configured_epochs(logged):
    _, reader, model, test, _ = logged
    x = test.images[:64]
    expected = {"reconstructions": figures.reconstruction_grid(model, x), "samples": figures.sample_grid(model, seed=7),
                "traversals_appearance": figures.traversal_grid(model, "z_A"),
                "traversals_perspective": figures.traversal_grid(model, "z_P"), "swap": figures.swap_grid(model, x)}
    assert set(reader.Tags()["images"]) == {f"images/{name}" for name in expected}
    for name, grid in expected.items():
        logged_images = reader.Images(f"images/{name}")
        assert [im.step for im in logged_images] == [EVERY, EPOCHS], name  # every 2 epochs, and the last
        png = np.asarray(Image.open(io.BytesIO(logged_images[-1].encoded_image_string)))
        png = png if png.ndim == 2 else png[..., 0]
        assert png.shape == grid.shape, name
        assert np.abs(png.astype(int) - (grid * 255).astype(int)).max() <= 1, name  # the final model's figure


def test_the_gamma_histograms_hold_the_test_perspectives(logged):
    _, reader, model, test, _ = logged
    with torch.no_grad():
        gamma = model.perspective_decoder(model.encode(test.images)["z_P"].mean)
    assert set(reader.Tags()["histograms"]) == {f"gamma/{i}" for i in range(gamma.shape[1])}
    for i in range(gamma.shape[1]):
        histograms = reader.Histograms(f"gamma/{i}")
        assert [h.step for h in histograms] == [EVERY, EPOCHS]
        h = histograms[-1].histogram_value
        assert h.num == len(test.images)
        assert (h.min, h.max) == pytest.approx((gamma[:, i].min().item(), gamma[:, i].max().item()), rel=1e-5, abs=1e-7)
        assert h.sum == pytest.approx(gamma[:, i].sum().item(), rel=1e-4, abs=1e-6)


def test_the_hparams_are_the_configuration_with_the_final_metrics(logged):
    _, reader, _, _, data = logged
    content = reader.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    config = tiny_config(data).to_dict()
    assert set(start.hparams) == set(config)
    assert start.hparams["model"].string_value == "cvitae" and start.hparams["lr"].number_value == 1e-3
    assert start.hparams["epochs"].number_value == EPOCHS and start.hparams["amp"].bool_value is False
    assert start.hparams["data_options"].string_value == "{}"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    metrics = {m.name.tag for m in experiment.metric_infos}
    assert {"test/elbo", "test/recon", "test/kl_z_A", "test/kl_z_P", "train/elbo"} <= metrics
    trained = {m for m in metrics if not m.startswith("evaluate/")}  # evaluate's come with vitae evaluate
    assert trained <= set(reader.Tags()["scalars"])  # each shown at its last value, the end of training
    assert metrics - trained == {f"evaluate/{key}" for key in tracking.EVALUATED}


def test_the_projector_holds_the_test_codes_and_labels(logged):
    path, _, model, test, _ = logged
    folder = path / "tensorboard"
    config = (folder / "projector_config.pbtxt").read_text()
    assert f'tensor_path: "{EPOCHS:05d}/latent/tensors.tsv"' in config
    assert f'metadata_path: "{EPOCHS:05d}/latent/metadata.tsv"' in config
    codes = np.loadtxt(folder / f"{EPOCHS:05d}" / "latent" / "tensors.tsv", delimiter="\t")
    with torch.no_grad():
        expected = model.representation(test.images).numpy()
    np.testing.assert_allclose(codes, expected, rtol=1e-4, atol=1e-5)
    labels = (folder / f"{EPOCHS:05d}" / "latent" / "metadata.tsv").read_text().split()
    assert labels == [str(v) for v in test.labels.tolist()]
    assert Image.open(folder / f"{EPOCHS:05d}" / "latent" / "sprite.png").size == (8 * 28, 8 * 28)


def test_logging_changes_no_parameter_and_none_writes_nothing(logged, tmp_path):
    path, _, _, _, data = logged
    quiet = train(tiny_config(data, logger="none"), tmp_path / "none", progress=False)
    assert not (quiet.path / "tensorboard").exists()
    logged_params, quiet_params = (checkpoint.load(p / "checkpoint.pt")["model"] for p in (path, quiet.path))
    for key in quiet_params:
        assert torch.equal(logged_params[key], quiet_params[key]), key
    assert log_rows(path)[-1]["test_elbo"] == log_rows(quiet.path)[-1]["test_elbo"]


def test_a_resumed_run_logs_no_step_twice(logged, tmp_path, monkeypatch):
    _, _, _, _, data = logged
    original = checkpoint.save

    def killed_saving_epoch_two(state, path):
        if state["epoch"] == 2:
            raise KeyboardInterrupt  # epoch 2 is logged, its checkpoint never written
        original(state, path)

    monkeypatch.setattr(checkpoint, "save", killed_saving_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(data, epochs=2, log_images_every=1), tmp_path / "run", progress=False)
    monkeypatch.setattr(checkpoint, "save", original)
    assert [s.step for s in events(tmp_path / "run").Scalars("test/elbo")] == [1, 2]
    train(None, tmp_path / "run", resume=True, progress=False)  # from epoch 1: epoch 2 again
    reader, rows = events(tmp_path / "run"), log_rows(tmp_path / "run")
    assert len(list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))) == 2
    for tag in ("test/elbo", "train/loss", "time/epoch_seconds"):
        assert [s.step for s in reader.Scalars(tag)] == [1, 2], tag
    for s, row in zip(reader.Scalars("time/epoch_seconds"), rows):  # the retrained epoch's own time
        assert s.value == pytest.approx(float(row["seconds"]), rel=1e-6)
    assert [im.step for im in reader.Images("images/swap")] == [1, 2]


def test_a_missing_tensorboard_package_is_a_one_line_error(logged, tmp_path, monkeypatch):
    _, _, _, _, data = logged
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed: importing it fails
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert tracking.resolve("auto") == "none"
    with pytest.raises(VitaeError, match=r"logger 'tensorboard' needs the tensorboard package: pip install "
                                         r"'vitae-perspective\[tensorboard\]'; or set logger=none"):
        train(tiny_config(data), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "tensorboard").exists() and not (tmp_path / "run" / "checkpoint.pt").exists()


def test_an_unknown_logger_is_a_one_line_error_naming_the_choices(logged, tmp_path):
    _, _, _, _, data = logged
    with pytest.raises(VitaeError, match="unknown logger 'wandb'; config key 'logger' must be one of: auto, none, tensorboard"):
        train(tiny_config(data, logger="wandb"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    with pytest.raises(VitaeError, match="'log_images_every' must be 0"):
        config_module.override(tiny_config(data), ["log_images_every=-1"])
    (tmp_path / "tensorboard").write_text("")
    with pytest.raises(VitaeError, match="tensorboard is a file, where the TensorBoard folder should be; move it away"):
        tracking.create(tiny_config(data), tmp_path, None)


def test_other_processes_than_rank_zero_log_nothing(logged, tmp_path, monkeypatch):
    _, _, _, _, data = logged
    monkeypatch.setattr(tracking.collectives, "is_main", lambda: False)
    logger = tracking.create(tiny_config(data), tmp_path, trainer.load_data(tiny_config(data)))
    assert type(logger) is tracking.Logger and not (tmp_path / "tensorboard").exists()


def test_evaluate_adds_its_numbers_where_the_run_logged(logged, tmp_path):
    path, _, _, _, data = logged
    metrics = evaluate(path, samples=2, progress=False)
    reader = events(path)
    for key in ("test_log_px", "test_elbo", "epochs_trained"):
        scalars = reader.Scalars(f"evaluate/{key}")
        assert [(s.step, s.value) for s in scalars] == [(EPOCHS, pytest.approx(metrics[key], rel=1e-6))], key
    assert [s.step for s in reader.Scalars("test/elbo")] == list(range(1, EPOCHS + 1))  # nothing dropped
    content = reader.PluginTagToContent("hparams")["_hparams_/experiment"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    assert "evaluate/test_log_px" in {m.name.tag for m in experiment.metric_infos}
    quiet = train(tiny_config(data, logger="none", epochs=1), tmp_path / "none", progress=False)
    evaluate(quiet.path, samples=2, progress=False)
    assert not (quiet.path / "tensorboard").exists()  # a run that did not log gets no events


def test_a_vae_logs_its_one_latent_group_and_no_gamma(logged, tmp_path):
    _, _, _, _, data = logged
    run = train(tiny_config(data, model="vae", epochs=1), tmp_path / "vae", progress=False)
    reader = events(run.path)
    assert set(reader.Tags()["images"]) == {"images/reconstructions", "images/samples", "images/traversals_latent"}
    assert reader.Tags()["histograms"] == []
    assert {"test/kl_z", "test/elbo"} <= set(reader.Tags()["scalars"])


def test_the_projector_labels_are_the_label_and_the_known_factors():
    images = torch.zeros(3, 1, 2, 2)
    labels, factors = torch.tensor([4, 1, 7]), torch.tensor([[0.5, 2.0], [1.0, 3.0], [0.25, 1.0]])
    both = Dataset("d", Split(images), Split(images, labels, factors), ("scale", "shape"))
    assert tracking.projector_metadata(both, 2) == ([["4", "0.5", "2"], ["1", "1", "3"]], ["label", "scale", "shape"])
    assert tracking.projector_metadata(Dataset("d", Split(images), Split(images, labels)), 3) == (["4", "1", "7"], None)
    assert tracking.projector_metadata(Dataset("d", Split(images), Split(images)), 3) == (None, None)


def test_the_projector_shows_square_images_only(tmp_path):
    """TensorBoard's sprite sheet (torch's) takes square images: other shapes go without thumbnails."""
    for shape, sprite in (((1, 6, 4), False), ((1, 4, 4), True)):
        model = models.create("vae", shape, architecture="mlp").eval()
        images = torch.rand(5, *shape)
        dataset = Dataset("d", Split(images), Split(images, torch.arange(5)))
        folder = tmp_path / f"{shape[1]}x{shape[2]}"
        logger = tracking.TensorBoard(folder, config_module.from_dict({"eval_batch_size": 2}), dataset)
        logger.finish(model, {"epoch": 1, "test_elbo": -1.0})
        assert (folder / "00001" / "latent" / "tensors.tsv").read_text().count("\n") == 5
        assert (folder / "00001" / "latent" / "sprite.png").exists() == sprite
