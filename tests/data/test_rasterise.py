"""The batched z-buffer, on its compiled path and on numpy's, against a brute-force renderer
(every pixel against every triangle, the normal from the world vertices), a square filled by hand,
a tilted triangle's shading, chunking, batching and thread counts that change nothing, the two
paths' images equal bit for bit (random meshes, and bodies), and bad arguments."""

import numpy as np
import pytest
import torch

from vitae import kernels
from vitae.data import rasterise as rasterise_module
from vitae.data.rasterise import rasterise

PATHS = [pytest.param("compiled", marks=pytest.mark.skipif(kernels.compiler() is None, reason="no C++ compiler")), "torch"]


@pytest.fixture(params=PATHS, autouse=True)
def path(request, monkeypatch):
    """Every test on both paths (VITAE_KERNELS=torch is numpy's)."""
    monkeypatch.setenv("VITAE_KERNELS", request.param)
    return request.param


def brute_force(vertices, faces, height, width, view_height, view_centre):
    """Each pixel centre tested against each triangle with dense arrays; the nearest wins, ties to
    the lower face; the same arithmetic as the module's convention, no candidate boxes."""
    scale = height / view_height
    images = np.zeros((len(vertices), height, width), np.float32)
    cols, rows = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    cols, rows = cols.ravel()[:, None], rows.ravel()[:, None]
    for i, v in enumerate(vertices):
        px = (v[:, 0] - view_centre[0]) * scale + width / 2
        py = (view_centre[1] - v[:, 1]) * scale + height / 2
        x, y, z = px[faces], py[faces], v[:, 2][faces]  # [F, 3]
        e1x, e1y, e2x, e2y = x[:, 1] - x[:, 0], y[:, 1] - y[:, 0], x[:, 2] - x[:, 0], y[:, 2] - y[:, 0]
        area = e1x * e2y - e1y * e2x
        with np.errstate(divide="ignore", invalid="ignore"):
            qx, qy = cols + 0.5 - x[:, 0], rows + 0.5 - y[:, 0]  # [P, F]
            a = (qx * e2y - qy * e2x) / area
            b = (e1x * qy - e1y * qx) / area
            inside = (a >= 0) & (b >= 0) & (a + b <= 1) & (np.abs(area) > 1e-12)
            depth = np.where(inside, z[:, 0] + a * (z[:, 1] - z[:, 0]) + b * (z[:, 2] - z[:, 0]), -np.inf)
        hit = inside.any(axis=1)
        nearest = np.argmax(depth, axis=1)  # the first maximum: the lower face among equals
        corners = v[faces[nearest[hit]]]
        normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        flat = images[i].reshape(-1)
        flat[hit] = 0.3 + 0.7 * np.abs(normal[:, 2]) / np.maximum(np.linalg.norm(normal, axis=1), 1e-12)
    return images


def random_meshes(n=3, num_vertices=60, num_faces=120, seed=0):
    rng = np.random.default_rng(seed)
    vertices = rng.uniform(-1, 1, size=(n, num_vertices, 3))
    faces = np.stack([rng.choice(num_vertices, 3, replace=False) for _ in range(num_faces)])
    faces[-1] = faces[-2]  # a repeated triangle: equal depths everywhere, the lower face must win
    vertices[:, faces[0, 2]] = vertices[:, faces[0, 0]]  # and a degenerate one, which covers nothing
    return vertices, faces


@pytest.mark.parametrize("size", [(30, 20), (17, 41)])
def test_matches_brute_force(size):
    vertices, faces = random_meshes()
    height, width = size
    expected = brute_force(vertices, faces, height, width, 2.5, (0.1, -0.2))
    got = rasterise(vertices, faces, height, width, view_height=2.5, view_centre=(0.1, -0.2))
    assert got.dtype == torch.float32 and got.shape == (3, height, width)
    assert (expected > 0).mean() > 0.15  # the meshes cover much of the image, with overlaps
    np.testing.assert_array_equal(got.numpy() > 0, expected > 0)  # the same pixels, exactly
    # and the same triangle's shading in each (the normal found another way: equal up to rounding)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)


