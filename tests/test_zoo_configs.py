"""Every shipped configuration of the paper's three settings names a model, architecture,
likelihood and transformation that build together for its data's image shape."""

from pathlib import Path

import pytest

from vitae import config, models

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
IMAGE_SHAPES = {"mnist": (1, 28, 28), "sprites": (1, 64, 64), "bodies": (1, 400, 200), "faces": (3, 128, 128)}


@pytest.mark.parametrize("setting", sorted(IMAGE_SHAPES))
def test_every_model_has_a_config_for_every_setting(setting):
    assert {f"{setting}_{name}.toml" for name in models.REGISTRY} <= {p.name for p in CONFIGS.glob(f"{setting}_*.toml")}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.stem)
def test_config_builds_its_model(path):
    cfg = config.load(path)
    model = models.create(cfg.model, IMAGE_SHAPES[cfg.data], **cfg.model_kwargs())
    assert type(model) is models.REGISTRY[cfg.model]
    if cfg.data in ("bodies", "faces"):  # the supplement's SMPL and CelebA training settings
        assert (cfg.batch_size, cfg.epochs, cfg.warmup, cfg.likelihood) == (256, 5000, 2500, "gaussian")
        assert model.likelihood.variance == 0.1 and not model.likelihood.learned
