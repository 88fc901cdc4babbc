"""A run's checkpoint: one dict (model, optimizer, completed epochs, RNG states, config; under
several processes each process's RNG state too, and rank 0 alone writes it) written atomically (a
temporary file in the same folder, flushed, then renamed: ``vitae.files``), so a run killed while
saving, or a full disk, keeps its previous checkpoint. It loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from vitae import files
from vitae.errors import VitaeError

FILENAME = "checkpoint.pt"


def save(state: dict, path: Path) -> None:
    files.replace(path, lambda f: torch.save(state, f))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load(path: Path, map_location="cpu") -> dict:
    if not path.is_file():
        raise VitaeError(f"no checkpoint at {path}; train the run first (vitae train ... --out {path.parent})")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():  # never pass on torch's advice to load it unsafely
            raise VitaeError(f"checkpoint {path} holds objects other than tensors and plain values, so it was not "
                             "written by vitae train and is not loaded; retrain, or restore it from a copy") from None
        raise VitaeError(f"checkpoint {path} is truncated or corrupt ({_first_line(exc)}); retrain, or restore it "
                         "from a copy") from None
    except Exception as exc:  # noqa: BLE001 (random bytes reach torch's unpickler in many ways)
        raise VitaeError(f"checkpoint {path} is truncated or corrupt ({_first_line(exc)}); retrain, or restore it "
                         "from a copy") from None
    missing = {"model", "optimizer", "epoch", "rng", "config"} - set(state) if isinstance(state, dict) else {"all keys"}
    if missing:
        raise VitaeError(f"checkpoint {path} lacks {sorted(missing)}; it was not written by vitae train")
    return state
