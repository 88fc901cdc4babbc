"""Data passed in from Python (``vitae.data.as_dataset``): tensors, ``torch.utils.data`` data sets
and folders become the same splits, pixel for pixel; bad input names the argument; a run trained
on them records what a later process can (and cannot) load again."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vitae import config as config_module
from vitae.cli import main
from vitae.data import as_dataset
from vitae.errors import VitaeError
from vitae.training.evaluate import evaluate
from vitae.training.trainer import train


def test_a_tensor_splits_into_its_last_tenth_for_testing():
    images = torch.rand(50, 1, 6, 6)
    dataset = as_dataset(images)
    assert torch.equal(dataset.train.images, images[:45]) and torch.equal(dataset.test.images, images[45:])
    assert dataset.name == "in_memory" and dataset.image_shape == (1, 6, 6)
    assert len(as_dataset(images, test_fraction=0.2).test) == 10
    assert len(as_dataset(images[:3]).test) == 1  # at least one test image


def test_uint8_is_divided_by_255_and_grey_images_gain_a_channel():
    pixels = torch.arange(0, 250, dtype=torch.uint8).view(10, 5, 5)
    dataset = as_dataset(pixels)
    assert dataset.image_shape == (1, 5, 5) and dataset.train.images.dtype == torch.float32
    assert torch.equal(dataset.train.images[1, 0, 0], pixels[1, 0].float() / 255)


def test_a_torch_dataset_gives_the_same_images_and_its_labels():
    images, labels = torch.rand(20, 3, 4, 4), torch.arange(20) % 3

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 20

        def __getitem__(self, i):
            return images[i], int(labels[i])

    for source in (Pairs(), torch.utils.data.TensorDataset(images, labels)):
        dataset = as_dataset(source)
        assert torch.equal(dataset.train.images, images[:18]) and torch.equal(dataset.test.images, images[18:])
        assert torch.equal(dataset.train.labels, labels[:18]) and torch.equal(dataset.test.labels, labels[18:])
    explicit = as_dataset(images, test=images[:4])
    assert len(explicit.train) == 20 and torch.equal(explicit.test.images, images[:4])


@pytest.mark.parametrize("data, message", [
    (torch.rand(2, 1, 1, 4, 4), r"data must be images \[N, C, H, W\] \(or \[N, H, W\]\), got shape \[2, 1, 1, 4, 4\]"),
    (torch.ones(5, 1, 4, 4, dtype=torch.int64), "data must be float pixels in \\[0, 1\\] or uint8, got torch.int64"),
    (torch.rand(1, 1, 4, 4), "data has 1 image"),
    ("not images".split(), "data must be a tensor of images"),
    (np.zeros((3, 4, 4)), None),  # an array is a tensor to torch: accepted
])
def test_bad_data_names_the_argument(data, message):
    if message is None:
        assert as_dataset(data).image_shape == (1, 4, 4)
        return
    with pytest.raises(ValueError, match=message):
        as_dataset(data)


def test_bad_torch_datasets_and_options_name_the_argument():
    class PILItems(torch.utils.data.Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return Image.new("L", (4, 4))

    with pytest.raises(ValueError, match=r"data\[0\] is of type Image, not an image tensor .*ToTensor"):
        as_dataset(PILItems())
    with pytest.raises(ValueError, match="test_fraction must be between 0 and 1"):
        as_dataset(torch.rand(5, 1, 4, 4), test_fraction=1.5)
    with pytest.raises(ValueError, match=r"test images are \[1, 3, 3\], the training images \[1, 4, 4\]"):
        as_dataset(torch.rand(5, 1, 4, 4), test=torch.rand(2, 1, 3, 3))


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: a second thread only waits on a busy machine
    yield
    torch.set_num_threads(threads)


def test_a_run_on_a_tensor_needs_the_same_data_back(tmp_path, one_thread, capsys):
    images = torch.rand(40, 1, 8, 8)
    config = config_module.Config(model="vae", epochs=1, warmup=1, batch_size=4)
    run = train(config, tmp_path / "run", data=images, progress=False)
    stored = json.loads(run.config.read_text())
    assert stored["data"] == "in_memory" and stored["architecture"] == "auto"
    with pytest.raises(VitaeError, match=r"the data's images are \[1, 6, 6\], the run was trained on \[1, 8, 8\]"):
        evaluate(run.path, samples=2, data=torch.rand(10, 1, 6, 6), progress=False)
    with pytest.raises(VitaeError, match="trained on data passed in from Python"):
        train(None, run.path, resume=True, progress=False)
    assert evaluate(run.path, samples=2, data=images, progress=False)["test_images"] == 4
    assert main(["plot", str(run.path)]) == 2
    assert "vitae: error: this run was trained on data passed in from Python" in capsys.readouterr().err


def test_a_folder_from_python_is_the_images_data_set_again_from_the_command_line(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("VITAE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(30):
        Image.fromarray(rng.integers(0, 256, (10, 10), dtype=np.uint8)).save(folder / f"{i}.png")
    config = config_module.Config(model="vae", epochs=1, warmup=1, batch_size=4, data_options={"size": 8, "channels": 1})
    run = train(config, tmp_path / "run", data=folder, progress=False)
    stored = json.loads(run.config.read_text())
    assert stored["data"] == "images" and stored["data_root"] == str(folder)
    assert main(["evaluate", str(run.path), "--samples", "2", "--quiet"]) == 0
    assert json.loads((run.path / "metrics.json").read_text())["test_images"] == 3
    with pytest.raises(VitaeError, match="this run's data is 'images'"):
        evaluate(run.path, samples=2, data=torch.rand(10, 1, 8, 8), progress=False)


def test_resuming_with_the_same_tensor_matches_an_uninterrupted_run(tmp_path, one_thread):
    images = torch.rand(48, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    config = config_module.Config(model="cvitae", epochs=2, warmup=1, batch_size=8, lr=1e-3, seed=3)
    straight = train(config, tmp_path / "straight", data=images, progress=False)
    train(config_module.override(config, ["epochs=1"]), tmp_path / "split", data=images, progress=False)
    resumed = train(config, tmp_path / "split", resume=True, data=images, progress=False)
    a = torch.load(straight.checkpoint, weights_only=True)["model"]
    b = torch.load(resumed.checkpoint, weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_channels_last_conv_net_resumes_exactly(tmp_path, one_thread):
    """The conv nets keep weights and Adam's moments channels-last; a checkpoint restores them
    so, and the resumed run ends bit-identical to the uninterrupted one."""
    images = torch.rand(24, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    config = config_module.Config(model="cvitae", architecture="conv", epochs=2, warmup=1, batch_size=8, lr=1e-3, seed=5)
    straight = train(config, tmp_path / "straight", data=images, progress=False)
    train(config_module.override(config, ["epochs=1"]), tmp_path / "split", data=images, progress=False)
    resumed = train(config, tmp_path / "split", resume=True, data=images, progress=False)
    a = torch.load(straight.checkpoint, weights_only=True)
    b = torch.load(resumed.checkpoint, weights_only=True)
    assert a["model"].keys() == b["model"].keys() and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    kernels = [v for v in b["model"].values() if v.dim() == 4]
    assert kernels and all(v.is_contiguous(memory_format=torch.channels_last) for v in kernels)
