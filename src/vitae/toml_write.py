"""Python values written as TOML text that ``tomllib`` reads back to equal values.

Covers what a configuration holds: strings, booleans, integers, floats (``inf`` and ``nan``
included), lists and tables (written inline, ``{key = value, ...}``).
"""

from __future__ import annotations

import math
import re

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for char in text:
        if char in ESCAPES:
            out.append(ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def key(name: str) -> str:
    """A bare key where TOML allows one, else a quoted key."""
    if not isinstance(name, str):
        raise ValueError(f"key: a TOML key must be a string, got {name!r}")
    return name if BARE_KEY.fullmatch(name) else string(name)


def value(item) -> str:
    """``item`` as a TOML value (a table inline)."""
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        if math.isnan(item):
            return "nan"
        return repr(item)  # '0.001', '1e-05', 'inf', '-inf': all TOML floats
    if isinstance(item, str):
        return string(item)
    if isinstance(item, (list, tuple)):
        return "[" + ", ".join(value(element) for element in item) + "]"
    if isinstance(item, dict):
        return "{" + ", ".join(f"{key(k)} = {value(v)}" for k, v in item.items()) + "}"
    raise ValueError(f"value: TOML has no type for {type(item).__name__} ({item!r})")
