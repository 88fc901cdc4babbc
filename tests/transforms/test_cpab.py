"""CPAB: the field space (dimensions, continuity, zero boundary, zero trace), the flow (identity,
inverse, an independent RK4 reference, libcpab 0.1.3 on the same field, gradients, area
preservation) and the errors for bad options."""

import numpy as np
import pytest
import torch

from vitae import transforms
from vitae.errors import VitaeError
from vitae.transforms import cpab
from vitae.transforms.base import identity_grid
from vitae.transforms.cpab import CPAB, basis, triangles


def seeded(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def pixel_grid(batch, size=10, dtype=torch.float64):
    g = (torch.arange(size, dtype=dtype) * 2 + 1) / size - 1
    return torch.stack(torch.meshgrid(g, g, indexing="xy"), dim=-1).reshape(1, -1, 2).expand(batch, -1, -1)


# ------------------------------------------------------------------------------ the field space

@pytest.mark.parametrize("tess, zero_boundary, volume, dim", [
    ((2, 4), True, False, 30), ((4, 4), True, False, 62), ((3, 3), True, False, 34), ((2, 2), True, False, 14),
    ((2, 4), True, True, 7), ((4, 4), True, True, 15), ((2, 4), False, False, 30),
])
def test_dimensions_match_the_paper(tess, zero_boundary, volume, dim):
    t = transforms.create("cpab", tessellation=tess, zero_boundary=zero_boundary, volume_preservation=volume)
    assert isinstance(t, CPAB) and t.theta_dim == dim


def test_basis_is_orthonormal_cached_in_memory_and_read_only():
    b = basis(4, 4, True, False)
    assert basis(4, 4, True, False) is b
    np.testing.assert_allclose(b.T @ b, np.eye(b.shape[1]), atol=1e-12)
    with pytest.raises(ValueError):
        b[0, 0] = 1.0


def shared_edges(nx, ny):
    """Pairs of cells with a common edge and that edge's end points (found from the vertices)."""
    tris = triangles(nx, ny)
    edges, ends = {}, {}
    for c, tri in enumerate(tris):
        for i, j in [(0, 1), (1, 2), (2, 0)]:
            key = frozenset([tuple(np.round(tri[i], 9)), tuple(np.round(tri[j], 9))])
            edges.setdefault(key, []).append(c)
            ends.setdefault(key, (tri[i], tri[j]))
    return [(cells, ends[key]) for key, cells in edges.items()]


@pytest.mark.parametrize("zero_boundary, volume", [(True, False), (False, False), (True, True)])
def test_field_is_continuous_across_every_shared_edge_and_tangent_to_the_border(zero_boundary, volume):
    nx, ny = 3, 2
    t = CPAB((nx, ny), zero_boundary=zero_boundary, volume_preservation=volume)
    a = t.cell_maps(seeded(1, t.theta_dim))[0].numpy()  # [cells, 2, 3], unit square
    along = np.linspace(0, 1, 7)
    n_inner = n_border = 0
    for cells, (p, q) in shared_edges(nx, ny):
        pts = np.outer(1 - along, p) + np.outer(along, q)
        hom = np.concatenate([pts, np.ones((len(pts), 1))], axis=1)
        v = [hom @ a[c].T for c in cells]
        if len(cells) == 2:
            n_inner += 1
            np.testing.assert_allclose(v[0], v[1], atol=1e-12)
        else:  # a border edge: the normal component vanishes if asked
            n_border += 1
            normal = 0 if p[0] == q[0] else 1
            if zero_boundary:
                np.testing.assert_allclose(v[0][:, normal], 0, atol=1e-12)
            else:
                assert np.abs(v[0][:, normal]).max() > 1e-3
    assert n_inner == 4 * nx * ny * 3 // 2 - (nx + ny) and n_border == 2 * (nx + ny)
    if volume:
        np.testing.assert_allclose(a[:, 0, 0] + a[:, 1, 1], 0, atol=1e-12)


# ------------------------------------------------------------------------------------- the flow

def test_zero_theta_is_exactly_the_identity():
    t = transforms.create("cpab", tessellation=(4, 4))
    points = torch.rand(3, 50, 2) * 2.4 - 1.2  # also outside the image
    assert torch.equal(t.transform_points(points, torch.zeros(3, t.theta_dim)), points)
    images = torch.rand(2, 3, 28, 28)
    assert torch.equal(t.warp(images, torch.zeros(2, t.theta_dim)), images)
    assert torch.equal(t.warp(images, torch.zeros(2, t.theta_dim), inverse=True), images)


def test_inverse_round_trip_on_a_grid():
    t = CPAB((4, 4))
    theta = seeded(4, t.theta_dim)
    points = pixel_grid(4, 20)
    there = t.transform_points(points, theta)
    assert (there - points).abs().max() > 0.05
    back = t.transform_points(there, theta, inverse=True)
    assert (back - points).abs().max() < 1e-3


def test_zero_boundary_keeps_the_square_and_its_border():
    t = CPAB((2, 4))
    theta = seeded(4, t.theta_dim, seed=1) * 2
    inside = t.transform_points(pixel_grid(4, 20), theta)
    assert inside.abs().max() <= 1
    border = torch.stack([torch.linspace(-1, 1, 11), torch.full((11,), -1.0, dtype=torch.float64)], -1)
    moved = t.transform_points(border.expand(4, -1, -1), theta)
    torch.testing.assert_close(moved[..., 1], torch.full_like(moved[..., 1], -1.0), atol=1e-12, rtol=0)


def locate(u, tris):
    """Cell of each point by barycentric coordinates (independent of the library's lookup);
    points outside the square are first clamped onto it (the prolongation beyond is unused)."""
    u = u.clamp(0, 1).numpy()
    a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]
    det = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    d = u[:, None, :] - a[None]
    l1 = (d[..., 0] * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * d[..., 1]) / det
    l2 = ((b[:, 0] - a[:, 0]) * d[..., 1] - d[..., 0] * (b[:, 1] - a[:, 1])) / det
    inside = np.minimum(np.minimum(l1, l2), 1 - l1 - l2)
    return torch.from_numpy(inside.argmax(1))


