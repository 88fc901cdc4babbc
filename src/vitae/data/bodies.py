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

Shape: as in SMPL, where for a fixed pose the posed vertices are linear in the shape coefficients
(linear shape blend shapes, joints regressed linearly from them, rigid rotations), every image is
``V0[pose] + sum_k beta_k D_k[pose]``: the body at ``beta = 0`` and its change per unit of each
coefficient, taken from the body model once per pose when the generator is made (44 evaluations).
For SMPL this is the model itself. The mannequin's own calibration is not quite linear: its bodies
depart from the basis by under a millimetre for typical shapes and by up to 8 mm (about a pixel at
400 x 200) with every coefficient at 5 standard deviations, which moves under 1% of a body's
silhouette pixels (``tests/data/test_bodies.py`` bounds it; ``python benchmarks/bodies_render.py
--exact`` prints both renderers' rates). The basis poses a batch of bodies with one matrix product instead
of one model call each; ``exact_shapes=True`` calls the body model for every image instead.

Image: an orthographic view from the front (camera on +z), the body's left on the image's right,
a fixed window 2.8 m high centred 0.45 m below the pelvis (a fixed scale, so the shape's effect on
size shows; the largest bodies' hands may touch the border). Pixels of the body are shaded
``0.3 + 0.7 |n_z|`` by the normal of the nearest triangle (a z-buffer, ``vitae.data.rasterise``,
a batch at a time), the background is 0. Default 400x200 (height x width) as in the paper;
float32 images take 320 KB each.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from statistics import NormalDist

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from vitae.data.base import Dataset, Split
from vitae.data.ground_truth_data import Factor, GroundTruthData, cache_path, generate, save_atomically, split_seeds, to_dataset
from vitae.data.rasterise import rasterise
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
RENDER_VERSION = 2  # 2: shapes through the linear basis, batched z-buffer
RENDER_BATCH = 16  # bodies posed and rasterised together (8 was as fast, 32 and 64 slower at 400 x 200: benchmarks/bodies_render.py)
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


class ShapeBasis:
    """The posed vertices of ``body`` as a linear function of the shape, per pose of ``POSES``:
    ``vertices(shape, pose) = V0[pose] + shape @ D[pose]`` with ``V0`` the body at shape 0 and
    ``D_k`` its change for a unit of coefficient ``k`` (exact for SMPL; see the module's note)."""

    def __init__(self, body, num_shape: int):
        eye = np.eye(num_shape)
        self.rest, self.directions = [], []
        for angles in POSES:
            rest = body.vertices(np.zeros(num_shape), angles)
            self.rest.append(rest)
            self.directions.append(np.stack([body.vertices(e, angles) - rest for e in eye]).reshape(num_shape, -1))

    def vertices(self, shape: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """Vertices ``[N, V, 3]`` for shapes ``[N, num_shape]`` and pose indices ``[N]``."""
        out = np.empty((len(shape), *self.rest[0].shape))
        for p in np.unique(pose):
            rows = np.flatnonzero(pose == p)
            out[rows] = self.rest[p] + (shape[rows] @ self.directions[p]).reshape(len(rows), *self.rest[p].shape)
        return out


class BodiesData(GroundTruthData):
    name = "bodies"
    deterministic_render = True  # the image is a function of the factors alone

    def __init__(self, *, num_shape: int = 10, height: int = 400, width: int = 200, model_path: str | None = None,
                 exact_shapes: bool = False):
        self.body = SmplBody(model_path, num_shape) if model_path else MannequinBody()
        if not 1 <= num_shape <= self.body.num_shape:
            raise VitaeError(f"bodies: num_shape must be in 1..{self.body.num_shape}, got {num_shape}")
        if not isinstance(exact_shapes, bool):
            raise VitaeError(f"bodies: exact_shapes must be true or false, got {exact_shapes!r}")
        self.faces = np.asarray(self.body.faces, dtype=np.int64)
        self.basis = None if exact_shapes else ShapeBasis(self.body, num_shape)
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
        parts = np.array_split(factors, max(1, -(-len(factors) // RENDER_BATCH)))

        def draw(part):
            return rasterise(self.vertices(part), self.faces, height, width, view_height=VIEW_HEIGHT,
                             view_centre=VIEW_CENTRE)

        # numpy and torch release the GIL in their loops, so batches render in parallel, one thread
        # each (torch's and the BLAS's own threads would only compete with them)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=max(1, min(threads, len(parts)))) as pool:
                return torch.cat(list(pool.map(draw, parts))).unsqueeze(1)
        finally:
            torch.set_num_threads(threads)

    def vertices(self, factors: np.ndarray) -> np.ndarray:
        """Posed vertices ``[N, V, 3]`` of the bodies with ``factors`` (shape coefficients, then pose)."""
        pose = factors[:, -1].astype(np.int64)
        if self.basis is not None:
            return self.basis.vertices(factors[:, :-1], pose)
        return np.stack([self.body.vertices(row[:-1], POSES[p]) for row, p in zip(factors, pose)])


def ground_truth(root=None, *, num_shape: int = 10, height: int = 400, width: int = 200, model_path: str | None = None,
                 exact_shapes: bool = False, n_train=None, n_test=None, seed=None, cache=None) -> BodiesData:
    """The generator behind ``load`` (the split options are accepted and not needed)."""
    return BodiesData(num_shape=num_shape, height=height, width=width, model_path=model_path, exact_shapes=exact_shapes)


def load(root=None, *, n_train: int = 2000, n_test: int = 500, seed: int = 0, num_shape: int = 10,
         height: int = 400, width: int = 200, model_path: str | None = None, exact_shapes: bool = False,
         cache: bool = True) -> Dataset:
    """Train and test splits of rendered bodies; ``labels`` are the pose.

    Rendered a batch at a time (``python benchmarks/bodies_render.py`` prints the rate) and cached
    on disk (8-bit) keyed by their parameters, so only the first load renders.
    """
    if root:
        raise VitaeError("the bodies data set is generated, it reads no data_root; leave data_root out")
    data = BodiesData(num_shape=num_shape, height=height, width=width, model_path=model_path, exact_shapes=exact_shapes)
    params = dict(version=RENDER_VERSION, n_train=n_train, n_test=n_test, seed=seed, num_shape=num_shape,
                  height=height, width=width, model_path=str(model_path), exact_shapes=exact_shapes)
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
