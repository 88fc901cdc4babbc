"""Trained models shipped inside the package: ``load("mnist_cvitae")`` in Python, and
``pretrained:NAME`` wherever the command line takes a run folder.

Each model is a folder ``vitae/pretrained/NAME/`` written by ``scripts/make_pretrained.py``:

* ``weights.pt``: one dict of tensors and plain values (read with ``torch.load(weights_only=True)``):
  ``format`` (``FORMAT``), ``format_version``, ``model``, ``architecture``, ``image_shape``,
  ``latent_dims`` and ``state_dict`` (the parameters in float16, to keep the package small; they
  are loaded back as float32, and the shipped metrics are those of the rounded model);
* ``config.json``: the run's configuration; ``metrics.json``: ``vitae evaluate``'s numbers;
  ``log.csv``: the training log; ``info.json``: the command, commit, vitae and torch versions and
  training time that made it.

Loading checks the file: weights only, the format version this vitae reads, and the architecture
of ``config.json`` (model, architecture, image shape, latent sizes and every parameter's shape).
A file that does not fit is a one-line ``VitaeError``.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import torch

from vitae import config as config_module
from vitae import files
from vitae.errors import VitaeError

FORMAT = "vitae-pretrained"
FORMAT_VERSION = 1
PREFIX = "pretrained:"
WEIGHTS = "weights.pt"
ROOT = Path(__file__).parent
REMEDY = "reinstall vitae, or regenerate it with `python scripts/make_pretrained.py`"


def names() -> list[str]:
    """The shipped models' names."""
    return sorted(p.name for p in ROOT.iterdir() if (p / WEIGHTS).is_file())


def folder(name: str) -> Path:
    """The folder of the shipped model ``name``; an unknown name is a one-line error."""
    if not isinstance(name, str) or name not in names():
        raise VitaeError(f"unknown pretrained model {name!r}; choose one of: {', '.join(names()) or 'none installed'}")
    return ROOT / name


def is_pretrained(run: str | Path) -> bool:
    """Whether a run argument names a shipped model (``pretrained:NAME``)."""
    return isinstance(run, str) and run.startswith(PREFIX)


def describe(model: torch.nn.Module, config) -> dict:
    """What ``weights.pt`` records about the architecture, beside the parameters."""
    return {"model": config.model, "architecture": config.architecture, "image_shape": list(model.image_shape),
            "latent_dims": dict(model.latent_dims)}


def save(path: Path, model: torch.nn.Module, config) -> None:
    """Write ``model`` (built from ``config``) as a pretrained ``weights.pt`` at ``path``."""
    state = {k: v.detach().cpu().to(torch.float16) if v.is_floating_point() else v.detach().cpu()
             for k, v in model.state_dict().items()}
    files.replace(Path(path), lambda f: torch.save(
        {"format": FORMAT, "format_version": FORMAT_VERSION, **describe(model, config), "state_dict": state}, f))


def read_weights(path: Path) -> dict:
    """``weights.pt`` as a dict, checked to be weights only and of this format version."""
    if not path.is_file():
        raise VitaeError(f"pretrained weights {path} are missing; {REMEDY}")
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise VitaeError(f"pretrained weights {path} hold objects other than tensors and plain values and are not "
                             f"loaded; {REMEDY}") from None
        raise VitaeError(f"pretrained weights {path} are truncated or corrupt; {REMEDY}") from None
    except Exception:  # noqa: BLE001 (random bytes reach torch's unpickler in many ways)
        raise VitaeError(f"pretrained weights {path} are truncated or corrupt; {REMEDY}") from None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT:
        raise VitaeError(f"{path} is not a vitae pretrained model file (no format '{FORMAT}'); {REMEDY}")
    version = stored.get("format_version")
    if version != FORMAT_VERSION:
        raise VitaeError(f"pretrained weights {path} are format version {version!r}, this vitae reads version "
                         f"{FORMAT_VERSION}; {REMEDY}")
    return stored


def _read_json(path: Path) -> dict:
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VitaeError(f"cannot read {path} ({exc.__class__.__name__}); {REMEDY}") from None
    if not isinstance(values, dict):
        raise VitaeError(f"{path} is not a JSON object; {REMEDY}")
    return values


def open_model(name: str, device: str = "cpu"):
    """``(config, model, state)`` of the shipped model ``name``, the model in eval mode on
    ``device``; ``state`` holds ``epoch`` and ``image_shape`` as a run's checkpoint does."""
    from vitae.training.trainer import build_model, resolve_device

    where = folder(name)
    config = config_module.load_json(where / "config.json")
    stored = read_weights(where / WEIGHTS)
    try:
        model = build_model(config, stored["image_shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise VitaeError(f"pretrained weights {where / WEIGHTS} describe no model that config.json builds ({exc}); "
                         f"{REMEDY}") from None
    expected = describe(model, config)
    differ = [key for key, value in expected.items() if stored.get(key) != value]
    if differ:
        key = differ[0]
        raise VitaeError(f"pretrained weights {where / WEIGHTS} are for {key} {stored.get(key)!r}, config.json "
                         f"builds {expected[key]!r}; {REMEDY}")
    state = stored.get("state_dict")
    if not isinstance(state, dict):
        raise VitaeError(f"pretrained weights {where / WEIGHTS} hold no state_dict; {REMEDY}")
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except (RuntimeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise VitaeError(f"pretrained weights {where / WEIGHTS} do not fit the architecture of config.json "
                         f"({first}); {REMEDY}") from None
    info = _read_json(where / "info.json") if (where / "info.json").is_file() else {}
    epoch = info.get("epochs_trained", config.epochs)
    return config, model.to(resolve_device(device)).eval(), {"epoch": epoch, "image_shape": stored["image_shape"]}


def load(name: str, device: str = "cpu"):
    """The shipped model ``name`` (see ``names()``), a ``GenerativeModel`` in eval mode."""
    return open_model(name, device)[1]


def metrics(name: str) -> dict:
    """The shipped model's ``metrics.json``."""
    return _read_json(folder(name) / "metrics.json")


def info(name: str) -> dict:
    """How the shipped model was made: command, commit, versions, training time."""
    return _read_json(folder(name) / "info.json")


def load_run(run: str | Path, device: str | None = None):
    """``(config, model, state, log)`` of a run folder or of ``pretrained:NAME``: the one place
    the command line resolves a run argument. ``log`` is the training log's path (or None)."""
    if is_pretrained(run):
        name = run[len(PREFIX):]
        config, model, state = open_model(name, device or "cpu")
        return config, model, state, folder(name) / "log.csv"
    from vitae.training.trainer import Run, load_trained

    found = Run(Path(run))
    config, model, state = load_trained(found, device)
    return config, model, state, found.log