def rk4_reference(a, u, tris, n_steps):
    """Flow of the piecewise-affine field ``a`` [cells, 2, 3] from ``u`` [P, 2] by classical RK4
    with ``n_steps`` small steps in float64."""
    def v(x):
        m = a[locate(x, tris)]
        return (m[:, :, :2] @ x[:, :, None]).squeeze(-1) + m[:, :, 2]

    h = 1.0 / n_steps
    for _ in range(n_steps):
        k1 = v(u)
        k2 = v(u + h / 2 * k1)
        k3 = v(u + h / 2 * k2)
        k4 = v(u + h * k3)
        u = u + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return u


def test_flow_agrees_with_an_independent_rk4_reference():
    t = CPAB((4, 4))
    tris = triangles(4, 4)
    theta = seeded(3, t.theta_dim, seed=2)
    points = pixel_grid(3, 12)
    got = (t.transform_points(points, theta) + 1) / 2
    maps = t.cell_maps(theta)
    err = torch.stack([(got[i] - rk4_reference(maps[i], (points[i] + 1) / 2, tris, 600)).abs() for i in range(3)])
    assert (got - (points + 1) / 2).abs().max() > 0.05
    assert err.max() < 1e-3 and err.mean() < 1e-4, (err.max(), err.mean())


def test_flow_agrees_with_libcpab_on_the_same_field():
    from libcpab import Cpab

    lib = Cpab([4, 4], zero_boundary=True)
    t = CPAB((4, 4))
    lib_basis = torch.from_numpy(lib.get_basis())
    ours = t.basis_for(torch.zeros((), dtype=torch.float64))
    # the two bases span the same field space (same cell order and layout), up to a rotation
    torch.testing.assert_close(ours @ (ours.t() @ lib_basis), lib_basis, atol=1e-6, rtol=0)
    lib_theta = seeded(8, lib.get_theta_dim(), seed=3, dtype=torch.float32)
    theta = (lib_theta.double() @ lib_basis.t() @ ours).float()
    unit = (pixel_grid(1, 14, torch.float32)[0] + 1) / 2
    theirs = lib.transform_grid(unit.t().contiguous(), lib_theta).transpose(1, 2)
    got = (t.transform_points((unit * 2 - 1).expand(8, -1, -1), theta) + 1) / 2
    err = (got - theirs).abs()
    assert (theirs - unit).abs().max() > 0.05
    assert err.max() < 1e-3 and err.mean() < 1e-4, (err.max(), err.mean())


