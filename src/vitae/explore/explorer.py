"""What the explorer page asks of a trained model, with no HTTP in it: decode codes to a PNG
(for VITAE also the canonical image ``xbar`` and the warp's deformed grid), encode a test image or
an uploaded one, and traverse a known factor.

Convention: images travel as PNG bytes, 8 bits per channel, ``round(255 * mean)`` of the
likelihood's mean image. Codes are ``{group: [d floats]}`` (``z_A``, ``z_P`` or ``z``), each value
finite and within ``±CODE_LIMIT``. The grid is ``GRID_LINES`` canonical lines per direction,
``GRID_POINTS`` points each, drawn over the decoded image where ``T_gamma^{-1}`` puts them: the
decoded image shows ``xbar`` at ``T_gamma(p)`` at each of its points ``p``, so the grid of the
canonical frame lands at ``T_gamma^{-1}`` of it, following the content. Grid points are in pixel
units of the image (0 at its left/top edge, ``W``/``H`` at the right/bottom edge).
"""

from __future__ import annotations

import io
import math
import threading

import numpy as np
import torch
from PIL import Image

from vitae.errors import VitaeError

CODE_LIMIT = 10.0
GRID_LINES = 7
GRID_POINTS = 15
TRAVERSAL_STEPS = 10
MAX_UPLOAD_PIXELS = 4096 * 4096  # refused before decoding: a small file can hold a huge image


def png(image: torch.Tensor) -> bytes:
    """One image ``[C, H, W]`` with values in [0, 1] as 8-bit PNG bytes (grey for C = 1)."""
    array = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    buffer = io.BytesIO()
    mode = "L" if array.shape[0] == 1 else "RGB"
    Image.fromarray(array[0] if mode == "L" else array.transpose(1, 2, 0), mode).save(buffer, "PNG")
    return buffer.getvalue()


def read_image(data: bytes, shape: tuple[int, int, int], resize: bool = False) -> torch.Tensor:
    """Uploaded PNG or JPEG bytes as a tensor ``[1, C, H, W]`` in [0, 1] for a model of ``shape``.
    Another size is refused naming the size it needs, unless ``resize`` (then it is resampled)."""
    channels, height, width = shape
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in ("PNG", "JPEG"):
            raise VitaeError(f"the upload is a {image.format} image; send a PNG or JPEG")
        if image.width * image.height > MAX_UPLOAD_PIXELS:
            raise VitaeError(f"the upload is {image.width}x{image.height} pixels, more than this explorer decodes; "
                             f"send a {width}x{height} image")
        image.load()
    except VitaeError:
        raise
    except Exception:  # noqa: BLE001 (PIL raises many kinds of errors on bad bytes)
        raise VitaeError("the upload is not a readable PNG or JPEG image") from None
    if image.size != (width, height):
        if not resize:
            raise VitaeError(f"the upload is {image.width}x{image.height} pixels; this model takes {width}x{height} "
                             "(resize it, or tick 'resize to fit')")
        image = image.resize((width, height), Image.LANCZOS)
    image = image.convert("L" if channels == 1 else "RGB")
    array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).unsqueeze(0) if channels == 1 else torch.from_numpy(array).permute(2, 0, 1)
    return tensor.unsqueeze(0).contiguous()


