"""Any folder of images (the user's own), resized to one size, grey or colour.

``load(root, size=128, channels=3, crop=True, limit=None, test_fraction=0.1)``: every file under
``root`` (sub-folders included, hidden files not) that Pillow can read, in sorted order; the last
``test_fraction`` of them is the test split. Each image is converted to ``channels`` (1: grey;
3: RGB, a grey image replicated), cut to the target's aspect ratio about its centre when ``crop``
(else stretched), and resized to ``size`` (an int for a square, or ``(height, width)``).

Streaming with a cache: the images are decoded and resized once, one at a time, into a ``uint8``
array ``[N, C, H, W]`` on disk (``$VITAE_CACHE``, else ``~/.cache/vitae``, under ``images/``;
keyed by the folder, its file names and these options), which later loads memory-map. Decoding
never holds more than a chunk of images in memory; the returned ``Dataset`` holds the images as
float32 (4 bytes a pixel: 3 x 128 x 128 images take 196 KB each; ``limit`` keeps the first
``limit`` files). Delete the cache file to re-read a folder whose files changed but kept names.

A file that is not an image or cannot be decoded is skipped, with one warning naming every
skipped file (repeated when the cache is used); a folder with nothing usable is a ``VitaeError``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from vitae import files as vitae_files
from vitae.data.base import Dataset, Split
from vitae.errors import VitaeError

CACHE_VERSION = 1  # bump when decoding changes, so cached arrays are rebuilt
CHUNK = 512  # images decoded between writes to the cache file
SHOWN_SKIPPED = 20  # skipped files named in the warning; the rest are counted


def cache_dir() -> Path:
    """``$VITAE_CACHE``, else ``~/.cache/vitae``: never inside the package."""
    return Path(os.environ.get("VITAE_CACHE") or Path.home() / ".cache" / "vitae")


def target_size(size) -> tuple[int, int]:
    """``(height, width)`` from an int (a square) or a pair."""
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    if (not isinstance(pair, (list, tuple)) or len(pair) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 4096 for n in pair)):
        raise VitaeError(f"data_options.size must be a whole number or two (height, width), each 1 to 4096, got {size!r}")
    return int(pair[0]), int(pair[1])


def decode(path: Path, size: tuple[int, int], channels: int, crop: bool) -> np.ndarray:
    """One image as ``uint8`` ``[channels, H, W]``; raises ``OSError``/``ValueError`` when
    ``path`` is not a readable image."""
    height, width = size
    mode = {1: "L", 3: "RGB"}[channels]
    with Image.open(path) as image:
        image.draft(mode, (width, height))  # JPEG: decode at a reduced scale, never below the target
        image = image.convert(mode)
    if crop:
        image = image.crop(centre_box(image.size, width / height))
    image = image.resize((width, height), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def centre_box(image_size: tuple[int, int], aspect: float) -> tuple[int, int, int, int]:
    """The largest ``(left, top, right, bottom)`` box of width/height ``aspect`` about the
    centre of an image of ``(width, height)``."""
    w, h = image_size
    crop_w, crop_h = (round(h * aspect), h) if w / h > aspect else (w, round(w / aspect))
    left, top = (w - crop_w) // 2, (h - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


def _decode_or_none(path: Path, size, channels: int, crop: bool) -> np.ndarray | None:
    try:
        return decode(path, size, channels, crop)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def cache_file(root: Path, files: list[Path], size, channels: int, crop: bool) -> Path:
    key = json.dumps({"root": str(root.resolve()), "files": [str(f.relative_to(root)) for f in files],
                      "size": size, "channels": channels, "crop": crop, "version": CACHE_VERSION})
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "images" / f"{root.resolve().name}-{size[0]}x{size[1]}x{channels}-{digest}.npy"


def decode_all(root: Path, files: list[Path], size=(128, 128), channels: int = 3, crop: bool = True) -> tuple[np.ndarray, list[Path]]:
    """The images of ``files`` (below ``root``) as a read-only ``uint8`` array ``[N, C, H, W]``
    memory-mapped from the cache, and the files they came from (the readable ones)."""
    path = cache_file(root, files, size, channels, crop)
    index = path.with_suffix(".json")
    if not (path.is_file() and index.is_file()):
        _build_cache(root, files, size, channels, crop, path, index)
    kept_names, skipped = (json.loads(index.read_text())[key] for key in ("kept", "skipped"))
    if skipped:
        shown = ", ".join(skipped[:SHOWN_SKIPPED]) + (f" and {len(skipped) - SHOWN_SKIPPED} more" if len(skipped) > SHOWN_SKIPPED else "")
        warnings.warn(f"skipped {len(skipped)} file(s) in {root} that are not readable images: {shown}", stacklevel=3)
    if not kept_names:
        raise VitaeError(f"none of the {len(files)} file(s) in {root} is a readable image")
    return np.load(path, mmap_mode="r")[: len(kept_names)], [root / name for name in kept_names]


def _build_cache(root: Path, files: list[Path], size, channels: int, crop: bool, path: Path, index: Path) -> None:
    """Decode ``files`` into ``path`` (and the names kept into ``index``). Each builder writes a
    temporary file of its own and renames it into place, so several processes building the same
    cache at once (torchrun's ranks) each leave a whole one, and a failed build leaves nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kept, skipped = [], []

    def decode_into(partial: Path) -> None:
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(files), channels, *size))
        # Pillow releases the GIL while decoding, so threads decode in parallel
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool, \
                tqdm(total=len(files), desc=f"decoding {root.name}", unit="image", disable=None) as bar:
            for start in range(0, len(files), CHUNK):
                chunk = files[start:start + CHUNK]
                for file, image in zip(chunk, pool.map(lambda f: _decode_or_none(f, size, channels, crop), chunk)):
                    name = str(file.relative_to(root))
                    if image is None:
                        skipped.append(name)
                    else:
                        array[len(kept)] = image
                        kept.append(name)
                bar.update(len(chunk))
        array.flush()
        del array

    vitae_files.replace_by_path(path, decode_into)
    vitae_files.write_text(index, json.dumps({"kept": kept, "skipped": skipped}))


