"""Shared by the explorer's tests: a served explorer, HTTP calls, PNGs read back with PIL."""

from __future__ import annotations

import base64
import io
import json
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image

from vitae.explore.server import make_server, url


@contextmanager
def serving(explorer, host: str = "127.0.0.1"):
    """The explorer served on a free port in a thread; yields its base URL."""
    server = make_server(explorer, host=host, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield url(server)
    finally:
        server.shutdown()
        server.server_close()


def call(base: str, path: str, body=None, *, raw: bytes | None = None, method: str | None = None,
         headers: dict | None = None):
    """``(status, parsed JSON or bytes)`` of one request; a JSON ``body`` is sent as JSON."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(base.rstrip("/") + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, content, kind = response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, content, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    return status, json.loads(content) if kind.startswith("application/json") else content


def read_png(data_url: str) -> np.ndarray:
    """A ``data:image/png;base64,`` URL read back with PIL: uint8 ``[H, W]`` (grey) or ``[H, W, 3]``."""
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(data_url[len(prefix):])))
    assert image.format == "PNG"
    return np.asarray(image)


def as_uint8(image: torch.Tensor) -> np.ndarray:
    """What an 8-bit PNG of a model's mean image ``[1, H, W]`` holds, computed here independently."""
    return np.rint(image.detach().clamp(0, 1).numpy()[0] * 255).astype(np.uint8)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()
