"""Help a newcomer can read: every config key documented in `vitae train --help`, `vitae config
show` writing TOML that reads back, and the scales' durations told alike in the help and README."""

import dataclasses
import math
from pathlib import Path
import re
import subprocess
import sys
import tomllib

import pytest

from vitae import config as config_module
from vitae import config_help, toml_write
from vitae.cli import main
from vitae.config import Config

ROOT = Path(__file__).parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vitae", *args], capture_output=True, text=True)


def test_every_config_key_has_one_line_of_help():
    names = [f.name for f in dataclasses.fields(Config)]
    missing = [name for name in names if not config_help.HELP.get(name, "").strip()]
    assert not missing, f"add a line to vitae.config_help.HELP for: {', '.join(missing)}"
    assert set(config_help.HELP) == set(names), "HELP names keys that Config does not have"
    assert all("\n" not in text for text in config_help.HELP.values())


def test_train_help_shows_every_key_with_its_default_and_meaning():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    defaults = Config()
    for field in dataclasses.fields(Config):
        (index,) = [i for i, line in enumerate(lines) if line.startswith(f"  {field.name} = ")]
        shown, kind = re.fullmatch(rf"  {field.name} = (.*)  \((.+)\)", lines[index]).groups()
        default = getattr(defaults, field.name)
        assert shown == config_help.UNSET if default is None else tomllib.loads(f"v = {shown}")["v"] == default
        assert default is None or type(default).__name__ in kind
        assert lines[index + 1].strip() == config_help.HELP[field.name]


@pytest.mark.parametrize("key, registry", [
    ("model", "vitae.models:REGISTRY"), ("transform", "vitae.transforms:REGISTRY"),
    ("data", "vitae.data:REGISTRY"), ("architecture", "vitae.models.networks:ARCHITECTURES"),
    ("likelihood", "vitae.models.likelihoods:REGISTRY"),
])
def test_help_names_every_shipped_choice(key, registry):
    import importlib

    module, name = registry.split(":")
    choices = getattr(importlib.import_module(module), name)
    words = set(re.findall(r"\w+", config_help.HELP[key]))
    assert set(choices) <= words, f"HELP[{key!r}] lacks {sorted(set(choices) - words)}"


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_show_reads_back_as_the_same_config(path, tmp_path, capsys):
    overrides = ["epochs=3", "lr=1e-05", 'transform_options={tessellation=[2, 4], zero_boundary=true}',
                 'data_root=C:\\data "mine"\tx']
    assert main(["config", "show", str(path), *overrides]) == 0
    shown = capsys.readouterr().out
    written = tmp_path / "shown.toml"
    written.write_text(shown)
    assert config_module.load(written) == config_module.load(path, overrides)
    assert main(["config", "show", str(written)]) == 0  # showing the shown file changes only the header
    again = capsys.readouterr().out
    assert again.split("\n", 2)[2] == shown.split("\n", 2)[2]


def test_config_show_of_a_run_folder_and_of_the_defaults(tmp_path, capsys):
    config = config_module.load(CONFIGS[0], ["metric_options={protocols={pose=[\"pose\"]}}"])
    config_module.save_json(config, tmp_path / "config.json")
    assert main(["config", "show", str(tmp_path), "seed=7"]) == 0
    assert tomllib.loads(capsys.readouterr().out) == {**config.to_dict(), "seed": 7}
    assert main(["config", "show", "epochs=5"]) == 0
    assert tomllib.loads(capsys.readouterr().out) == {**Config().to_dict(), "epochs": 5}


@pytest.mark.parametrize("args, message", [
    (["config", "show", str(ROOT / "configs" / "mnist_vae.toml"), "batchsize=64"], "unknown config key 'batchsize' (did you mean 'batch_size'?)"),
    (["config", "show", "missing.toml"], "config file missing.toml does not exist"),
    (["config", "show", "epochs=0"], "config key 'epochs' must be at least 1"),
])
def test_config_show_bad_input_is_one_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("vitae: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1


def test_toml_values_read_back_equal():
    values = {"text": 'a "quoted" \\ back\nslash\t\x01\x7f é', "yes": True, "no": False, "n": -3,
              "small": 1e-05, "big": 1e16, "third": 1 / 3, "inf": math.inf, "minus_inf": -math.inf,
              "nested": {"odd key": [1, 2.5, "x"], "deeper": {"list": [[1, 2], []], "empty": {}}},
              "tables": [{"a": 1}, {"b": "c"}]}
    text = "\n".join(f"{toml_write.key(k)} = {toml_write.value(v)}" for k, v in values.items())
    assert tomllib.loads(text) == values
    assert math.isnan(tomllib.loads(f"v = {toml_write.value(math.nan)}")["v"])


def test_toml_value_refuses_what_toml_cannot_hold():
    with pytest.raises(ValueError, match="value: TOML has no type for NoneType"):
        toml_write.value(None)
    with pytest.raises(ValueError, match="key: a TOML key must be a string"):
        toml_write.value({1: 2})


def scale_duration(name):
    from vitae.reproduce import load_scale

    return load_scale(name)["description"].rsplit("; ", 1)[-1]


@pytest.mark.parametrize("name", ["quick", "medium", "long", "paper"])
def test_scales_durations_agree_in_help_and_readme(name):
    from vitae.reproduce import SCALES, load_scale

    assert name in SCALES
    description = load_scale(name)["description"]
    help_text = " ".join(run_cli("reproduce", "--help").stdout.split())
    assert f"{name} ({description})" in help_text
    readme = " ".join((ROOT / "README.md").read_text().split())
    (bullet,) = re.findall(r"\* \*\*Scales\*\* .*?(?=\* \*\*)", readme)
    entry = re.search(rf"`{name}` \((.*?)\)(,|\.| or) ", bullet)
    assert entry and scale_duration(name) in entry.group(1), f"README's `{name}` lacks '{scale_duration(name)}'"


def test_reproduce_help_names_every_shipped_scale():
    from vitae.reproduce import SCALES

    help_text = " ".join(run_cli("reproduce", "--help").stdout.split())
    assert all(f"{name} (" in help_text for name in SCALES)


def test_readme_python_snippet_runs_and_says_what_is_exact():
    """The README's snippet runs as written; its comments hold: the point map's inverse is exact,
    the twice-resampled image is not the original."""
    readme = (ROOT / "README.md").read_text()
    (snippet,) = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "transforms.create" in block]
    scope = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    assert scope["again"].abs().max() < 1e-6
    assert (scope["back"] - scope["images"]).abs().max() > 0.01