@pytest.mark.parametrize("scale, seed, size", [(0.7, 4, 6), (0.03, 13, 10)], ids=["walk", "points-stay-in-their-cell"])
def test_gradcheck_float64(scale, seed, size, monkeypatch):
    """Both integration regimes: a field large enough that points cross cells (the walk), and one
    so small that every point provably stays in its cell (the whole-time shortcut; taken here
    whenever half the points stay, on either walk)."""
    monkeypatch.setattr(cpab, "STAY_COMPILED", cpab.STAY_EAGER)
    t = CPAB((2, 2), n_steps=3, n_sub=2)
    theta = (seeded(2, t.theta_dim, seed=seed) * scale).requires_grad_()
    points = (torch.rand(2, 6, 2, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64) * 1.8 - 0.9)
    points.requires_grad_()
    for inverse in (False, True):
        assert torch.autograd.gradcheck(lambda th, p: t.transform_points(p, th, inverse=inverse), (theta, points))
    images = torch.rand(2, 1, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 2))
    for inverse in (False, True):
        assert torch.autograd.gradcheck(lambda th: t.warp(images, th, inverse=inverse), (theta,))


def walked(t):
    """The same transformation with every point walked step by step (no whole-time shortcut)."""
    other = CPAB((t.nx, t.ny), t.zero_boundary, t.volume_preservation, t.n_steps, t.n_sub)
    other._shortcut = False
    return other


