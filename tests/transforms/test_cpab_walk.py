"""CPAB's compiled walk (vitae.transforms.cpab_walk) against the eager walk of cpab.py: the same
end points and gradients (to theta and to the points) in float64, every point walking; the
thread count changes no bit; points out of image order give the same result."""

import pytest
import torch

from conftest import same_bits_for_thread_counts
from vitae import kernels, transforms
from vitae.transforms import cpab, cpab_walk

pytestmark = pytest.mark.skipif(kernels.compiler() is None, reason="no C++ compiler")


def walked(t, theta, points, choice, monkeypatch):
    """Points, gradients to theta and to the points of a fixed weighted sum, every point walking."""
    monkeypatch.setenv("VITAE_KERNELS", choice)
    th, p = theta.clone().requires_grad_(), points.clone().requires_grad_()
    out = t.transform_points(p, th)
    weights = torch.linspace(-1, 2, out.numel(), dtype=out.dtype).view_as(out)
    return (out.detach(), *torch.autograd.grad((out * weights).sum(), (th, p)))


@pytest.mark.parametrize("tess, scale", [((2, 4), 1.0), ((4, 4), 2.0), ((3, 2), 0.5)])
def test_compiled_walk_equals_the_eager_walk_in_values_and_gradients(tess, scale, monkeypatch):
    t = transforms.create("cpab", tessellation=tess, zero_boundary=False)
    t._shortcut = False  # every point walks
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(5, t.theta_dim, generator=g, dtype=torch.float64) * scale
    points = torch.rand(5, 300, 2, generator=g, dtype=torch.float64) * 2.2 - 1.1  # some outside the square
    (out, g_theta, g_points), (ref, r_theta, r_points) = (walked(t, theta, points, choice, monkeypatch)
                                                          for choice in ("compiled", "torch"))
    assert (out - points).abs().max() > 0.05  # the field does move the points
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    torch.testing.assert_close(g_theta, r_theta, atol=1e-9, rtol=1e-10)
    torch.testing.assert_close(g_points, r_points, atol=1e-10, rtol=0)


def walk_inputs(t, images=3, per_image=40, seed=5):
    """Cell-unit points of ``images`` images and the tables of a random field, as cpab.py builds them."""
    g = torch.Generator().manual_seed(seed)
    fine, coarse = t._step_maps(torch.randn(images, t.theta_dim, generator=g, dtype=torch.float64)).walk()
    n = images * per_image
    x = torch.rand(n, generator=g, dtype=torch.float64) * t.nx
    y = torch.rand(n, generator=g, dtype=torch.float64) * t.ny
    offset = (torch.arange(images, dtype=torch.float64) * t.n_cells).repeat_interleave(per_image)
    start = cpab._cell(x, y, t.nx, t.ny, offset)
    gx, gy = torch.randn(n, generator=g, dtype=torch.float64), torch.randn(n, generator=g, dtype=torch.float64)
    return x, y, start, coarse, fine, gx, gy


def run_walk(t, inputs, order):
    """End points, point gradients (in the original order) and table gradients of the kernel's
    walk of the points taken in ``order``."""
    x, y, start, coarse, fine, gx, gy = inputs
    x1, y1, record = cpab_walk.walk(x[order], y[order], coarse, fine, start[order], t.nx, t.ny, t.n_steps, t.n_sub)
    grad_coarse, grad_fine = torch.zeros_like(coarse), torch.zeros_like(fine)
    px, py = record.back(gx[order], gy[order], grad_coarse, grad_fine, need_points=True)
    back = torch.empty_like(order)
    back[order] = torch.arange(len(order))
    return x1[back], y1[back], px[back], py[back], grad_coarse, grad_fine


def test_the_thread_count_does_not_change_a_bit(monkeypatch):
    """Each image's gradient is summed by one thread in one order (torch's own products around
    the walk are another matter: they may round differently with the thread count)."""
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    t = transforms.create("cpab", tessellation=(2, 4))
    inputs = walk_inputs(t, images=7, per_image=150)
    same_bits_for_thread_counts(lambda: run_walk(t, inputs, torch.arange(7 * 150)))


