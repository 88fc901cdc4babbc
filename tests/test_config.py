"""Configuration files and KEY=VALUE overrides."""

import pytest

from vitae import config
from vitae.errors import VitaeError


def test_overrides_are_parsed_as_toml(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('model = "vae"\nepochs = 10\n')
    c = config.load(path, ["epochs=3", "lr=1e-3", "transform=affine", 'transform_options={a = 1}', "beta=4"])
    assert (c.model, c.epochs, c.lr, c.transform, c.transform_options, c.beta) == ("vae", 3, 1e-3, "affine", {"a": 1}, 4.0)


def test_json_round_trip(tmp_path):
    c = config.load(None, ["model=uvitae", "seed=3"])
    config.save_json(c, tmp_path / "config.json")
    assert config.load_json(tmp_path / "config.json") == c


def test_every_shipped_config_loads():
    from pathlib import Path

    files = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.toml"))
    assert files
    for path in files:
        config.load(path)


@pytest.mark.parametrize("override, message", [
    ("epochz=3", "unknown config key 'epochz'"),
    ("epochs=three", "'epochs' must be a int"),
    ("epochs=0", "'epochs' must be at least 1"),
    ("lr=-1", "'lr' must be a finite positive number"),
    ("noequals", "is not KEY=VALUE"),
])
def test_bad_overrides(override, message):
    with pytest.raises(VitaeError, match=message):
        config.load(None, [override])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(VitaeError, match="does not exist"):
        config.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("model = \n")
    with pytest.raises(VitaeError, match="not valid TOML"):
        config.load(bad)