def to_float(images: np.ndarray) -> torch.Tensor:
    """``uint8`` ``[N, C, H, W]`` -> float32 in ``[0, 1]``, converted a chunk at a time so that a
    memory-mapped array is never copied whole as ``uint8`` on the way."""
    out = torch.empty(images.shape, dtype=torch.float32)
    for start in range(0, len(images), CHUNK):
        out[start:start + CHUNK] = torch.from_numpy(np.array(images[start:start + CHUNK])).float().div_(255)
    return out


def split_last(images: np.ndarray, test_fraction: float, labels: torch.Tensor | None = None) -> tuple[Split, Split]:
    """Train and test splits: the last ``test_fraction`` of the images (at least one) is test."""
    if not 0 < test_fraction < 1:
        raise VitaeError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    n = len(images)
    if n < 2:
        raise VitaeError(f"only {n} readable image(s): at least 2 are needed, one to train on and one to test")
    n_train = min(n - 1, n - max(1, round(n * test_fraction)))
    tensor = to_float(images)
    part = lambda t, s: None if t is None else t[s]  # noqa: E731
    return (Split(tensor[:n_train], part(labels, slice(None, n_train))),
            Split(tensor[n_train:], part(labels, slice(n_train, None))))


def list_images(root: Path, pattern: str = "**/*") -> list[Path]:
    """The non-hidden files under ``root`` matching ``pattern``, sorted."""
    if not root.is_dir():
        raise VitaeError(f"image folder {root} does not exist or is not a folder")
    files = sorted(p for p in root.glob(pattern) if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise VitaeError(f"image folder {root} holds no files matching '{pattern}'")
    return files


def check_options(channels: int, limit: int | None) -> None:
    if channels not in (1, 3):
        raise VitaeError(f"channels must be 1 (grey) or 3 (colour), got {channels}")
    if limit is not None and limit < 2:
        raise VitaeError(f"limit must be at least 2 images, got {limit}")


def load(root=None, size=128, channels: int = 3, crop: bool = True, limit: int | None = None,
         test_fraction: float = 0.1) -> Dataset:
    if root is None:
        raise VitaeError("the 'images' data set reads your own folder: set data_root=FOLDER")
    check_options(channels, limit)
    root = Path(root).expanduser()
    files = list_images(root)[:limit]
    images, _ = decode_all(root, files, target_size(size), channels, crop)
    train, test = split_last(images, test_fraction)
    return Dataset("images", train, test)
