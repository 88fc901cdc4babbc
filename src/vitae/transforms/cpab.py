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
``expm(h [[A_c], [0 0 0]])``, a 2x3 map per cell and image (Taylor series and squaring), computed
once per ``theta`` (``prepare`` shares it between both directions: the inverse direction uses the
closed-form inverse of each cell map, ``expm(-hA) = expm(hA)^-1``). Each step applies the map of
the cell that holds the step's start; a step that stays in one cell is exact. A step whose end
lies in another cell (~10-20% of them) is redone in ``n_sub`` sub-steps, each applying the map of
the cell that holds its estimated midpoint (extrapolated from the previous sub-step, the first
from the step's own displacement), which also handles the thin wedges near vertices where one
step crosses several cells; a sub-step that crosses an edge at fraction ``s`` of its length errs
by about ``|(A_c' - A_c) v| min(s, 1 - s)^2 (h / n_sub)^2 / 2``. The error therefore falls like
``(n_steps * n_sub)^-2`` at the crossings and is zero elsewhere. Measured against a float64
reference (2000 midpoint-rule steps, itself within 3e-8), ``[4, 4]``, ``theta ~ N(0, 1)``, 28x28
pixel centres, the defaults (3 steps, 6 sub-steps): max 2.8e-4, mean 3.7e-6 in unit-square
coordinates, float32 and float64 alike (``benchmarks/cpab.py``; 5 x 4 gives 1.2e-4 / 2.9e-6).
``T_{-theta}(T_theta(p)) = p`` holds to the same error. The cell choices are piecewise constant in
``theta``, so the gradient is the exact derivative of the computed map (away from measure-zero
switching points); it is hand-written (a scatter per step) and not twice differentiable.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from vitae.errors import VitaeError
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


def power(a: torch.Tensor, k: int) -> torch.Tensor:
    """Rows of the affine map ``a`` composed ``k >= 1`` times, by repeated squaring."""
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


class _Flow(torch.autograd.Function):
    """The integrator of the module docstring; backward walks the recorded steps in reverse.

    Inputs: ``x, y`` ``[N]`` in cell units (``u * n``); ``coarse`` and ``fine`` ``[6, n_images * n_cells]``,
    the maps of every cell for one step (``h``) and one sub-step (``h / n_sub``); ``offset`` ``[N]``
    (``image * n_cells`` as float); the tessellation and step counts. Each step applies the map of
    the cell that holds its start; a step that ends in another cell is redone in ``n_sub``
    sub-steps, each with the cell of its predicted midpoint. Cell choices are constants for the
    gradient.
    """

    @staticmethod
    def forward(ctx, x, y, coarse, fine, offset, nx, ny, n_steps, n_sub):
        start = _cell(x, y, nx, ny, offset)
        ctx.steps = []
        frac = 1 / (2 * n_sub)
        for _ in range(n_steps):
            m = coarse.index_select(1, start)
            x1, y1 = _apply(m, x, y)
            end = _cell(x1, y1, nx, ny, offset)
            redo = (end != start).nonzero().squeeze(1)
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
            ctx.steps.append((x, y, m, start, redo, subs))
            x, y, start = x1, y1, end
        ctx.n_rows = coarse.shape[1]
        ctx.need_points = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        return x, y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gx, gy):
        grad_coarse = gx.new_zeros(6, ctx.n_rows)
        grad_fine = gx.new_zeros(6, ctx.n_rows)
        gx, gy = gx.contiguous(), gy.contiguous()
        last = len(ctx.steps) - 1
        for i, (x, y, m, c, redo, subs) in enumerate(reversed(ctx.steps)):
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
            if i < last or ctx.need_points:
                gx, gy = _pull_back(m, gx, gy)
                if redo.numel():
                    gx.index_copy_(0, redo, sgx)
                    gy.index_copy_(0, redo, sgy)
        if not ctx.need_points:
            gx = gy = None
        return gx, gy, grad_coarse, grad_fine, None, None, None, None, None


class CPAB(Transform):
    """CPAB transformations on an ``nx x ny`` tessellation; ``theta_dim`` is the dimension of the
    field space (e.g. 30 for ``(2, 4)``, 62 for ``(4, 4)`` with zero boundary).

    Options: ``tessellation=(nx, ny)``, ``zero_boundary``, ``volume_preservation``, ``n_steps``
    and ``n_sub`` (integration steps, and sub-steps where a step crosses an edge; the error falls
    as ``(n_steps * n_sub)^-2``, see the module docstring).
    """

    name = "cpab"

    def __init__(self, tessellation=(2, 4), zero_boundary: bool = True, volume_preservation: bool = False,
                 n_steps: int = 3, n_sub: int = 6):
        super().__init__()
        sizes = tuple(tessellation) if isinstance(tessellation, (tuple, list)) else (tessellation,)
        if len(sizes) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes):
            raise VitaeError(f"cpab: tessellation must be two positive integers (nx, ny), got {tessellation!r}")
        for key, value in (("n_steps", n_steps), ("n_sub", n_sub)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise VitaeError(f"cpab: {key} must be a positive integer, got {value!r}")
        self.nx, self.ny = sizes
        self.zero_boundary, self.volume_preservation = bool(zero_boundary), bool(volume_preservation)
        self.n_steps, self.n_sub = n_steps, n_sub
        self.n_cells = 4 * self.nx * self.ny
        b = basis(self.nx, self.ny, self.zero_boundary, self.volume_preservation)
        self.theta_dim = b.shape[1]
        # not a buffer: rebuilt from the options (checkpoints need not carry it), kept in float64
        # and copied once per device and dtype
        self._basis = torch.from_numpy(b.copy())
        self._basis_on: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

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

    def _step_maps(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``[B * n_cells, 6]`` of the exact flow of every cell over one sub-step
        (``h / n_sub``) and one step (``h``), in cell units ``X = u * n``: there the cell lookup
        needs no rescaling per step, ``dX/dt = S L S^-1 X + S b`` with ``S = diag(nx, ny)``."""
        a = self.cell_maps(theta)
        rx, ry = self.nx / self.ny, self.ny / self.nx
        maps = torch.stack([a[..., 0, 0], a[..., 0, 1] * rx, a[..., 0, 2] * self.nx,
                            a[..., 1, 0] * ry, a[..., 1, 1], a[..., 1, 2] * self.ny], dim=-1).view(-1, 6)
        fine = expm_affine(maps / (self.n_steps * self.n_sub))
        return fine, power(fine, self.n_sub)  # the same flow: expm(h A) = expm(h A / n_sub)^n_sub

    def _tables(self, theta: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(fine, coarse)`` step maps of ``T_theta`` or, for ``inverse``, of ``T_{-theta}``:
        ``expm(-hA) = expm(hA)^{-1}`` in closed form, so both directions share one ``expm``."""
        fine, coarse = self._step_maps(theta)
        return (invert_rows(fine), invert_rows(coarse)) if inverse else (fine, coarse)

    def _flow(self, points: torch.Tensor, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        b, p, _ = points.shape
        offset = (torch.arange(b, device=points.device, dtype=points.dtype) * self.n_cells).repeat_interleave(p)
        half = points.new_tensor([self.nx / 2, self.ny / 2])
        start = ((points + 1) * half).reshape(-1, 2)
        x, y = _Flow.apply(start[:, 0], start[:, 1], coarse.to(points.dtype).t().contiguous(),
                           fine.to(points.dtype).t().contiguous(), offset, self.nx, self.ny, self.n_steps, self.n_sub)
        # p plus the displacement, so that theta = 0 returns p bit for bit
        return points + (torch.stack([x, y], dim=-1) - start).view(b, p, 2) / half

    def transform_points(self, points: torch.Tensor, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        self.check_theta(theta)
        if points.dim() != 3 or points.shape[0] != theta.shape[0] or points.shape[-1] != 2:
            raise ValueError(f"{self.name}: points must have shape [{theta.shape[0]}, P, 2], got {list(points.shape)}")
        return self._flow(points, *self._tables(theta, inverse))

    def prepare(self, theta: torch.Tensor):
        """``warp`` with ``theta`` bound: the basis projection and the ``expm`` of every cell are
        done once and shared by both directions (the inverse tables are their closed-form
        inverses), as are the pixel grids per image size. Equal to ``warp`` bit for bit."""
        self.check_theta(theta)
        fine, coarse = self._step_maps(theta)
        tables = {False: (fine, coarse)}

        def warp(images: torch.Tensor, inverse: bool = False) -> torch.Tensor:
            if inverse not in tables:
                tables[inverse] = (invert_rows(fine), invert_rows(coarse))
            return self._warp_with(images, theta, *tables[inverse])

        return warp

    def _warp_with(self, images: torch.Tensor, theta: torch.Tensor, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        if b != theta.shape[0]:
            raise ValueError(f"{self.name}: images must have shape [{theta.shape[0]}, C, H, W], got {list(images.shape)}")
        grid = identity_grid(b, h, w, device=images.device, dtype=theta.dtype)
        shift = self._flow(grid, fine, coarse) - grid  # exactly 0 at theta = 0
        return displaced_sample(images, shift=shift.reshape(b, h, w, 2))

    def warp(self, images: torch.Tensor, theta: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        self.check_theta(theta)
        return self._warp_with(images, theta, *self._tables(theta, inverse))

    def extra_repr(self) -> str:
        return (f"tessellation=({self.nx}, {self.ny}), zero_boundary={self.zero_boundary}, "
                f"volume_preservation={self.volume_preservation}, n_steps={self.n_steps}, "
                f"n_sub={self.n_sub}, theta_dim={self.theta_dim}")