@pytest.mark.parametrize("stay", ["eager", "compiled"])
@pytest.mark.parametrize("tess", [(4, 4), (2, 4)])
def test_points_that_stay_in_their_cell_take_its_whole_time_map(tess, stay, monkeypatch):
    """A small field: points that provably stay in their cell take its exact map over the whole
    time, the others walk (on [4, 4], the 27% of the 28 x 28 pixel centres that lie on diagonals;
    on [2, 4], none); the result is the step-by-step walk's, in value and gradient, for points
    (gather path) and for warps (the pixel grid's matrix-product path). With the compiled walk's
    share (STAY_COMPILED) the [4, 4] field walks every point; with the eager walk's, it splits."""
    if stay == "eager":
        monkeypatch.setattr(cpab, "STAY_COMPILED", cpab.STAY_EAGER)
    t = CPAB(tess)
    theta = (seeded(3, t.theta_dim, seed=11) * 0.02).requires_grad_()
    points = pixel_grid(3, 28)
    got, ref = t.transform_points(points, theta), walked(t).transform_points(points, theta)
    assert (got - points).abs().max() > 1e-3
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=0)
    images = torch.rand(3, 2, 28, 28, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    for inverse in (False, True):
        torch.testing.assert_close(t.warp(images, theta, inverse=inverse),
                                   walked(t).warp(images, theta, inverse=inverse), atol=1e-12, rtol=0)
    grads = [torch.autograd.grad(u.warp(images, theta).square().sum(), theta)[0] for u in (t, walked(t))]
    torch.testing.assert_close(grads[0], grads[1], atol=1e-10, rtol=1e-10)


def test_prepare_equals_warp_in_both_directions_and_shares_gradients():
    t = CPAB((2, 4))
    theta = seeded(3, t.theta_dim, seed=9).requires_grad_()  # float64: the sums' order differs
    images = torch.rand(3, 2, 28, 28, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    warp = t.prepare(theta)
    for inverse in (False, True):
        assert torch.equal(warp(images, inverse=inverse), t.warp(images, theta, inverse=inverse))
    # the gradient of both warps together, through the shared tables, is the sum of the two
    (warp(images, inverse=True).sum() + warp(images).square().sum()).backward()
    shared = theta.grad.clone()
    theta.grad = None
    (t.warp(images, theta, inverse=True).sum() + t.warp(images, theta).square().sum()).backward()
    torch.testing.assert_close(shared, theta.grad, atol=1e-10, rtol=1e-10)
    zero = t.prepare(torch.zeros(3, t.theta_dim, dtype=torch.float64))
    assert torch.equal(zero(images), images) and torch.equal(zero(images, inverse=True), images)


def jacobian_determinants(t, theta, points):
    """det dT/dp at each point, from the (hand-written) gradient with respect to the points."""
    points = points.clone().requires_grad_()
    out = t.transform_points(points, theta)
    rows = [torch.autograd.grad(out[..., k].sum(), points, retain_graph=True)[0] for k in range(2)]
    return rows[0][..., 0] * rows[1][..., 1] - rows[0][..., 1] * rows[1][..., 0]


def test_zero_trace_field_preserves_area():
    theta_scale = 1.5
    keep = CPAB((4, 4), volume_preservation=True)
    dets = jacobian_determinants(keep, seeded(4, keep.theta_dim, seed=7) * theta_scale, pixel_grid(4, 12))
    torch.testing.assert_close(dets, torch.ones_like(dets), atol=1e-9, rtol=0)
    free = CPAB((4, 4))
    dets = jacobian_determinants(free, seeded(4, free.theta_dim, seed=7) * theta_scale, pixel_grid(4, 12))
    assert (dets - 1).abs().max() > 0.1  # the check has teeth


def test_warp_moves_the_image_content_along_the_flow():
    t = CPAB((2, 4))
    theta = seeded(1, t.theta_dim, seed=8, dtype=torch.float32)
    images = torch.zeros(1, 1, 28, 28)
    images[0, 0, 10:18, 10:18] = 1
    warped = t.warp(images, theta)
    assert not torch.allclose(warped, images)
    assert torch.isfinite(warped).all() and warped.min() >= 0 and warped.max() <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    t = CPAB((4, 4))
    theta = seeded(4, t.theta_dim, dtype=torch.float32)
    points = pixel_grid(4, 28, torch.float32)
    torch.testing.assert_close(t.to("cuda").transform_points(points.cuda(), theta.cuda()).cpu(),
                               t.transform_points(points, theta), atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("tess", [(0, 4), (2, -1), (2,), (2, 2, 2), (2.5, 2), "4x4"])
def test_bad_tessellation_names_the_expected_value(tess):
    with pytest.raises(VitaeError, match=r"two positive integers \(nx, ny\)"):
        transforms.create("cpab", tessellation=tess)


def test_bad_step_counts_are_refused():
    with pytest.raises(VitaeError, match="n_steps must be a positive integer"):
        transforms.create("cpab", n_steps=0)


def test_theta_of_the_wrong_length_names_the_expected_shape():
    t = transforms.create("cpab", tessellation=(4, 4))
    with pytest.raises(ValueError, match=r"\[B, 62\]"):
        t.transform_points(torch.zeros(2, 5, 2), torch.zeros(2, 30))
    with pytest.raises(ValueError, match=r"\[B, 62\]"):
        t.warp(torch.zeros(2, 1, 8, 8), torch.zeros(62))


def test_non_finite_theta_is_refused():
    t = transforms.create("cpab", tessellation=(2, 4))
    theta = torch.zeros(2, 30)
    theta[1, 3] = float("nan")
    with pytest.raises(ValueError, match="theta must be finite"):
        t.warp(torch.zeros(2, 1, 8, 8), theta)
    theta[1, 3] = float("inf")
    with pytest.raises(ValueError, match="theta must be finite"):
        t.transform_points(torch.zeros(2, 5, 2), theta)


@pytest.mark.parametrize("tess, scale", [((2, 4), 0.01), ((2, 4), 0.3), ((4, 4), 0.05), ((3, 2), 1.0)])
def test_the_points_that_stay_are_counted_per_cell_as_point_by_point(tess, scale):
    """On a pixel grid the shortcut's decision counts the points farther from their cell's edge
    than its speed bound by a binary search per cell (cpab._staying): the count of the
    comparison point by point, from nearly all points staying to nearly none."""
    t = transforms.create("cpab", tessellation=tess)
    theta = torch.randn(7, t.theta_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * scale
    tables = t._step_maps(theta)
    t._displacement(identity_grid(7, 28, 20, dtype=torch.float64), tables, grid_key=("test", 7))
    _, _, _, cells, dist, _, by_cell = t._grid_cells[("test", 7)]
    assert cpab._staying(by_cell, tables.speed.view(7, -1)) == int((dist > tables.speed.index_select(0, cells)).sum())
