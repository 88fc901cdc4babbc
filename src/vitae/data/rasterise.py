"""Orthographic, z-buffered rendering of triangle meshes, a batch of meshes at a time.

Convention: world ``x`` to the right and ``y`` up; the camera looks down ``-z``, so the largest
``z`` is nearest. ``view_height`` world units span the image height and ``view_centre`` is the
world point ``(x, y)`` at the image centre (the same scale on both axes). A pixel belongs to a
triangle when its centre lies inside it (closed edges; no anti-aliasing); the nearest triangle
wins, ties going to the lower face index. A pixel of the body is shaded ``0.3 + 0.7 |n_z|`` by
that triangle's unit normal, the background is 0.

Two paths make the same images bit for bit (``tests/data/test_rasterise.py``), both in float64:

* **compiled** (``rasterise.cpp``, built on first use by ``vitae.kernels``, where a C++ compiler
  is present and ``VITAE_KERNELS`` is not ``torch``): each image is a loop over its triangles
  with a depth buffer, the threads sharing out the images;
* **numpy**: every triangle's candidate pixels (the centres inside its bounding box) are
  enumerated for the whole batch at once, and the z-buffer is two scatter reductions (the nearest
  depth per pixel, then the lowest face index among the fragments at that depth) instead of a
  sort: a mesh of 48,000 small triangles at 400 x 200 takes a few milliseconds.

``python benchmarks/bodies_render.py`` times the bodies on either path.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import torch

from vitae import kernels

P, N, D, I = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
KERNEL = kernels.Kernel(Path(__file__).with_name("rasterise.cpp"),
                        {"vitae_rasterise": [P, P, P, N, N, P, N, D, N, N, P, I]}, dtypes=(torch.float64,))
AMBIENT, DIFFUSE = 0.3, 0.7
CANDIDATES_PER_CHUNK = 1_000_000  # bounds the working memory (a dozen float64 arrays per candidate pixel)


def check(vertices, faces, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices.detach().cpu() if isinstance(vertices, torch.Tensor) else vertices, dtype=np.float64)
    faces = np.asarray(faces)
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"rasterise: vertices must have shape [N, V, 3], got {list(vertices.shape)}")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0 or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"rasterise: faces must be integers of shape [F, 3] with F >= 1, got {faces.dtype} {list(faces.shape)}")
    if faces.min() < 0 or faces.max() >= vertices.shape[1]:
        raise ValueError(f"rasterise: faces index vertices 0..{vertices.shape[1] - 1}, got {int(faces.min())}..{int(faces.max())}")
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"rasterise: {name} must be a whole number >= 1, got {value!r}")
    return vertices, faces.astype(np.int64)


def rasterise(vertices, faces, height: int, width: int, *, view_height: float, view_centre=(0.0, 0.0)) -> torch.Tensor:
    """Shaded images ``[N, height, width]`` float32 of the meshes ``vertices`` ``[N, V, 3]`` that
    share the triangles ``faces`` ``[F, 3]`` (see the module's convention)."""
    vertices, faces = check(vertices, faces, height, width)
    if not view_height > 0:
        raise ValueError(f"rasterise: view_height must be positive, got {view_height!r}")
    n, pixels, num_faces = len(vertices), height * width, len(faces)
    scale = height / view_height
    px = ((vertices[..., 0] - view_centre[0]) * scale + width / 2).ravel()  # [N*V]
    py = ((view_centre[1] - vertices[..., 1]) * scale + height / 2).ravel()
    pz = vertices[..., 2].ravel()
    if KERNEL.library() is not None:  # built and loaded, VITAE_KERNELS not "torch"
        return _compiled(px, py, pz, n, faces, scale, height, width)
    # the corners' indices into the flat [N*V] arrays, one row per corner ([3, N*F]: reductions over
    # corners are then element-wise between rows, not over a short last axis, which numpy does slowly)
    corner = (faces.T[:, None, :] + (np.arange(n) * vertices.shape[1])[None, :, None]).reshape(3, -1)
    fx, fy = px.take(corner), py.take(corner)
    # candidate pixels: the integer pixels whose centres (i + 0.5) fall in each triangle's box
    lo_x = np.maximum(np.ceil(np.minimum(np.minimum(fx[0], fx[1]), fx[2]) - 0.5), 0)
    lo_y = np.maximum(np.ceil(np.minimum(np.minimum(fy[0], fy[1]), fy[2]) - 0.5), 0)
    nx = np.minimum(np.floor(np.maximum(np.maximum(fx[0], fx[1]), fx[2]) - 0.5), width - 1) - lo_x + 1
    ny = np.minimum(np.floor(np.maximum(np.maximum(fy[0], fy[1]), fy[2]) - 0.5), height - 1) - lo_y + 1
    keep = np.flatnonzero((nx > 0) & (ny > 0))  # image * F + face
    corner = corner[:, keep]
    fx, fy, fz = px.take(corner), py.take(corner), pz.take(corner)
    e1x, e1y, e2x, e2y = fx[1] - fx[0], fy[1] - fy[0], fx[2] - fx[0], fy[2] - fy[0]
    area = e1x * e2y - e1y * e2x
    nx, ny = nx.take(keep), ny.take(keep)
    nx[np.abs(area) <= 1e-12] = 0  # degenerate triangles cover nothing
    count = (nx * ny).astype(np.int64)
    lo_x, lo_y = lo_x.take(keep), lo_y.take(keep)
    face = {"x0": fx[0], "y0": fy[0], "e1x": e1x, "e1y": e1y, "e2x": e2x, "e2y": e2y, "area": area,
            "z0": fz[0], "dz1": fz[1] - fz[0], "dz2": fz[2] - fz[0], "lo_x": lo_x, "lo_y": lo_y,
            "nx": nx, "base": (keep // num_faces) * pixels + (lo_y * width + lo_x).astype(np.int64)}
    depth_buffer = torch.full((n * pixels,), -torch.inf, dtype=torch.float64)
    fragments = []
    for part in _chunks(count):  # whole triangles per chunk, so the working memory stays bounded
        pixel, local, depth = _fragments({k: v[part] for k, v in face.items()}, count[part], width)
        pixel, f, depth = torch.from_numpy(pixel), torch.from_numpy(local + part.start), torch.from_numpy(depth)
        depth_buffer.scatter_reduce_(0, pixel, depth, "amax")
        fragments.append((pixel, f, depth))
    none = len(keep)  # winners are indices of the kept triangles
    winner = torch.full((n * pixels,), none, dtype=torch.int64)
    for pixel, f, depth in fragments:  # among the nearest fragments of a pixel, the lowest face
        nearest = torch.from_numpy(np.flatnonzero((depth == depth_buffer.index_select(0, pixel)).numpy()))
        winner.scatter_reduce_(0, pixel.index_select(0, nearest), f.index_select(0, nearest), "amin")
    winner = winner.numpy()
    covered = np.flatnonzero(winner < none)
    image = np.zeros(n * pixels, dtype=np.float32)
    image[covered] = _shade(face, scale).take(winner.take(covered))
    return torch.from_numpy(image.reshape(n, height, width))


def _compiled(px, py, pz, n: int, faces: np.ndarray, scale: float, height: int, width: int) -> torch.Tensor:
    px, py, pz, faces = (torch.from_numpy(np.ascontiguousarray(v)) for v in (px, py, pz, faces))  # float64 and int64 from check()
    image = torch.empty(n, height, width, dtype=torch.float32)
    pointer = kernels.pointer
    KERNEL("vitae_rasterise", torch.float64, pointer(px), pointer(py), pointer(pz), n, len(px) // max(n, 1),
           pointer(faces), len(faces), scale, height, width, pointer(image), torch.get_num_threads())
    return image


def _shade(face: dict, scale: float) -> np.ndarray:
    """``AMBIENT + DIFFUSE |n_z| / |n|`` of each kept triangle, its normal ``n`` the cross product of
    its world edges, which are the pixel edges ``(e_x / scale, -e_y / scale, dz)``; so
    ``n = ((dz1 e2y - e1y dz2) / scale, (dz1 e2x - e1x dz2) / scale, -area / scale^2)``."""
    nx = (face["dz1"] * face["e2y"] - face["e1y"] * face["dz2"]) / scale
    ny = (face["dz1"] * face["e2x"] - face["e1x"] * face["dz2"]) / scale
    nz = face["area"] / (scale * scale)
    length = np.sqrt(nx * nx + ny * ny + nz * nz)
    return (AMBIENT + DIFFUSE * np.abs(nz) / np.maximum(length, 1e-12)).astype(np.float32)


def _chunks(count: np.ndarray):
    """Slices of whole triangles holding at most about ``CANDIDATES_PER_CHUNK`` candidates each."""
    ends = np.cumsum(count)
    start, total = 0, len(count)
    while start < total:
        offset = int(ends[start - 1]) if start else 0
        end = max(int(np.searchsorted(ends, offset + CANDIDATES_PER_CHUNK, side="right")), start + 1)
        yield slice(start, end)
        start = end


def _fragments(face: dict, count: np.ndarray, width: int):
    """The covered pixels of the triangles ``face``: ``(pixel, triangle, depth)`` per fragment, the
    pixel a global index into the batch's images, the triangle an index into ``face``."""
    local = np.repeat(np.arange(len(count)), count)
    k = np.arange(len(local), dtype=np.float64) - (np.cumsum(count) - count).take(local)
    nx = face["nx"].take(local)
    dy = np.floor(k / nx)  # exact: whole numbers
    dx = k - dy * nx
    col, row = face["lo_x"].take(local) + dx, face["lo_y"].take(local) + dy
    # barycentric coordinates of the pixel centre
    qx, qy = col + 0.5 - face["x0"].take(local), row + 0.5 - face["y0"].take(local)
    area = face["area"].take(local)
    a = (qx * face["e2y"].take(local) - qy * face["e2x"].take(local)) / area
    b = (face["e1x"].take(local) * qy - face["e1y"].take(local) * qx) / area
    inside = np.flatnonzero((a >= 0) & (b >= 0) & (a + b <= 1))
    local, dx, dy, a, b = local.take(inside), dx.take(inside), dy.take(inside), a.take(inside), b.take(inside)
    depth = face["z0"].take(local) + a * face["dz1"].take(local) + b * face["dz2"].take(local)
    pixel = face["base"].take(local) + (dy * width + dx).astype(np.int64)
    return pixel, local, depth