def test_chunks_and_batches_change_nothing(monkeypatch):
    vertices, faces = random_meshes(n=4, seed=1)
    whole = rasterise(vertices, faces, 40, 30, view_height=2.2)
    monkeypatch.setattr(rasterise_module, "CANDIDATES_PER_CHUNK", 7)
    chunked = rasterise(vertices, faces, 40, 30, view_height=2.2)
    one_at_a_time = torch.cat([rasterise(v[None], faces, 40, 30, view_height=2.2) for v in vertices])
    assert torch.equal(whole, chunked) and torch.equal(whole, one_at_a_time)


@pytest.mark.parametrize("size", [(30, 20), (400, 200)])
def test_the_two_paths_make_the_same_bits(size, monkeypatch):
    vertices, faces = random_meshes(n=5, num_vertices=300, num_faces=900, seed=2)
    images = []
    for choice in ("compiled", "torch"):
        monkeypatch.setenv("VITAE_KERNELS", choice)
        images.append(rasterise(vertices, faces, *size, view_height=2.4, view_centre=(0.05, 0.1)))
    assert (images[1] > 0).float().mean() > 0.3 and torch.equal(images[0], images[1])


def test_bodies_are_the_same_bits_on_both_paths(monkeypatch):
    from vitae.data.bodies import BodiesData

    data = BodiesData(height=400, width=200)
    factors = data.sample_factors(6, np.random.default_rng(3))
    images = []
    for choice in ("compiled", "torch"):
        monkeypatch.setenv("VITAE_KERNELS", choice)
        images.append(data.sample_observations_from_factors(factors, np.random.default_rng(0)))
    assert (images[1] > 0).float().mean() > 0.05 and torch.equal(images[0], images[1])


def test_thread_counts_change_nothing():
    vertices, faces = random_meshes(n=5, seed=4)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(rasterise(vertices, faces, 37, 23, view_height=2.2))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(results[0], r) for r in results[1:])


def test_fills_a_square_by_hand():
    # two triangles covering x, y in [-0.5, 0.5]; at 100 px per unit the square is 100 x 100 pixels
    vertices = np.array([[[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]]])
    image = rasterise(vertices, np.array([[0, 1, 2], [0, 2, 3]]), 300, 200, view_height=3.0)
    assert (image > 0).sum() == 100 * 100
    assert image[0, 100:200, 50:150].min() == pytest.approx(1.0)  # facing the camera: 0.3 + 0.7 |n_z|


def test_a_tilted_triangle_is_shaded_by_its_normal():
    angle = np.pi / 3  # rotated about the x axis: |n_z| = cos(angle)
    c, s = np.cos(angle), np.sin(angle)
    vertices = np.array([[[-1, -1 * c, -1 * s], [1, -1 * c, -1 * s], [0, 1 * c, 1 * s]]])
    image = rasterise(vertices, np.array([[0, 1, 2]]), 64, 64, view_height=3.0)
    assert image.max() == pytest.approx(0.3 + 0.7 * c) and image.min() == 0


@pytest.mark.parametrize("vertices, faces, size, match", [
    (np.zeros((5, 3)), [[0, 1, 2]], (8, 8), "vertices must have shape"),
    (np.zeros((1, 5, 3)), [[0, 1]], (8, 8), "faces must be integers"),
    (np.zeros((1, 5, 3)), [[0.0, 1.0, 2.0]], (8, 8), "faces must be integers"),
    (np.zeros((1, 5, 3)), [[0, 1, 5]], (8, 8), "faces index vertices 0..4"),
    (np.zeros((1, 5, 3)), [[0, 1, 2]], (0, 8), "height must be a whole number"),
    (np.zeros((1, 5, 3)), [[0, 1, 2]], (8, 2.5), "width must be a whole number"),
])
def test_bad_arguments_name_the_argument(vertices, faces, size, match):
    with pytest.raises(ValueError, match=match):
        rasterise(vertices, np.asarray(faces), *size, view_height=1.0)
    with pytest.raises(ValueError, match="view_height must be positive"):
        rasterise(np.zeros((1, 5, 3)), np.array([[0, 1, 2]]), 8, 8, view_height=0.0)
