"""The three affine families: identity, exact inverse, the documented convention, agreement with
independently built matrices (numpy, scipy.linalg.expm) and with F.grid_sample, gradients."""

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F

from vitae import transforms
from vitae.transforms import base
from vitae.errors import VitaeError

FAMILIES = ["affine", "affine_decomp", "affine_diffeo"]


def random_theta(batch, dtype=torch.float64, scale=0.3, seed=0):
    return torch.randn(batch, 6, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


@pytest.mark.parametrize("name", FAMILIES)
def test_zero_theta_reproduces_the_input_bit_for_bit(name):
    t = transforms.create(name)
    for shape in [(4, 1, 28, 28), (2, 3, 17, 30), (2, 1, 64, 64), (2, 1, 160, 120)]:  # the last: the separable grid
        images = torch.rand(shape)
        theta = torch.zeros(shape[0], 6)
        assert torch.equal(t.warp(images, theta), images)
        assert torch.equal(t.warp(images, theta, inverse=True), images)
    points = torch.rand(3, 50, 2) * 2 - 1
    assert torch.equal(t.transform_points(points, torch.zeros(3, 6)), points)


@pytest.mark.parametrize("name", FAMILIES)
def test_inverse_round_trip_on_points(name):
    t = transforms.create(name)
    theta = random_theta(8)
    points = torch.rand(8, 100, 2, dtype=torch.float64) * 2 - 1
    there = t.transform_points(points, theta)
    assert not torch.allclose(there, points)
    torch.testing.assert_close(t.transform_points(there, theta, inverse=True), points, atol=1e-12, rtol=0)
    torch.testing.assert_close(t.transform_points(t.transform_points(points, theta, inverse=True), theta), points,
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_inverse_round_trip_on_a_smooth_image(name):
    """Interpolation blurs (error ~ f'' h^2 / 8 per pass), so a smooth image well inside the frame
    comes back to within 1e-2 (the centre: content the first warp pushed out of the frame is lost)."""
    t = transforms.create(name)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 48), torch.linspace(-1, 1, 48), indexing="ij")
    image = torch.exp(-(xx**2 + (yy / 0.7) ** 2) / 0.4).expand(4, 1, 48, 48).double()
    theta = random_theta(4, scale=0.1)
    back = t.warp(t.warp(image, theta), theta, inverse=True)
    assert (back - image)[..., 12:36, 12:36].abs().max() < 1e-2
    assert (t.warp(image, theta) - image).abs().max() > 5e-2  # the warp did move the image


def test_warp_reads_the_input_at_the_transformed_point():
    """Convention: warp(I, theta)(p) = I(T_theta(p)). A translation of +3 pixels in x reads
    3 pixels to the right, so a bright pixel at column 10 appears at column 7."""
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, 12, 10] = 1.0
    theta = torch.zeros(1, 6)
    theta[0, 2] = 3 * 2 / 28  # g13: x translation, 3 pixels in normalised units
    out = transforms.create("affine").warp(image, theta)
    assert out[0, 0, 12, 7] == pytest.approx(1.0, abs=1e-5)
    assert out.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("size", [(28, 28), (160, 120)])  # the grid as a matrix product, and separable
def test_warp_agrees_with_affine_grid_and_grid_sample(name, size):
    t = transforms.create(name)
    images = torch.rand(5, 2, *size, dtype=torch.float64)
    theta = random_theta(5)
    reference = F.grid_sample(images, F.affine_grid(t.matrix(theta), list(images.shape), align_corners=False),
                              mode="bilinear", padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(t.warp(images, theta), reference, atol=1e-10, rtol=0)


def reference_matrix(name: str, g: np.ndarray) -> np.ndarray:
    """The 3x3 homogeneous matrix of supplement equations 1-3, built with numpy/scipy."""
    if name == "affine":
        m = np.eye(3)
        m[:2] += g.reshape(2, 3)
    elif name == "affine_decomp":
        alpha, shear, sx, sy, tx, ty = g
        rotation = np.array([[np.cos(alpha), -np.sin(alpha)], [np.sin(alpha), np.cos(alpha)]])
        m = np.eye(3)
        m[:2, :2] = rotation @ np.array([[1, shear], [0, 1]]) @ np.diag([1 + sx, 1 + sy])
        m[:2, 2] = tx, ty
    else:
        gamma = np.zeros((3, 3))
        gamma[:2] = g.reshape(2, 3)
        m = scipy.linalg.expm(gamma)
    return m


@pytest.mark.parametrize("name", FAMILIES)
def test_matrices_match_an_independent_construction(name):
    t = transforms.create(name)
    theta = random_theta(6, scale=0.8)
    forward = t.matrix(theta).numpy()
    inverse = t.matrix(theta, inverse=True).numpy()
    for i, g in enumerate(theta.numpy()):
        expected = reference_matrix(name, g)
        np.testing.assert_allclose(forward[i], expected[:2], atol=1e-12)
        np.testing.assert_allclose(inverse[i], np.linalg.inv(expected)[:2], atol=1e-10)


def test_diffeo_inverse_is_the_negated_parameters_but_decomp_is_not():
    points = torch.rand(4, 20, 2, dtype=torch.float64) * 2 - 1
    theta = random_theta(4, scale=0.5)
    diffeo = transforms.create("affine_diffeo")
    torch.testing.assert_close(diffeo.transform_points(points, theta, inverse=True),
                               diffeo.transform_points(points, -theta), atol=1e-12, rtol=0)
    decomp = transforms.create("affine_decomp")
    assert not torch.allclose(decomp.transform_points(points, theta, inverse=True),
                              decomp.transform_points(points, -theta), atol=1e-3)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("separable", [False, True])
def test_gradcheck_float64(name, inverse, separable, monkeypatch):
    if separable:  # the large images' route for the affine grid, on a small image
        monkeypatch.setattr(base, "SEPARABLE_PIXELS", 0)
    t = transforms.create(name)
    images = torch.rand(2, 1, 7, 9, dtype=torch.float64, requires_grad=True)
    theta = random_theta(2, scale=0.2).requires_grad_()
    assert torch.autograd.gradcheck(lambda im, th: t.warp(im, th, inverse=inverse), (images, theta))
    points = (torch.rand(2, 5, 2, dtype=torch.float64) * 2 - 1).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, th: t.transform_points(p, th, inverse=inverse), (points, theta))


def test_bad_input_names_the_problem():
    with pytest.raises(VitaeError, match="unknown transformation 'afine'.*affine_diffeo"):
        transforms.create("afine")
    with pytest.raises(VitaeError, match="does not take"):
        transforms.create("affine", tessellation=(2, 2))
    with pytest.raises(ValueError, match=r"theta must have shape \[B, 6\], got \[3, 5\]"):
        transforms.create("affine_diffeo").warp(torch.rand(3, 1, 8, 8), torch.zeros(3, 5))


@pytest.mark.parametrize("name", FAMILIES)
def test_prepared_warp_equals_warp_in_both_directions(name):
    t = transforms.create(name)
    images, theta = torch.rand(3, 2, 20, 28, dtype=torch.float64), random_theta(3)
    warp = t.prepare(theta)
    torch.testing.assert_close(warp(images), t.warp(images, theta), atol=1e-12, rtol=0)
    torch.testing.assert_close(warp(images, inverse=True), t.warp(images, theta, inverse=True), atol=1e-12, rtol=0)