def test_points_out_of_image_order_walk_as_in_order(monkeypatch):
    """The kernel sums one image's gradient in one thread; points of interleaved images (which
    cpab.py never passes) must still come out right."""
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    t = transforms.create("cpab", tessellation=(2, 4))
    inputs = walk_inputs(t)
    ordered = run_walk(t, inputs, torch.arange(120))
    shuffled = run_walk(t, inputs, torch.randperm(120, generator=torch.Generator().manual_seed(6)))
    for a, b in zip(ordered, shuffled):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    assert ordered[4].abs().sum() > 0 and ordered[5].abs().sum() > 0


@pytest.mark.parametrize("dtype, tess", [(torch.float32, (2, 4)), (torch.float32, (4, 4)), (torch.float32, (4, 8)),
                                         (torch.float64, (2, 2)), (torch.float64, (2, 4)), (torch.float64, (4, 4))])
def test_the_vector_walk_equals_the_scalar_walk(dtype, tess, monkeypatch):
    """The AVX-512 walk against the kernel's scalar walk, for every number of register pairs its
    lookup takes (1, 2, 4 in each dtype): the same end points and point gradients bit for bit
    (the same operations in the same order), the maps' gradients to rounding (summed in another
    order). 700 points an image: several blocks and a part vector; some outside the square, one
    NaN and one infinite."""
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    if cpab_walk.vector_lanes(dtype) == 0:
        pytest.skip("no AVX-512 on this CPU: the kernel has only its scalar walk")
    t = transforms.create("cpab", tessellation=tess)
    x, y, start, coarse, fine, gx, gy = (v.to(dtype) if v.is_floating_point() else v
                                         for v in walk_inputs(t, images=4, per_image=700, seed=7))
    x[::9] = x[::9] * 1.3 - 0.15 * t.nx  # outside the square
    x[5], y[40] = float("nan"), float("inf")
    inputs = x, y, start, coarse, fine, gx, gy
    order = torch.arange(x.shape[0])
    monkeypatch.setattr(cpab_walk, "VECTOR", True)
    vector = run_walk(t, inputs, order)
    monkeypatch.setattr(cpab_walk, "VECTOR", False)
    scalar = run_walk(t, inputs, order)
    moved = (vector[0] - x).abs()
    assert moved[torch.isfinite(moved)].max() > 0.3  # the field moves points across cells
    assert vector[0][5].isnan()
    for a, b in zip(vector[:4], scalar[:4]):
        torch.testing.assert_close(a, b, atol=0, rtol=0, equal_nan=True)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for a, b in zip(vector[4:], scalar[4:]):
        # the NaN point spoils its own image's cells only (which of them differs: the scalar walk
        # adds its terms times 0 on a redone step, the vector walk leaves those lanes out)
        assert a.isnan().any() and not a[:, t.n_cells:].isnan().any() and not b[:, t.n_cells:].isnan().any()
        finite = ~(a.isnan() | b.isnan())
        torch.testing.assert_close(a[finite], b[finite], atol=tol * float(b[finite].abs().max()), rtol=0)


@pytest.mark.parametrize("n_steps, n_sub, per_image", [(1, 1, 5), (5, 2, 33), (2, 7, 300)])
def test_the_vector_walk_equals_the_scalar_walk_for_other_steps_and_sizes(n_steps, n_sub, per_image, monkeypatch):
    """Other step counts (one sub-step: lerp at 1/2, the formula's other branch), images with
    fewer points than a vector, and a float32 tessellation past 32 cells that fills its second
    register pair only in part ([3, 3]: 36 cells): end points bit for bit, the maps' gradients
    to rounding."""
    monkeypatch.setenv("VITAE_KERNELS", "compiled")
    if cpab_walk.vector_lanes(torch.float32) == 0:
        pytest.skip("no AVX-512 on this CPU: the kernel has only its scalar walk")
    t = transforms.create("cpab", tessellation=(3, 3), n_steps=n_steps, n_sub=n_sub)
    inputs = tuple(v.float() if v.is_floating_point() else v for v in walk_inputs(t, images=5, per_image=per_image))
    order = torch.arange(5 * per_image)
    monkeypatch.setattr(cpab_walk, "VECTOR", True)
    vector = run_walk(t, inputs, order)
    monkeypatch.setattr(cpab_walk, "VECTOR", False)
    scalar = run_walk(t, inputs, order)
    assert (vector[0] - inputs[0]).abs().max() > 0.1
    for a, b in zip(vector[:4], scalar[:4]):
        assert torch.equal(a, b)
    for a, b in zip(vector[4:], scalar[4:]):
        torch.testing.assert_close(a, b, atol=1e-5 * float(b.abs().max()), rtol=0)
