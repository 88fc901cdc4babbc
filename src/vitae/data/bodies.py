"""Bodies: the paper's SMPL protocol (supplement, "Details for SMPL experiments" and Table 2).

Factors: ``beta_0 .. beta_{n-1}``, body shape coefficients drawn from N(0, 1.25^2) (continuous,
valid within +-5 standard deviations, cut into 10 equiprobable bins for the metrics), and
``pose``, one of the four arm configurations of Table 2 drawn uniformly (categorical).

Table 2, radians, as rotations about the axis that points at the camera (SMPL's z; the body
faces +z with y up and its left arm along +x), applied to the SMPL joints ``L_Shoulder`` /
``R_Shoulder`` ("shoulder") and ``L_Elbow`` / ``R_Elbow`` ("arm"; the table names no joint,
the elbow is our reading)::

                    pose 0   pose 1   pose 2   pose 3
    left shoulder   -pi/8    -pi/16   +pi/16   +pi/8
    right shoulder  +pi/8    +pi/16   -pi/16   -pi/8
    left arm        -pi/3.5  -pi/3.5  +pi/3.5  +pi/3.5
    right arm       +pi/3.5  +pi/3.5  -pi/3.5  -pi/3.5

so poses 0 and 1 lower both arms and poses 2 and 3 raise them, mirror-symmetrically.

The body: by default the "wooden" skinned mannequin of PyPI ``mannequin-x`` (numpy only, shipped
shape calibration; its 10 coefficients follow SMPL-X's shape space). With ``model_path`` pointing
at licensed SMPL model files, the same generator poses the real SMPL body through ``smplx``.

Image: an orthographic view from the front (camera on +z), the body's left on the image's right,
a fixed window 2.8 m high centred 0.45 m below the pelvis (a fixed scale, so the shape's effect on
size shows; the largest bodies' hands may touch the border). Pixels of the body are shaded
``0.3 + 0.7 |n_z|`` by the normal of the nearest triangle (a z-buffer), the background is 0.
Default 400x200 (height x width) as in the paper; float32 images take 320 KB each.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import torch

from vitae.data.base import Dataset, Split
from vitae.data.ground_truth_data import Factor, GroundTruthData, cache_path, generate, save_atomically, split_seeds, to_dataset
from vitae.errors import VitaeError

SHAPE_STD = 1.25
NUM_BINS = 10
POSES = np.pi * np.array([  # columns: L_Shoulder, R_Shoulder, L_Elbow, R_Elbow (z rotation)
    [-1 / 8, 1 / 8, -1 / 3.5, 1 / 3.5],
    [-1 / 16, 1 / 16, -1 / 3.5, 1 / 3.5],
    [1 / 16, -1 / 16, 1 / 3.5, -1 / 3.5],
    [1 / 8, -1 / 8, 1 / 3.5, -1 / 3.5],
])
ARM_JOINTS = (16, 17, 18, 19)  # SMPL joint numbers of L/R shoulder and L/R elbow; body_pose row = joint - 1
VIEW_HEIGHT = 2.8  # metres shown from top to bottom of the image
VIEW_CENTRE = (0.0, -0.45)  # metres (x, y) at the image centre; the pelvis is at the origin
RENDER_VERSION = 1
INSTALL_BODIES = "pip install 'vitae-perspective[bodies]'"


class MannequinBody:
    """Posed vertices and faces from ``mannequin-x`` (the default, no licence needed)."""

    num_shape = 10

    def __init__(self):
        try:
            from mannequin import Mannequin
        except ImportError:
            raise VitaeError(f"the bodies data set needs the package mannequin-x: run `{INSTALL_BODIES}`") from None
        self.model = Mannequin("wooden")
        self.faces = np.asarray(self.model.faces)

    def vertices(self, shape: np.ndarray, arm_angles: np.ndarray) -> np.ndarray:
        betas = np.zeros(self.num_shape, np.float32)
        betas[: len(shape)] = shape
        self.model.reshape(betas)
        pose = self.model.rest_pose()
        for joint, angle in zip(ARM_JOINTS, arm_angles):
            pose["body_pose"][joint - 1, 2] = angle
        return np.asarray(self.model.vertices(pose), dtype=np.float64)


class SmplBody:
    """Posed vertices and faces of the licensed SMPL model in ``model_path``, through ``smplx``."""

    def __init__(self, model_path: str, num_shape: int):
        try:
            import smplx
        except ImportError:
            raise VitaeError("model_path needs the package smplx: run `pip install 'vitae-perspective[smpl]'` "
                             "(or leave model_path out to use the shipped mannequin)") from None
        self.model = smplx.create(model_path, model_type="smpl", num_betas=num_shape)
        self.faces = np.asarray(self.model.faces, dtype=np.int64)
        self.num_shape = num_shape

    def vertices(self, shape: np.ndarray, arm_angles: np.ndarray) -> np.ndarray:
        body_pose = torch.zeros(1, 23, 3)
        for joint, angle in zip(ARM_JOINTS, arm_angles):
            body_pose[0, joint - 1, 2] = float(angle)
        with torch.no_grad():
            out = self.model(betas=torch.as_tensor(shape, dtype=torch.float32)[None], body_pose=body_pose.reshape(1, -1))
        return out.vertices[0].double().numpy()


class BodiesData(GroundTruthData):
    name = "bodies"
    deterministic_render = True  # the image is a function of the factors alone

    def __init__(self, *, num_shape: int = 10, height: int = 400, width: int = 200, model_path: str | None = None):
        self.body = SmplBody(model_path, num_shape) if model_path else MannequinBody()
        if not 1 <= num_shape <= self.body.num_shape:
            raise VitaeError(f"bodies: num_shape must be in 1..{self.body.num_shape}, got {num_shape}")
        self.observation_shape = (1, height, width)
        edges = np.array([NormalDist(0, SHAPE_STD).inv_cdf(q / NUM_BINS) for q in range(1, NUM_BINS)])  # equiprobable
        limit = 5 * SHAPE_STD
        self.factors = tuple(Factor(f"beta_{k}", low=-limit, high=limit, edges=edges) for k in range(num_shape)) + (
            Factor("pose", values=np.arange(4.0), categorical=True),)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        shape = np.clip(rng.normal(0.0, SHAPE_STD, size=(n, self.num_factors - 1)), -5 * SHAPE_STD, 5 * SHAPE_STD)
        return np.concatenate([shape, rng.integers(4, size=(n, 1)).astype(np.float64)], axis=1)

    def render(self, factors: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        _, height, width = self.observation_shape
        images = np.stack([
            rasterise(self.body.vertices(row[:-1], POSES[int(row[-1])]), self.body.faces, height, width)
            for row in factors])
        return torch.from_numpy(images).unsqueeze(1)


def rasterise(vertices: np.ndarray, faces: np.ndarray, height: int, width: int) -> np.ndarray:
    """Orthographic z-buffered rendering of a triangle mesh, ``[height, width]`` float32.

    Convention: world x to the right, y up; the camera looks down -z, so the largest z is nearest.
    ``VIEW_HEIGHT`` metres span the image height, ``VIEW_CENTRE`` is its centre. A pixel belongs
    to a triangle when its centre lies inside it (no anti-aliasing).
    """
    ppm = height / VIEW_HEIGHT
    px = (vertices[:, 0] - VIEW_CENTRE[0]) * ppm + width / 2
    py = (VIEW_CENTRE[1] - vertices[:, 1]) * ppm + height / 2
    tri = np.stack([px[faces], py[faces]], axis=-1)  # [F, 3, 2]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    # candidate pixels: the integer pixels whose centres (i + 0.5) fall in each triangle's box
    lo = np.maximum(np.ceil(tri.min(axis=1) - 0.5).astype(np.int64), 0)
    hi = np.minimum(np.floor(tri.max(axis=1) - 0.5).astype(np.int64), [width - 1, height - 1])
    nx, ny = hi[:, 0] - lo[:, 0] + 1, hi[:, 1] - lo[:, 1] + 1
    face = np.nonzero((nx > 0) & (ny > 0) & (np.abs(area) > 1e-12))[0]
    count = nx[face] * ny[face]
    f = np.repeat(face, count)
    k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    col = lo[f, 0] + k % nx[f]
    row = lo[f, 1] + k // nx[f]
    # barycentric coordinates of the pixel centre
    qx, qy = col + 0.5 - tri[f, 0, 0], row + 0.5 - tri[f, 0, 1]
    a = (qx * e2[f, 1] - qy * e2[f, 0]) / area[f]
    b = (e1[f, 0] * qy - e1[f, 1] * qx) / area[f]
    inside = (a >= 0) & (b >= 0) & (a + b <= 1)
    f, col, row, a, b = f[inside], col[inside], row[inside], a[inside], b[inside]
    z = vertices[:, 2][faces[f]]
    depth = z[:, 0] + a * (z[:, 1] - z[:, 0]) + b * (z[:, 2] - z[:, 0])
    # z-buffer: per pixel keep the nearest fragment (largest depth)
    pixel = row * width + col
    order = np.lexsort((-depth, pixel))
    pixel, f = pixel[order], f[order]
    nearest = np.ones(len(pixel), dtype=bool)
    nearest[1:] = pixel[1:] != pixel[:-1]
    pixel, f = pixel[nearest], f[nearest]
    corners = vertices[faces[f]]
    normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    nz = np.abs(normal[:, 2]) / np.maximum(np.linalg.norm(normal, axis=1), 1e-12)
    image = np.zeros(height * width, dtype=np.float32)
    image[pixel] = 0.3 + 0.7 * nz
    return image.reshape(height, width)


def ground_truth(root=None, *, num_shape: int = 10, height: int = 400, width: int = 200, model_path: str | None = None,
                 n_train=None, n_test=None, seed=None, cache=None) -> BodiesData:
    """The generator behind ``load`` (the split options are accepted and not needed)."""
    return BodiesData(num_shape=num_shape, height=height, width=width, model_path=model_path)


def load(root=None, *, n_train: int = 2000, n_test: int = 500, seed: int = 0, num_shape: int = 10,
         height: int = 400, width: int = 200, model_path: str | None = None, cache: bool = True) -> Dataset:
    """Train and test splits of rendered bodies; ``labels`` are the pose.

    About 20 images a second on one core with the mannequin, so the default 2,500 take about two
    minutes the first time; they are cached on disk (8-bit) keyed by their parameters.
    """
    if root:
        raise VitaeError("the bodies data set is generated, it reads no data_root; leave data_root out")
    data = BodiesData(num_shape=num_shape, height=height, width=width, model_path=model_path)
    params = dict(version=RENDER_VERSION, n_train=n_train, n_test=n_test, seed=seed, num_shape=num_shape,
                  height=height, width=width, model_path=str(model_path))
    path = cache_path("bodies", params)
    if cache and path.is_file():
        with np.load(path) as stored:
            splits = [Split(torch.from_numpy(stored[f"{s}_images"].astype(np.float32) / 255),
                            torch.from_numpy(stored[f"{s}_labels"]), torch.from_numpy(stored[f"{s}_factors"]))
                      for s in ("train", "test")]
        return to_dataset(data, *splits)
    rng_train, rng_test = split_seeds(seed)
    pose = data.num_factors - 1
    train, test = generate(data, n_train, rng_train, label=pose), generate(data, n_test, rng_test, label=pose)
    # cache 8-bit pixels and serve those same rounded values now, so a run reads the same data either way
    for split in (train, test):
        split.images = torch.round(split.images * 255) / 255
    if cache:
        save_atomically(path, **{f"{s}_{k}": v for s, split in (("train", train), ("test", test))
                                 for k, v in (("images", np.round(split.images.numpy() * 255).astype(np.uint8)),
                                              ("labels", split.labels.numpy()), ("factors", split.factors.numpy()))})
    return to_dataset(data, train, test)
