"""The authors' MNIST protocol: digits under torchvision's ``RandomAffine(degrees=20,
translate=(0.1, 0.1))``, drawn afresh every time an image is loaded (SkafteNicki/unsuper,
``disentagelment.py``; protocol in docs/mnist_protocol.md).

One warp is a rotation by ``angle`` degrees about the image centre, counter-clockwise as displayed,
then a shift by ``(shift_x, shift_y)`` whole pixels, right and down: the output pixel at ``q`` shows
the input at ``R(angle)^{-1} (q - shift)``, nearest-neighbour, zeros outside, as torchvision's
defaults. Parameters are drawn as torchvision draws them: ``angle ~ U(-degrees, degrees)``,
``shift_x = round(U(-a W, a W))`` and ``shift_y = round(U(-b H, b H))`` for ``translate = (a, b)``
(so 28 x 28 digits shift by -3 to 3 pixels, the ends half as likely as the others).

* ``RandomAffine``: draws the parameters of a whole epoch at once from a ``torch.Generator`` (the
  trainer's data-order generator, so resume and several processes see the same warps) and warps a
  batch with its rows.
* ``RandomAffineMnist``: the known factors for the metrics: ``digit`` (categorical), ``rotation``
  (degrees, 10 equal-width bins), ``shift_x`` and ``shift_y`` (the whole pixels themselves).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from vitae.data.base import Split
from vitae.data.ground_truth_data import Factor, GroundTruthData
from vitae.errors import VitaeError

DEFAULTS = {"degrees": 20.0, "translate": [0.1, 0.1]}  # the authors' disentanglement experiment
NUM_BINS = 10
TEST_SEED = 0  # the test split's one warp per image: the same for every run and seed


def check_options(options) -> dict:
    """``{degrees, translate}`` from a ``random_affine`` data option, each checked."""
    if not isinstance(options, dict):
        raise VitaeError(f"data_options.random_affine must be a table such as {{degrees = 20, translate = [0.1, 0.1]}}, "
                         f"got {options!r}")
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise VitaeError(f"data_options.random_affine: unknown keys {sorted(unknown)}; it takes degrees and translate")
    values = {**DEFAULTS, **options}
    degrees = values["degrees"]
    if isinstance(degrees, bool) or not isinstance(degrees, (int, float)) or not 0 <= degrees <= 180:
        raise VitaeError(f"data_options.random_affine.degrees must be a number in [0, 180], got {degrees!r}")
    translate = values["translate"]
    if (not isinstance(translate, (list, tuple)) or len(translate) != 2
            or any(isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1 for t in translate)):
        raise VitaeError(f"data_options.random_affine.translate must be two fractions in [0, 1], got {translate!r}")
    return {"degrees": float(degrees), "translate": [float(t) for t in translate]}


class RandomAffine:
    """torchvision's ``RandomAffine(degrees, translate)`` on batches, with its parameters known."""

    def __init__(self, image_shape, degrees: float = 20.0, translate=(0.1, 0.1)):
        self.image_shape = tuple(image_shape)
        self.degrees = float(degrees)
        height, width = self.image_shape[1:]
        self.max_shift = (translate[0] * width, translate[1] * height)

    def draw(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[n, 3]`` float64 parameters ``(angle, shift_x, shift_y)``: degrees and whole pixels."""
        u = torch.rand(n, 3, generator=generator, dtype=torch.float64) * 2 - 1
        angle = u[:, 0] * self.degrees
        shifts = torch.round(u[:, 1:] * torch.tensor(self.max_shift, dtype=torch.float64))
        return torch.cat([angle[:, None], shifts], dim=1)

    def warp(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``images [B, C, H, W]`` under the warps ``params [B, 3]`` (see the module)."""
        if images.dim() != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise VitaeError(f"random_affine: images must be [B, {', '.join(map(str, self.image_shape))}], "
                             f"got {list(images.shape)}")
        if params.shape != (images.shape[0], 3):
            raise VitaeError(f"random_affine: params must be [{images.shape[0]}, 3], got {list(params.shape)}")
        height, width = self.image_shape[1:]
        p = params.to(device=images.device, dtype=torch.float64)
        a = p[:, 0] * (math.pi / 180)
        cos, sin = torch.cos(a), torch.sin(a)
        # normalised frame (align_corners=False): pixel i's centre at (2 i + 1) / W - 1, the image
        # centre at 0; a whole-pixel shift s is 2 s / W there. In image coordinates (y down) a
        # counter-clockwise rotation as displayed is [[cos, sin], [-sin, cos]]; its inverse is the
        # transpose, and the sampler maps output q to input R^T (q - t).
        tx, ty = 2 * p[:, 1] / width, 2 * p[:, 2] / height
        inverse = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
        offset = -(inverse @ torch.stack([tx, ty], 1)[:, :, None])
        theta = torch.cat([inverse, offset], dim=2).to(images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)

    def warp_split(self, split: Split, generator: torch.Generator) -> Split:
        """Every image of ``split`` under one warp (a fixed test set); factors ``[digit, params]``."""
        params = self.draw(len(split), generator)
        images = torch.cat([self.warp(x, p) for x, p in zip(split.images.split(5000), params.split(5000))])
        factors = torch.cat([split.labels[:, None].double(), params], dim=1)
        return Split(images, split.labels, factors)


class RandomAffineMnist(GroundTruthData):
    """MNIST test digits under ``RandomAffine``: the metrics' factors of the authors' protocol."""

    name = "mnist"
    observation_shape = (1, 28, 28)

    def __init__(self, digits: Split, degrees: float = 20.0, translate=(0.1, 0.1)):
        if digits.labels is None:
            raise VitaeError("the random_affine protocol needs MNIST labels (the digit is a factor)")
        self.augment = RandomAffine(self.observation_shape, degrees, translate)
        self.images = digits.images
        self.by_class = [torch.nonzero(digits.labels == k).flatten().numpy() for k in range(10)]
        shifts = [np.arange(-round(m), round(m) + 1, dtype=np.float64) for m in self.augment.max_shift]
        edges = np.linspace(-degrees, degrees, NUM_BINS + 1)[1:-1]
        self.factors = (
            Factor("digit", values=np.arange(10.0), categorical=True),
            Factor("rotation", low=-degrees, high=degrees, edges=edges),
            Factor("shift_x", values=shifts[0]),
            Factor("shift_y", values=shifts[1]),
        )

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
        params = self.augment.draw(n, generator).numpy()
        return np.concatenate([rng.integers(10, size=n).astype(np.float64)[:, None], params], axis=1)

    def render(self, factors: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        index = np.array([rng.choice(self.by_class[int(d)]) for d in factors[:, 0]], dtype=np.int64)
        return self.augment.warp(self.images[index], torch.from_numpy(factors[:, 1:]))
