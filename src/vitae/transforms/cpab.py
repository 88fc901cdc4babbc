"""CPAB: diffeomorphisms from continuous piecewise-affine velocity fields (Freifeld et al. 2015/2017).

The unit square is cut into ``nx x ny`` rectangles, each split by its centre into 4 triangles
(the cells). A velocity field that is affine in every cell and continuous across shared edges is a
CPA field; ``theta`` holds its coordinates in an orthonormal basis of all such fields, and
``T_theta`` is the flow of the field from ``t = 0`` to ``t = 1``.

Convention
----------
* Points: as in ``vitae.transforms.base``: ``[B, P, 2]``, ``x`` (column) then ``y`` (row), in
  ``[-1, 1]`` (``align_corners=False``). The tessellation lives on the unit square
  ``u = (p + 1) / 2``: ``nx`` rectangles along ``x``, ``ny`` along ``y``, so the square's border is
  the image's outer edge. Internally the flow runs in cell units ``X = u * (nx, ny)`` (the cell
  maps conjugated accordingly) and the result is ``p`` plus the displacement, so ``theta = 0``
  returns the points bit for bit.
* Cells: cell ``4 * (iy * nx + ix) + t`` is triangle ``t`` of rectangle ``(ix, iy)``, with
  ``t = 0, 1, 2, 3`` the triangle on the top (smaller ``y``), right, bottom, left side.
* Cell maps: ``A`` of shape ``[B, 4 nx ny, 2, 3]``, the velocity in cell ``c`` being
  ``v(u) = A[c] @ (u_x, u_y, 1)`` in unit-square coordinates; ``A = (basis @ theta).view(...)``,
  the same layout (and cell order) as ``libcpab``.
* ``zero_boundary=True``: the velocity component normal to the border is zero, so the square maps
  onto itself. ``zero_boundary=False``: the field outside the square is each border triangle's
  affine map prolonged outward; extra constraints keep that prolongation continuous (as in
  ``libcpab``). ``volume_preservation=True``: every cell map has trace 0 (area-preserving flow).
* ``inverse=True`` is ``T_{-theta}``, the exact inverse of the flow (computed with the inverted
  per-cell step maps of ``theta``, so ``warp(..., inverse=True)`` and ``prepare`` agree bit for bit).

Integration and its error
-------------------------
``n_steps`` steps of length ``h = 1 / n_steps``. Inside one cell the flow is exact:
``expm(s [[A_c], [0 0 0]])``, a 2x3 map per cell and image, computed once per ``theta`` (and only
when used) for a sub-step ``s = h / n_sub`` and a step ``s = h``, and for the whole time ``s = 1``
(``flows``: the 2x2 linear part is ``mu I + N`` with ``N^2`` a multiple of ``I``, so a short series
on two scalars per cell, then squaring and powers; ``prepare`` shares the maps between both
directions: the inverse direction uses the closed-form inverse of each map,
``expm(-sA) = expm(sA)^-1``).

A point whose distance to the boundary of its cell exceeds the largest speed of the field in that
cell (at the cell's vertices, the field being affine there) cannot leave the cell within time 1:
it takes the cell's whole-time map, which is its exact flow. When enough points are such (small
fields, e.g. early in training: half of them for the eager walk, 99% for the compiled one,
``STAY_EAGER`` and ``STAY_COMPILED``), they do so and the others walk; otherwise all walk.
For a pixel grid shared by all images (``warp``), that map is applied to every pixel of every
image by one matrix product with a constant per-grid operator.

The walk: each step applies the map of the cell that holds the step's start; a step that stays in
one cell is exact. A step whose end lies in another cell (~25% of them for ``theta ~ N(0, 1)`` on
``[4, 4]``) is redone in ``n_sub`` sub-steps, each applying the map of the cell that holds its
estimated midpoint (extrapolated from the previous sub-step, the first from the step's own
displacement), which also handles the thin wedges near vertices where one step crosses several
cells; a sub-step that crosses an edge at fraction ``s`` of its length errs by about
``|(A_c' - A_c) v| min(s, 1 - s)^2 (h / n_sub)^2 / 2``. The error therefore falls like
``(n_steps * n_sub)^-2`` at the crossings and is zero elsewhere, except for a step that leaves
its cell and comes back within the step, which goes undetected (with 2 steps the largest error
stays at 1.6e-3 whatever ``n_sub``, hence the default of 3). Measured against a float64
reference (2000 midpoint-rule steps, itself within 3e-8), ``[4, 4]``, ``theta ~ N(0, 1)``,
28x28 pixel centres, the defaults (3 steps, 4 sub-steps): max 3.6e-4, mean 8.2e-6 in unit-square
coordinates, float32 and float64 alike (``benchmarks/cpab.py``; 3 x 6 gives 2.8e-4 / 3.8e-6,
4 x 4 gives 1.6e-4 / 4.7e-6).
``T_{-theta}(T_theta(p)) = p`` holds to the same error. The cell choices (and the choice of
whole-time maps) are piecewise constant in ``theta``, so the gradient is the exact derivative of
the computed map (away from measure-zero switching points); it is hand-written (a scatter per
step, a matrix product for the grid) and not twice differentiable.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from vitae.errors import VitaeError
from vitae.transforms import cpab_flows, cpab_walk
from vitae.transforms.base import Transform, displaced_sample, identity_grid, invert_rows


# ----------------------------------------------------------------------------------------------
# The velocity-field space
# ----------------------------------------------------------------------------------------------

def triangles(nx: int, ny: int) -> np.ndarray:
    """Vertices ``[4 nx ny, 3, 2]`` of every cell in the unit square: (centre, then the two
    rectangle corners of the triangle's outer edge), in the cell order of the Convention."""
    cells = []
    for iy in range(ny):
        for ix in range(nx):
            x0, x1, y0, y1 = ix / nx, (ix + 1) / nx, iy / ny, (iy + 1) / ny
            centre = ((x0 + x1) / 2, (y0 + y1) / 2)
            tl, tr, br, bl = (x0, y0), (x1, y0), (x1, y1), (x0, y1)
            cells += [(centre, tl, tr), (centre, tr, br), (centre, br, bl), (centre, bl, tl)]
    return np.array(cells, dtype=np.float64)


def _row(n_cells: int, cell: int, component: int, point) -> np.ndarray:
    """The linear functional ``theta -> A[cell][component] @ (point, 1)`` on the flat ``A``."""
    row = np.zeros(6 * n_cells)
    row[6 * cell + 3 * component: 6 * cell + 3 * component + 3] = (point[0], point[1], 1.0)
    return row


def constraints(nx: int, ny: int, zero_boundary: bool, volume_preservation: bool) -> np.ndarray:
    """The linear constraints ``L @ A.flatten() = 0`` that make a piecewise-affine field valid."""
    tris = triangles(nx, ny)
    n_cells = len(tris)
    rows = []
    # continuity: all cells that share a vertex agree there (hence along every shared edge)
    owners: dict[tuple[int, int], list[int]] = {}
    for c, tri in enumerate(tris):
        for v in tri:
            owners.setdefault((round(2 * nx * v[0]), round(2 * ny * v[1])), []).append(c)
    for (kx, ky), cells in owners.items():
        point = (kx / (2 * nx), ky / (2 * ny))
        for c1, c2 in zip(cells[:-1], cells[1:]):
            rows += [_row(n_cells, c1, k, point) - _row(n_cells, c2, k, point) for k in range(2)]
    if zero_boundary:
        # the normal component vanishes at border vertices (hence along the border)
        for c, tri in enumerate(tris):
            for v in tri:
                rows += [_row(n_cells, c, k, v) for k in range(2) if v[k] in (0.0, 1.0)]
    else:
        # the outward prolongations of neighbouring border triangles agree on the grid line
        # between them, i.e. at the shared border vertex and at a point one unit further out
        side_cells = {  # side -> (triangle type, rectangles along the side, outward direction)
            "top": (0, [(ix, 0) for ix in range(nx)], (0.0, -1.0)),
            "right": (1, [(nx - 1, iy) for iy in range(ny)], (1.0, 0.0)),
            "bottom": (2, [(ix, ny - 1) for ix in range(nx)], (0.0, 1.0)),
            "left": (3, [(0, iy) for iy in range(ny)], (-1.0, 0.0)),
        }
        for t, rects, (ox, oy) in side_cells.values():
            ids = [4 * (iy * nx + ix) + t for ix, iy in rects]
            for c1, c2 in zip(ids[:-1], ids[1:]):
                shared = {tuple(v) for v in tris[c1][1:]} & {tuple(v) for v in tris[c2][1:]}
                vx, vy = shared.pop()
                rows += [_row(n_cells, c1, k, (vx + ox, vy + oy)) - _row(n_cells, c2, k, (vx + ox, vy + oy))
                         for k in range(2)]
    if volume_preservation:
        for c in range(n_cells):
            row = np.zeros(6 * n_cells)
            row[6 * c], row[6 * c + 4] = 1.0, 1.0
            rows.append(row)
    return np.stack(rows)


# the share of a batch's points that must provably stay in their cells for the shortcut (those
# take their cell's whole-time map, the rest walk): the eager walk pays per step for every point,
# so half; the compiled walk is cheap next to the gathers and scatters that split the points,
# which pay only when nearly none walk (`python benchmarks/cpab_shortcut.py` times both shares)
STAY_EAGER, STAY_COMPILED = 0.5, 0.99
MAX_BASIS_BYTES = 2**30  # the SVD behind the basis; [16, 16] is the largest square tessellation within it


def basis_bytes(nx: int, ny: int) -> int:
    """Memory of the SVD behind ``basis``: three float64 matrices of ``6 * 4 nx ny`` squared."""
    return 3 * 8 * (24 * nx * ny) ** 2


@functools.lru_cache(maxsize=None)
def basis(nx: int, ny: int, zero_boundary: bool = True, volume_preservation: bool = False) -> np.ndarray:
    """Orthonormal basis ``[6 * 4 nx ny, d]`` of the valid fields (the null space of the
    constraints, from an SVD). Computed once per configuration and kept in memory only."""
    lhs = constraints(nx, ny, zero_boundary, volume_preservation)
    _, sv, vh = np.linalg.svd(lhs)
    rank = int((sv > sv[0] * max(lhs.shape) * np.finfo(np.float64).eps).sum())
    null = vh[rank:].T.copy()
    # an SVD fixes the null space, not the signs of its vectors: make the largest entry positive
    null *= np.sign(null[np.abs(null).argmax(0), np.arange(null.shape[1])])
    null.setflags(write=False)
    return null


def cell_index(x: torch.Tensor, y: torch.Tensor, nx: int, ny: int, offset: torch.Tensor | None = None) -> torch.Tensor:
    """Cell of each point plus ``offset`` (if given), as a float tensor of exact small integers,
    for ``x, y`` in cell units (``u_x * nx``, ``u_y * ny``). Points outside the square take the
    cell of the border triangle whose outward wedge holds them (rectangle index clamped, diagonals
    prolonged). Written in few passes over the data: the integrator calls it twice per step."""
    ix = x.floor().clamp_(0, nx - 1)
    iy = y.floor().clamp_(0, ny - 1)
    lx, ly = x - ix, y - iy
    # sides of the two diagonals, +-1 (copysign makes an exact 0, i.e. +0, count as +1, so a
    # point on a diagonal or a corner gets a triangle that contains it):
    # (+, -) top, (+, +) right, (-, +) bottom, (-, -) left, i.e. t = 1.5 - su + su sw / 2
    one = x.new_ones(())
    su = torch.copysign(one, lx - ly)
    sw = torch.copysign(one, lx.add_(ly).sub_(1))
    t = torch.addcmul(1.5 - su, su, sw, value=0.5)
    index = iy.mul_(4 * nx) if offset is None else torch.add(offset, iy, alpha=4 * nx)
    return index.add_(ix, alpha=4).add_(t)


# ----------------------------------------------------------------------------------------------
# The flow
# ----------------------------------------------------------------------------------------------

def compose(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rows ``[..., 6]`` of the affine map ``a o b`` (apply ``b``, then ``a``)."""
    a00, a01, a02, a10, a11, a12 = a.unbind(-1)
    b00, b01, b02, b10, b11, b12 = b.unbind(-1)
    return torch.stack([a00 * b00 + a01 * b10, a00 * b01 + a01 * b11, a00 * b02 + a01 * b12 + a02,
                        a10 * b00 + a11 * b10, a10 * b01 + a11 * b11, a10 * b02 + a11 * b12 + a12], dim=-1)


def power(a, k: int, compose=compose):
    """The map ``a`` composed ``k >= 1`` times with itself, by repeated squaring: rows ``[..., 6]``
    of an affine map, or any other form of map given with its ``compose``."""
    result = None
    while k:
        if k & 1:
            result = a if result is None else compose(result, a)
        k >>= 1
        if k:
            a = compose(a, a)
    return result


def expm_affine(a: torch.Tensor, order: int = 8) -> torch.Tensor:
    """``expm`` of the 3x3 matrices ``[[a0, a1, a2], [a3, a4, a5], [0, 0, 0]]``, rows ``[..., 6]``
    in, the top two rows ``[..., 6]`` out. Taylor series of degree ``order`` after scaling the
    linear part below norm 1/4 (truncation ~1e-11 relative), then squaring; elementwise, so it is
    cheap for many small matrices and differentiable by autograd. ``a = 0`` gives exactly
    ``[1, 0, 0, 0, 1, 0]``."""
    norm = float(a.detach()[..., [0, 1, 3, 4]].abs().sum(-1).max()) if a.numel() else 0.0
    squarings = max(0, math.ceil(math.log2(norm / 0.25))) if norm > 0.25 else 0
    l00, l01, b0, l10, l11, b1 = (a * 0.5 ** squarings).unbind(-1)
    # V = sum_k L^k / (k + 1)! by Horner; then expm = [[I + L V, V b]]
    v00, v01, v10, v11 = 1.0, 0.0, 0.0, 1.0
    for k in range(order, 0, -1):
        f = 1.0 / (k + 1)
        v00, v01, v10, v11 = (1 + f * (l00 * v00 + l01 * v10), f * (l00 * v01 + l01 * v11),
                              f * (l10 * v00 + l11 * v10), 1 + f * (l10 * v01 + l11 * v11))
    e = torch.stack([1 + l00 * v00 + l01 * v10, l00 * v01 + l01 * v11, v00 * b0 + v01 * b1,
                     l10 * v00 + l11 * v10, 1 + l10 * v01 + l11 * v11, v10 * b0 + v11 * b1], dim=-1)
    return power(e, 2 ** squarings)


def flows(a: torch.Tensor, t: float, powers: tuple[int, ...], order: int | None = None) -> list[torch.Tensor]:
    """The exact flows ``expm(s [[A | b], [0 0 0]])`` of the affine fields ``a`` (``[6, R]``: the
    rows of ``[A | b]`` flattened, one column per field) over the times ``s = t`` and then
    ``s = t * prod(powers[:i + 1])`` for each ``i``, in the same layout: the maps of
    ``expm_affine(s a.t())`` in a form with few (scalar) operations, so that autograd through it
    is cheap.

    With ``L`` the linear part, ``L = mu I + N`` where ``mu = tr L / 2`` and ``N`` is traceless, so
    ``N^2 = zeta I`` (``zeta = -det N``): every power of ``L``, and every function of it, is
    ``p I + q N`` with scalars ``p, q``. The series ``phi_1(L) = sum_k L^k / (k + 1)!`` (Horner, of
    degree ``order``: 8 in float64, 6 otherwise; after scaling ``t`` so that the entrywise norm of
    ``t L`` is at most 1/2, the truncation is below 6e-10, resp. 2e-7, relative) gives
    ``expm(tL) = I + tL phi_1(tL)`` and the translation ``phi_1(tL) t b``. The scaling is undone
    by squaring the map, and the longer flows are its powers (binary powering), all on
    the scalars ``(p, q)`` and the translation. ``a = 0`` gives exactly ``[1, 0, 0, 0, 1, 0]``."""
    if order is None:
        order = 8 if a.dtype == torch.float64 else 6
    squarings = cpab_flows.squarings(a, t)
    l00, l01, b0, l10, l11, b1 = (a * (t * 0.5 ** squarings)).unbind(0)
    mu, n00 = (l00 + l11) * 0.5, (l00 - l11) * 0.5
    zeta = torch.addcmul(n00 * n00, l01, l10)

    def times_n(e0, e1):  # N e
        return torch.addcmul(n00 * e0, l01, e1), torch.addcmul(l10 * e0, n00, e1, value=-1)

    def compose(f, g):  # f o g for maps (c, d, e0, e1) = (c I + d N, e) of the same N: they commute
        (c1, d1, f0, f1), (c2, d2, g0, g1) = f, g
        ng0, ng1 = times_n(g0, g1)
        return (torch.addcmul(c1 * c2, d1 * d2, zeta), torch.addcmul(c1 * d2, d1, c2),
                torch.addcmul(torch.addcmul(f0, c1, g0), d1, ng0), torch.addcmul(torch.addcmul(f1, c1, g1), d1, ng1))

    # Horner for phi_1 = x I + y N, from the last term 1 / (order + 1)!
    f = 1.0 / (order + 1)
    x, y = mu * f + 1, torch.full_like(mu, f)
    for k in range(order - 1, 0, -1):
        f = 1.0 / (k + 1)
        x, y = torch.addcmul(mu * x, zeta, y).mul_(f).add_(1), torch.addcmul(x, mu, y).mul_(f)
    nb0, nb1 = times_n(b0, b1)
    fine = (torch.addcmul(mu * x, zeta, y).add_(1), torch.addcmul(x, mu, y),  # expm = c I + d N
            torch.addcmul(x * b0, y, nb0), torch.addcmul(x * b1, y, nb1))
    for _ in range(squarings):
        fine = compose(fine, fine)

    out = [fine]
    for k in powers:
        out.append(power(out[-1], k, compose=compose))  # of these (c, d, e) maps

    def rows(c, d, e0, e1):
        dn = d * n00
        return torch.stack([c + dn, d * l01, e0, d * l10, c - dn, e1])

    return [rows(*m) for m in out]


def _flows(a: torch.Tensor, t: float, n_sub: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The maps over the time ``t`` and ``n_sub t`` (``flows(a, t, (n_sub,))``); on the CPU the
    compiled kernel where it builds (``vitae.transforms.cpab_flows``): the same closed form."""
    if cpab_flows.usable(a):
        return cpab_flows.step_maps(a, t, n_sub)
    return tuple(flows(a, t, (n_sub,)))


def _apply(m: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Maps ``m`` ``[6, N]`` (one column per point: contiguous rows keep every read dense)
    applied to the points ``(x, y)``."""
    return (torch.addcmul(torch.addcmul(m[2], m[0], x), m[1], y),
            torch.addcmul(torch.addcmul(m[5], m[3], x), m[4], y))


def _scatter_rows(grad: torch.Tensor, cells: torch.Tensor, gx, gy, x, y) -> None:
    """``grad[:, cells] += (gx x, gx y, gx, gy x, gy y, gy)``: the gradient of ``_apply``'s maps."""
    rows = gx.new_empty(6, gx.shape[0])  # filled in place: a stack would copy every row again
    for k, (g, v) in enumerate([(gx, x), (gx, y), (gx, None), (gy, x), (gy, y), (gy, None)]):
        if v is None:
            rows[k].copy_(g)
        else:
            torch.mul(g, v, out=rows[k])
    grad.index_add_(1, cells.long(), rows)


def _pull_back(m: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradient through ``_apply`` to the points: the transposed linear part of ``m``."""
    return torch.addcmul(m[0] * gx, m[3], gy), torch.addcmul(m[1] * gx, m[4], gy)


def _cell(x: torch.Tensor, y: torch.Tensor, nx: int, ny: int, offset: torch.Tensor) -> torch.Tensor:
    """``cell_index`` as an int32 tensor (a cheaper conversion and gather than int64)."""
    return cell_index(x, y, nx, ny, offset).int()


def _changed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Indices where ``a != b``; ``torch.equal`` (a memory compare) first spares the costlier
    ``nonzero`` when nothing changed."""
    if torch.equal(a, b):
        return a.new_empty(0, dtype=torch.long)
    return (a != b).nonzero().squeeze(1)


def _walk(x, y, coarse, fine, offset, start, nx, ny, n_steps, n_sub):
    """The stepping integrator (module docstring) from the points ``x, y`` in the cells ``start``;
    returns the end points and the record of the steps that ``_walk_back`` needs. On the CPU,
    the compiled walk where it builds (``vitae.transforms.cpab_walk``): the same steps."""
    if cpab_walk.usable(x):
        return cpab_walk.walk(x, y, coarse, fine, start, nx, ny, n_steps, n_sub)
    steps = []
    frac = 1 / (2 * n_sub)
    for _ in range(n_steps):
        m = coarse.index_select(1, start)
        x1, y1 = _apply(m, x, y)
        end = _cell(x1, y1, nx, ny, offset)
        redo = _changed(end, start)
        subs = []
        if redo.numel():
            sx, sy, s_off = x.index_select(0, redo), y.index_select(0, redo), offset.index_select(0, redo)
            # first sub-step's midpoint from the step's displacement, then extrapolated
            mx = torch.lerp(sx, x1.index_select(0, redo), frac)
            my = torch.lerp(sy, y1.index_select(0, redo), frac)
            for k in range(n_sub):
                sc = _cell(mx, my, nx, ny, s_off)
                sm = fine.index_select(1, sc)
                subs.append((sx, sy, sm, sc))
                nx_, ny_ = _apply(sm, sx, sy)
                if k + 1 < n_sub:
                    mx, my = torch.lerp(sx, nx_, 1.5), torch.lerp(sy, ny_, 1.5)
                sx, sy = nx_, ny_
            x1.index_copy_(0, redo, sx)  # in place: x1, y1, end are this step's own arrays
            y1.index_copy_(0, redo, sy)
            end.index_copy_(0, redo, _cell(sx, sy, nx, ny, s_off))
        steps.append((x, y, m, start, redo, subs))
        x, y, start = x1, y1, end
    return x, y, steps


def _walk_back(steps, gx, gy, grad_coarse, grad_fine, need_points):
    """Backward of ``_walk``: the recorded steps in reverse, a scatter of the map gradients per
    step. Returns the gradient to the start points (``None, None`` unless ``need_points``)."""
    if isinstance(steps, cpab_walk.Walk):
        return steps.back(gx, gy, grad_coarse, grad_fine, need_points)
    last = len(steps) - 1
    for i, (x, y, m, c, redo, subs) in enumerate(reversed(steps)):
        if redo.numel():
            sgx, sgy = gx.index_select(0, redo), gy.index_select(0, redo)
            for sx, sy, sm, sc in reversed(subs):
                _scatter_rows(grad_fine, sc, sgx, sgy, sx, sy)
                sgx, sgy = _pull_back(sm, sgx, sgy)
            if i == 0:
                gx, gy = gx.clone(), gy.clone()  # the incoming gradient is not ours to change
            gx.index_fill_(0, redo, 0)
            gy.index_fill_(0, redo, 0)
        _scatter_rows(grad_coarse, c, gx, gy, x, y)
        if i < last or need_points:
            gx, gy = _pull_back(m, gx, gy)
            if redo.numel():
                gx.index_copy_(0, redo, sgx)
                gy.index_copy_(0, redo, sgy)
    return (gx, gy) if need_points else (None, None)


def _inner_distance(x: torch.Tensor, y: torch.Tensor, nx: int, ny: int) -> torch.Tensor:
    """A lower bound of the distance (cell units) from each point to the boundary of its cell:
    with ``(lx, ly)`` the position in its rectangle, the distance to the nearest of the lines
    ``lx, ly = 0, 1`` and the two diagonals, which carry the cell's edges. Negative outside the
    square (such points never take the whole-time shortcut)."""
    lx = x - x.floor().clamp_(0, nx - 1)
    ly = y - y.floor().clamp_(0, ny - 1)
    sides = torch.minimum(torch.minimum(lx, 1 - lx), torch.minimum(ly, 1 - ly))
    diagonals = torch.minimum((lx - ly).abs_(), (lx + ly - 1).abs_()).mul_(math.sqrt(0.5))
    return torch.minimum(sides, diagonals)


def _distances_by_cell(cells: torch.Tensor, dist: torch.Tensor, n_cells: int) -> torch.Tensor:
    """``[n_cells, P]``: the distances of a grid's points (``cells`` within one image) to their
    cell's boundary, each cell's ascending, padded in front with ``-inf`` to the longest."""
    cells = cells.long()
    counts = torch.bincount(cells, minlength=n_cells)
    width = max(int(counts.max()), 1)
    order = torch.argsort(dist)
    order = order[torch.argsort(cells[order], stable=True)]  # by cell, each cell's ascending
    sorted_cells = cells[order]
    start = torch.cumsum(counts, 0) - counts
    column = torch.arange(dist.numel(), device=dist.device) - start[sorted_cells] + (width - counts[sorted_cells])
    out = dist.new_full((n_cells, width), -math.inf)
    out[sorted_cells, column] = dist[order]
    return out


def _staying(by_cell: torch.Tensor, speed: torch.Tensor) -> int:
    """How many points of a grid in every image are farther from their cell's boundary than the
    cell's speed bound (``speed`` ``[B, n_cells]``): per cell a binary search in its sorted
    distances, in place of a comparison per point."""
    first_above = torch.searchsorted(by_cell, speed.t().contiguous(), right=True)  # [n_cells, B]
    return int((by_cell.shape[1] - first_above).sum())


def _grid_operator(cells: torch.Tensor, x: torch.Tensor, y: torch.Tensor, n_cells: int) -> torch.Tensor:
    """``W`` ``[P, 3 n_cells]`` for a pixel grid shared by all images (``cells`` within one image):
    ``W[p, 3 c + j] = (x_p, y_p, 1)[j]`` where ``c`` is the cell of ``p``, else 0. Applying every
    point's cell map is then one matrix product with the table, and so is its gradient."""
    w = x.new_zeros(cells.shape[0], n_cells, 3)
    rows = torch.arange(cells.shape[0], device=cells.device)
    w[rows, cells.long()] = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    return w.view(cells.shape[0], 3 * n_cells)


def _grid_full_forward(full: torch.Tensor, pattern):
    """The ``full`` maps applied to the pixel grid of ``pattern = (W, B)`` in every image: the
    table as ``[2 B, 3 n_cells]`` (rows ``x`` then ``y`` of every image) times ``W^T``, a dense
    product that BLAS runs fast (and in parallel), against a gather and a scatter of six values
    per point. Returns image-major ``x, y``."""
    w, b = pattern
    n_cells = w.shape[1] // 3
    table = full.view(2, 3, b, n_cells).permute(0, 2, 3, 1).reshape(2 * b, 3 * n_cells)
    out = table @ w.t()  # [2 B, P]
    return out[:b].reshape(-1), out[b:].reshape(-1), ("grid", pattern)


def _grid_full_backward(grad_full: torch.Tensor, direct, gx: torch.Tensor, gy: torch.Tensor) -> None:
    """``_grid_full_forward``'s gradient to the table, added to ``grad_full`` ``[6, B * n_cells]``."""
    _, (w, b) = direct
    n_cells = w.shape[1] // 3
    grad = torch.cat([gx.view(b, -1), gy.view(b, -1)]) @ w  # [2 B, 3 n_cells]
    grad_full += grad.view(2, b, n_cells, 3).permute(0, 3, 1, 2).reshape(6, -1)


class _Flow(torch.autograd.Function):
    """The integrator of the module docstring. Inputs: ``x, y`` ``[N]`` in cell units
    (``u * n``); ``coarse``, ``fine`` and ``full`` ``[6, n_images * n_cells]``, the maps of every
    cell over one step (``h``), one sub-step (``h / n_sub``) and the whole time 1; ``offset``
    ``[N]`` (``image * n_cells`` as float); ``start``, the int32 cells of the points; ``walkers``;
    the tessellation and step counts; ``pattern``, the operator of a pixel grid shared by all
    images (``_grid_operator``) or ``None``.

    ``full = None``: every point walks (``_walk``); then ``coarse`` and ``fine`` are needed.
    Otherwise every point takes its cell's ``full`` map except ``walkers`` (indices, or ``None``),
    which walk. Cell choices are constants for the gradient.
    """

    @staticmethod
    def forward(ctx, x, y, coarse, fine, full, offset, start, walkers, nx, ny, n_steps, n_sub, pattern=None):
        ctx.n_rows = (coarse if full is None else full).shape[1]
        ctx.need_points = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        ctx.walk = ctx.direct = ctx.walkers = None
        if full is None:
            x1, y1, ctx.walk = _walk(x, y, coarse, fine, offset, start, nx, ny, n_steps, n_sub)
            return x1, y1
        if pattern is not None and not ctx.need_points:
            # the same pixel grid in every image: a matrix product with the grid's operator
            x1, y1, ctx.direct = _grid_full_forward(full, pattern)
        else:
            mf = full.index_select(1, start)
            x1, y1 = _apply(mf, x, y)
            ctx.direct = (mf, start, x, y)
        if walkers is not None:
            idx = walkers
            wx, wy, ctx.walk = _walk(x.index_select(0, idx), y.index_select(0, idx), coarse, fine,
                                     offset.index_select(0, idx), start.index_select(0, idx), nx, ny, n_steps, n_sub)
            x1.index_copy_(0, idx, wx)
            y1.index_copy_(0, idx, wy)
            ctx.walkers = idx
        return x1, y1

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gx, gy):
        grad_coarse = gx.new_zeros(6, ctx.n_rows) if ctx.walk is not None else None
        grad_fine = gx.new_zeros(6, ctx.n_rows) if ctx.walk is not None else None
        grad_full = gx.new_zeros(6, ctx.n_rows) if ctx.direct is not None else None
        gx, gy = gx.contiguous(), gy.contiguous()
        if ctx.direct is None:
            gx, gy = _walk_back(ctx.walk, gx, gy, grad_coarse, grad_fine, ctx.need_points)
        else:
            idx = ctx.walkers
            if idx is not None:
                wgx, wgy = _walk_back(ctx.walk, gx.index_select(0, idx), gy.index_select(0, idx),
                                      grad_coarse, grad_fine, ctx.need_points)
                gx, gy = gx.index_fill(0, idx, 0), gy.index_fill(0, idx, 0)
            if isinstance(ctx.direct[0], str):  # the grid's matrix product
                _grid_full_backward(grad_full, ctx.direct, gx, gy)
                return None, None, grad_coarse, grad_fine, grad_full, None, None, None, None, None, None, None, None
            mf, cells, x, y = ctx.direct
            _scatter_rows(grad_full, cells, gx, gy, x, y)
            if ctx.need_points:
                gx, gy = _pull_back(mf, gx, gy)
                if idx is not None:
                    gx.index_copy_(0, idx, wgx)
                    gy.index_copy_(0, idx, wgy)
            else:
                gx = gy = None
        return gx, gy, grad_coarse, grad_fine, grad_full, None, None, None, None, None, None, None, None


class _Tables:
    """The per-cell maps of one direction, each computed on first use (so that a call that only
    needs the whole-time maps, or only the step maps, computes no other): ``walk()`` the maps over
    one sub-step and one step ``(fine, coarse)``, ``full()`` over the whole time, ``speed`` the
    speed bound of every cell. ``inverse()`` gives those of ``T_{-theta}``: the closed-form inverses
    of these maps (``expm(-sA) = expm(sA)^-1``, so both directions share one ``expm``); the speeds of
    ``-v`` are those of ``v``."""

    def __init__(self, transform: "CPAB", maps: torch.Tensor | None, speed: torch.Tensor,
                 source: "_Tables | None" = None):
        self.transform, self.maps, self.speed, self.source = transform, maps, speed, source
        self._walk: tuple[torch.Tensor, torch.Tensor] | None = None
        self._full: torch.Tensor | None = None

    @staticmethod
    def _invert(table: torch.Tensor) -> torch.Tensor:
        return invert_rows(table, dim=0)

    def walk(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._walk is None:
            if self.source is not None:
                self._walk = tuple(self._invert(table) for table in self.source.walk())
            else:
                t = self.transform
                self._walk = _flows(self.maps, 1.0 / (t.n_steps * t.n_sub), t.n_sub)
        return self._walk

    def full(self) -> torch.Tensor:
        if self._full is None:
            self._full = self._invert(self.source.full()) if self.source is not None else _flows(self.maps, 1.0, 1)[0]
        return self._full

    def inverse(self) -> "_Tables":
        return _Tables(self.transform, None, self.speed, source=self)


class CPAB(Transform):
    """CPAB transformations on an ``nx x ny`` tessellation; ``theta_dim`` is the dimension of the
    field space (e.g. 30 for ``(2, 4)``, 62 for ``(4, 4)`` with zero boundary).

    Options: ``tessellation=(nx, ny)``, ``zero_boundary``, ``volume_preservation``, ``n_steps``
    and ``n_sub`` (integration steps, default 3, and sub-steps where a step crosses an edge,
    default 4; the error falls as ``(n_steps * n_sub)^-2``, see the module docstring).
    """

    name = "cpab"

    def __init__(self, tessellation=(2, 4), zero_boundary: bool = True, volume_preservation: bool = False,
                 n_steps: int = 3, n_sub: int = 4):
        super().__init__()
        sizes = tuple(tessellation) if isinstance(tessellation, (tuple, list)) else (tessellation,)
        if len(sizes) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes):
            raise VitaeError(f"cpab: tessellation must be two positive integers (nx, ny), got {tessellation!r}")
        for key, value in (("n_steps", n_steps), ("n_sub", n_sub)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise VitaeError(f"cpab: {key} must be a positive integer, got {value!r}")
        self.nx, self.ny = sizes
        needed = basis_bytes(*sizes)
        if needed > MAX_BASIS_BYTES:
            raise VitaeError(f"cpab: tessellation {list(sizes)} needs about {needed / 2**30:.1f} GiB for its field basis "
                             f"(an SVD of {24 * sizes[0] * sizes[1]} x {24 * sizes[0] * sizes[1]}); use at most "
                             f"{MAX_BASIS_BYTES / 2**30:.0f} GiB worth, e.g. [16, 16] (the paper uses [2, 4] and [4, 4])")
        self.zero_boundary, self.volume_preservation = bool(zero_boundary), bool(volume_preservation)
        self.n_steps, self.n_sub = n_steps, n_sub
        self.n_cells = 4 * self.nx * self.ny
        b = basis(self.nx, self.ny, self.zero_boundary, self.volume_preservation)
        self.theta_dim = b.shape[1]
        # not a buffer: rebuilt from the options (checkpoints need not carry it), kept in float64
        # and copied once per device and dtype
        self._basis = torch.from_numpy(b.copy())
        self._basis_on: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._grid_cells: dict[tuple, tuple] = {}  # per pixel grid: its points, cells, distances, operator
        self._shortcut = True  # points that provably stay in their cell take its full map (tests turn it off)

    def basis_for(self, theta: torch.Tensor) -> torch.Tensor:
        """The basis ``[6 n_cells, theta_dim]`` on ``theta``'s device and dtype."""
        key = (theta.device, theta.dtype)
        if key not in self._basis_on:
            self._basis_on[key] = self._basis.to(device=theta.device, dtype=theta.dtype)
        return self._basis_on[key]

    def check_theta(self, theta: torch.Tensor) -> None:
        super().check_theta(theta)
        if not torch.isfinite(theta).all():
            bad = int((~torch.isfinite(theta)).sum())
            raise ValueError(f"{self.name}: theta must be finite, got {bad} NaN or inf entries")

    def cell_maps(self, theta: torch.Tensor) -> torch.Tensor:
        """Velocity maps ``A`` ``[B, n_cells, 2, 3]`` in unit-square coordinates (Convention)."""
        self.check_theta(theta)
        return (theta @ self.basis_for(theta).t()).view(-1, self.n_cells, 2, 3)

    def _frame_maps(self, theta: torch.Tensor) -> torch.Tensor:
        """The cell maps in the ``p = 2 u - 1`` frame, rows ``[B * n_cells, 6]``: with
        ``v_u = L u + b``, ``dp/dt = 2 v_u = L p + (L 1 + 2 b)``."""
        a = self.cell_maps(theta)
        lin, shift = a[..., :2], a[..., 2]
        return torch.cat([lin, (lin.sum(-1) + 2 * shift).unsqueeze(-1)], dim=-1).reshape(-1, 6)

    def velocity(self, points: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """``dp/dt`` of the field at ``points`` ``[B, P, 2]`` (normalised frame)."""
        b, p, _ = points.shape
        maps = self._frame_maps(theta)
        offset = torch.arange(b, device=points.device, dtype=points.dtype)[:, None] * self.n_cells
        cells = cell_index((points[..., 0] + 1) * (self.nx / 2), (points[..., 1] + 1) * (self.ny / 2), self.nx, self.ny,
                           offset.expand(b, p))
        m = maps.t().index_select(1, cells.reshape(-1).long())
        vx, vy = _apply(m, points[..., 0].reshape(-1), points[..., 1].reshape(-1))
        return torch.stack([vx, vy], dim=-1).view(b, p, 2)

    def _cell_unit_basis(self, theta: torch.Tensor) -> torch.Tensor:
        """The basis as ``[6, theta_dim, n_cells]`` on ``theta``'s device and dtype, each of the six
        map entries scaled to cell units ``X = u * n`` (``dX/dt = S L S^-1 X + S b``,
        ``S = diag(nx, ny)``): ``theta @ it`` is ``[6, B, n_cells]``, the cell-unit maps of every
        image and cell as six contiguous rows."""
        key = ("cell units", theta.device, theta.dtype)
        if key not in self._basis_on:
            scale = torch.tensor([1.0, self.nx / self.ny, self.nx, self.ny / self.nx, 1.0, self.ny],
                                 dtype=torch.float64)
            b = self._basis.view(self.n_cells, 6, -1).permute(1, 2, 0) * scale[:, None, None]
            self._basis_on[key] = b.contiguous().to(device=theta.device, dtype=theta.dtype)
        return self._basis_on[key]

    def _step_maps(self, theta: torch.Tensor) -> "_Tables":
        """The per-cell maps of ``T_theta`` (computed on first use, see ``_Tables``), from the
        cell-unit velocity maps ``[6, B * n_cells]`` (column ``image * n_cells + cell``): there the
        cell lookup needs no rescaling per step."""
        maps = torch.matmul(theta, self._cell_unit_basis(theta))  # [6, B, n_cells]
        return _Tables(self, maps.view(6, -1), self._speed_bound(maps.detach()))

    def _speed_bound(self, maps: torch.Tensor) -> torch.Tensor:
        """``[B * n_cells]``: the largest speed (cell units) of the field in every cell, slightly
        enlarged against rounding. The field is affine in a cell, so its largest speed is at one
        of the three vertices."""
        key = ("vertices", maps.device, maps.dtype)
        if key not in self._basis_on:
            v = torch.from_numpy(triangles(self.nx, self.ny) * (self.nx, self.ny))  # [n_cells, 3, 2]
            self._basis_on[key] = v.permute(2, 0, 1).to(device=maps.device, dtype=maps.dtype)
        vx, vy = self._basis_on[key]  # [n_cells, 3] each
        l00, l01, b0, l10, l11, b1 = (m[..., None] for m in maps)  # [B, n_cells, 1]
        speed = torch.hypot(l00 * vx + l01 * vy + b0, l10 * vx + l11 * vy + b1).amax(-1)
        return (speed * 1.001 + 1e-4).view(-1)

    def _tables(self, theta: torch.Tensor, inverse: bool) -> "_Tables":
        """The maps of ``T_theta`` or, for ``inverse``, of ``T_{-theta}``."""
        tables = self._step_maps(theta)
        return tables.inverse() if inverse else tables

    def _displacement(self, points: torch.Tensor, tables, grid_key=None) -> torch.Tensor:
        """``T(p) - p`` ``[B, P, 2]`` for the ``tables`` of ``_tables``; exactly 0 where the maps
        are the identity. ``grid_key`` names a constant pixel grid (no gradient to the points):
        its cell-unit coordinates, cells and distances are then computed once and cached."""
        b, p, _ = points.shape
        cached = self._grid_cells.get(grid_key) if grid_key is not None else None
        if cached is None:
            # contiguous x and y rows: every elementwise pass of the integrator reads them densely
            x0 = (points[..., 0].reshape(-1) + 1) * (self.nx / 2)
            y0 = (points[..., 1].reshape(-1) + 1) * (self.ny / 2)
            offset = (torch.arange(b, device=points.device, dtype=points.dtype) * self.n_cells).repeat_interleave(p)
            xd, yd = x0.detach(), y0.detach()
            cells = _cell(xd, yd, self.nx, self.ny, offset)
            pattern = by_cell = None
            dist = _inner_distance(xd, yd, self.nx, self.ny)
            if grid_key is not None:  # the same grid in every image: its cells in the first one
                pattern = (_grid_operator(cells[:p], xd[:p], yd[:p], self.n_cells), b)
                by_cell = _distances_by_cell(cells[:p], dist[:p], self.n_cells)
            cached = (x0, y0, offset, cells, dist, pattern, by_cell)
            if grid_key is not None:
                if len(self._grid_cells) >= 8:
                    self._grid_cells.pop(next(iter(self._grid_cells)))
                self._grid_cells[grid_key] = cached
        x0, y0, offset, cells, dist, pattern, by_cell = cached
        # points farther from their cell's boundary than its speed bound stay in it: whole-time map
        n, walkers, fine, stay = x0.shape[0], None, None, None
        speed = tables.speed.to(points.dtype)
        if not self._shortcut:
            n_stay = 0
        elif by_cell is not None:  # a grid: counted per cell first, each point's only if worth it
            n_stay = _staying(by_cell, speed.view(b, -1))
        else:
            stay = dist > speed.index_select(0, cells)
            n_stay = int(stay.sum())
        if n_stay < n * (STAY_COMPILED if cpab_walk.usable(x0) else STAY_EAGER):
            full = None
        else:
            full = tables.full().to(points.dtype)
            if n_stay < n:
                stay = dist > speed.index_select(0, cells) if stay is None else stay
                walkers = (~stay).nonzero().squeeze(1)
        if full is None or walkers is not None:
            fine, coarse = (t.to(points.dtype) for t in tables.walk())
        else:
            coarse = None
        x, y = _Flow.apply(x0, y0, coarse, fine, full, offset, cells, walkers, self.nx, self.ny, self.n_steps,
                           self.n_sub, pattern)
        return torch.stack([(x - x0).mul_(2 / self.nx), (y - y0).mul_(2 / self.ny)], dim=-1).view(b, p, 2)

    def _flow(self, points: torch.Tensor, tables) -> torch.Tensor:
        # p plus the displacement, so that theta = 0 returns p bit for bit
        return points + self._displacement(points, tables)

    def transform_points(self, points: torch.Tensor, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        self.check_theta(theta)
        self.check_points(points, theta)
        return self._flow(points, self._tables(theta, inverse))

    def prepare(self, theta: torch.Tensor):
        """``warp`` with ``theta`` bound: the basis projection and the ``expm`` of every cell are
        done once and shared by both directions (the inverse tables are their closed-form
        inverses), as are the pixel grids per image size. Equal to ``warp`` bit for bit."""
        self.check_theta(theta)
        tables = {False: self._step_maps(theta)}

        def warp(images: torch.Tensor, inverse: bool = False) -> torch.Tensor:
            if inverse not in tables:
                tables[inverse] = tables[False].inverse()
            return self._warp_with(images, theta, tables[inverse])

        return warp

    def _warp_with(self, images: torch.Tensor, theta: torch.Tensor, tables) -> torch.Tensor:
        self.check_images(images, theta)
        b, _, h, w = images.shape
        grid = identity_grid(b, h, w, device=images.device, dtype=theta.dtype)
        # the pixel grid and its cells are constants: computed once per size, device and dtype
        shift = self._displacement(grid, tables, grid_key=(b, h, w, images.device, theta.dtype))  # 0 at theta = 0
        return displaced_sample(images, shift=shift.reshape(b, h, w, 2))

    def warp(self, images: torch.Tensor, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        self.check_theta(theta)
        return self._warp_with(images, theta, self._tables(theta, inverse))

    def extra_repr(self) -> str:
        return (f"tessellation=({self.nx}, {self.ny}), zero_boundary={self.zero_boundary}, "
                f"volume_preservation={self.volume_preservation}, n_steps={self.n_steps}, "
                f"n_sub={self.n_sub}, theta_dim={self.theta_dim}")