class Explorer:
    """A trained model with its test images (and, for data with known factors, their factors and
    the data's ``GroundTruthData``), answering the page's questions. Thread-safe (one lock)."""

    def __init__(self, model, images: torch.Tensor, *, name: str = "", truth=None, factors: np.ndarray | None = None):
        if images.dim() != 4 or tuple(images.shape[1:]) != tuple(model.image_shape):
            raise ValueError(f"images must be [N, {', '.join(map(str, model.image_shape))}], got {list(images.shape)}")
        self.model, self.images, self.name = model.eval(), images.cpu(), name
        self.truth, self.factors = truth, factors
        self.device = next(model.parameters()).device
        self.lock = threading.Lock()

    @property
    def is_vitae(self) -> bool:
        return {"z_A", "z_P"} <= set(self.model.latent_dims)

    def info(self) -> dict:
        """What the page builds itself from: the latents, the image size, the test images, the factors."""
        channels, height, width = self.model.image_shape
        factors = []
        if self.truth is not None and self.factors is not None:
            factors = [f.name for f in self.truth.factors]
        return {"name": self.name, "model": type(self.model).__name__, "latent_dims": dict(self.model.latent_dims),
                "image_shape": [channels, height, width], "vitae": self.is_vitae, "code_range": 3.0,
                "tests": len(self.images), "factors": factors}

    def test_png(self, index: int) -> bytes:
        return png(self.images[self._index(index)])

    def _index(self, index) -> int:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.images):
            raise VitaeError(f"test image index must be a whole number from 0 to {len(self.images) - 1}, got {index!r}")
        return index

    def check_codes(self, codes) -> dict[str, torch.Tensor]:
        """``{group: [d floats]}`` as tensors ``[1, d]``; anything else is a one-line error."""
        dims = self.model.latent_dims
        if not isinstance(codes, dict) or set(codes) != set(dims):
            got = sorted(codes) if isinstance(codes, dict) else type(codes).__name__
            raise VitaeError(f"codes must give exactly the groups {sorted(dims)}, got {got}")
        out = {}
        for group, dim in dims.items():
            values = codes[group]
            if (not isinstance(values, list) or len(values) != dim
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
                raise VitaeError(f"codes.{group} must be a list of {dim} numbers")
            if not all(math.isfinite(v) and abs(v) <= CODE_LIMIT for v in values):
                raise VitaeError(f"codes.{group} must be finite numbers within ±{CODE_LIMIT:g}, got {values}")
            out[group] = torch.tensor([values], dtype=torch.float32, device=self.device)
        return out

    @torch.no_grad()
    def decode(self, codes) -> dict:
        """``{"image": png}``, and for VITAE ``"canonical"`` (``xbar``, png) and ``"grid"``."""
        z = self.check_codes(codes)
        with self.lock:
            out = {"image": png(self.model.decode(z)[0])}
            if self.is_vitae:
                out["canonical"] = png(self.model.likelihood.mean(self.model.canonical(z["z_A"]))[0])
                out["grid"] = self.grid(z["z_P"])
        return out

    def grid(self, z_p: torch.Tensor) -> list[list[list[float]]]:
        """The canonical frame's grid lines where the warp of ``z_P`` puts them (see the module)."""
        model = self.model
        gamma = model.perspective_decoder(z_p)
        ticks = torch.linspace(-1, 1, GRID_LINES)
        along = torch.linspace(-1, 1, GRID_POINTS)
        lines = [torch.stack([t.expand_as(along), along], 1) for t in ticks]  # vertical lines
        lines += [torch.stack([along, t.expand_as(along)], 1) for t in ticks]  # horizontal lines
        points = torch.cat(lines).unsqueeze(0).to(gamma)
        moved = model.transform.transform_points(points, gamma, inverse=True)[0].cpu()
        _, height, width = model.image_shape
        pixels = torch.stack([(moved[:, 0] + 1) * width / 2, (moved[:, 1] + 1) * height / 2], 1)
        return [[[round(x, 3), round(y, 3)] for x, y in line] for line in pixels.view(len(lines), GRID_POINTS, 2).tolist()]

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> dict:
        """For one image ``[1, C, H, W]``: itself, its reconstruction (pngs) and its posterior means."""
        with self.lock:
            x = x.to(self.device)
            posteriors = self.model.encode(x)
            codes = {group: [round(float(v), 4) for v in posteriors[group].mean[0]] for group in self.model.latent_dims}
            recon = self.model.reconstruct(x)[0]
        return {"input": png(x[0]), "recon": png(recon), "codes": codes}

    def encode_test(self, index) -> dict:
        return self.encode(self.images[self._index(index)].unsqueeze(0))

    def encode_upload(self, data: bytes, resize: bool = False) -> dict:
        return self.encode(read_image(data, tuple(self.model.image_shape), resize))

    @torch.no_grad()
    def traverse(self, factor, index) -> dict:
        """Test image ``index`` with one known ``factor`` moved across its range: the rendered
        images, their reconstructions and the posterior means of every latent at each step."""
        if self.truth is None or self.factors is None:
            raise VitaeError("this model's data has no known factors to traverse")
        names = [f.name for f in self.truth.factors]
        if factor not in names:
            raise VitaeError(f"unknown factor {factor!r}; choose one of: {', '.join(names)}")
        k = names.index(factor)
        spec = self.truth.factors[k]
        if spec.values is not None:
            picks = np.unique(np.linspace(0, len(spec.values) - 1, TRAVERSAL_STEPS).round().astype(int))
            values = spec.values[picks]
        else:
            values = np.linspace(spec.edges[0], spec.edges[-1], TRAVERSAL_STEPS)
        rows = np.repeat(self.factors[self._index(index)][None], len(values), axis=0)
        rows[:, k] = values
        x = self.truth.sample_observations_from_factors(rows, np.random.default_rng(0)).to(self.device)
        with self.lock:
            posteriors = self.model.encode(x)
            recon = self.model.reconstruct(x)
        codes = {group: posteriors[group].mean.cpu().tolist() for group in self.model.latent_dims}
        return {"factor": factor, "values": [float(v) for v in values], "images": [png(i) for i in x],
                "recons": [png(r) for r in recon], "codes": codes}


TEST_IMAGES = 24


def for_run(config, model, name: str = "", n: int = TEST_IMAGES) -> Explorer:
    """The explorer of a trained model with ``n`` test images: for data with known factors drawn
    (seeded by the config's seed) and rendered from them, else the first of the test split."""
    from vitae import data as data_module

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number of at least 1, got {n!r}")
    truth = data_module.ground_truth(config.data, config.data_root or None, **config.data_options)
    if truth is not None and tuple(truth.observation_shape) == tuple(model.image_shape):
        factors, images = truth.sample(n, np.random.default_rng(config.seed))
        return Explorer(model, images, name=name, truth=truth, factors=factors)
    images = data_module.create(config.data, config.data_root or None, **config.data_options).test.images[:n]
    return Explorer(model, images, name=name)
