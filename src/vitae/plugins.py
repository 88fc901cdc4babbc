"""Your own architectures, data sets, transformations and models, found by name like the shipped ones.

A plugin is a Python module that registers things when it is imported
(``vitae.models.networks.register``, ``vitae.data.register``, ``vitae.transforms.register``,
``vitae.models.register``). Two ways reach it from a configuration or the command line:

* the config key ``imports = ["my_module"]``: imported before the run's model and data are built
  (a module on ``PYTHONPATH`` or in the current folder); ``config.json`` keeps the key, so
  ``--resume``, ``vitae evaluate`` and ``vitae plot`` import it again;
* an installed package's entry point in the group ``vitae.plugins`` (a module, or a function
  called without arguments): loaded whenever a name is not found in a registry.

Shipped names cannot be registered again; a name you registered can (re-running a notebook cell).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from pathlib import Path

from vitae.errors import VitaeError

GROUP = "vitae.plugins"
HOW = ("register your own in a module named in the config key imports=[\"MODULE\"], "
       f"or in an entry point of the group {GROUP}")


def import_modules(names) -> None:
    """Import each module of ``names`` (the config key ``imports``): from ``sys.path`` or the
    current folder. A module that is not found is a one-line error; an error inside the module is
    the user's code failing and keeps its traceback."""
    if isinstance(names, str) or not all(isinstance(name, str) and name for name in names):
        raise VitaeError(f"config key 'imports' must be a list of module names, e.g. [\"my_networks\"], got {names!r}")
    for name in names:
        if name in sys.modules:
            continue
        try:
            _import_here(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
                raise  # the module itself imports something that is missing
            raise VitaeError(f"cannot import the plugin module '{name}' (config key imports): no module named "
                             f"'{exc.name}' on PYTHONPATH or in the current folder {Path.cwd()}") from None


def _import_here(name: str) -> None:
    """Import ``name`` with the current folder searched last, as ``python -m`` would find it."""
    cwd = str(Path.cwd())
    added = cwd not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        importlib.import_module(name)
    finally:
        if added:
            sys.path.remove(cwd)


def load_entry_points() -> None:
    """Load every entry point of the group ``vitae.plugins`` (a module is imported, a function is
    called); loading one twice does no harm."""
    for point in importlib.metadata.entry_points(group=GROUP):
        try:
            loaded = point.load()
        except ModuleNotFoundError as exc:
            raise VitaeError(f"the entry point '{point.name} = {point.value}' (group {GROUP}) cannot be loaded: {exc}; "
                             "reinstall the package that declares it") from None
        if callable(loaded):
            loaded()


def lookup(registry: dict, name: str, kind: str, also=()):
    """``registry[name]``; a name not found loads the entry points and tries again, then is a
    one-line error naming what is registered (and the names ``also`` valid) and how to add to it."""
    if name not in registry:
        load_entry_points()
    if name not in registry:
        names = ", ".join([*also, *sorted(registry)])
        raise VitaeError(f"unknown {kind} '{name}'; choose one of: {names} (or {HOW})")
    return registry[name]


def register(registry: dict, shipped: frozenset, name: str, value, kind: str) -> None:
    """Add ``value`` under ``name``; a shipped name is refused, a user's own is replaced."""
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise ValueError(f"name must be a non-empty string without spaces, got {name!r}")
    if name in shipped:
        raise ValueError(f"name '{name}' is a shipped {kind}; register yours under another name")
    registry[name] = value
