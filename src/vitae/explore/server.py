"""The explorer's HTTP server (the standard library's ``http.server``): the page and a JSON API.

    GET  /                 the page (page.html: inline HTML, CSS and JavaScript)
    GET  /api/info         the model's latents, image size, factors and test images
    POST /api/decode       {"z_A": [...], "z_P": [...]} (or {"z": [...]}) -> image, canonical, grid
    POST /api/encode       {"test": i} -> input, reconstruction and codes of test image i
    POST /api/upload       PNG or JPEG bytes (at most MAX_UPLOAD; ?resize=1 resamples another size)
    POST /api/traverse     {"factor": NAME, "test": i} -> a known factor moved across its range

Images travel as ``data:image/png;base64,...`` strings. Every error is a JSON object
``{"error": "one line"}`` with a 4xx status (5xx for a bug, with the exception's name only),
never a traceback page. Nothing is written anywhere. Bound to 127.0.0.1 by default, where requests
that name another host (a DNS-rebinding page) are refused.
"""

from __future__ import annotations

import base64
import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from vitae.errors import VitaeError
from vitae.explore.explorer import Explorer

MAX_UPLOAD = 2 * 1024 * 1024  # bytes of an uploaded image
MAX_JSON = 64 * 1024  # bytes of a JSON request
MAX_DISCARD = 64 * 1024 * 1024  # a refused body up to this size is read away before the answer
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
PAGE = Path(__file__).with_name("page.html")
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'")


class RequestError(Exception):
    """A bad request: its HTTP status and one line for the user."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _with_urls(result: dict) -> dict:
    """PNG bytes (alone or in lists) as data URLs, everything else as it is."""
    def convert(value):
        if isinstance(value, bytes):
            return data_url(value)
        if isinstance(value, list) and value and isinstance(value[0], bytes):
            return [data_url(v) for v in value]
        return value
    return {key: convert(value) for key, value in result.items()}


class Handler(BaseHTTPRequestHandler):
    """One request; ``explorer`` and ``allowed_hosts`` are set on the subclass ``make_server`` builds."""

    explorer: Explorer
    allowed_hosts: frozenset[str] | None = None  # None: any Host header
    server_version = "vitae-explore"
    protocol_version = "HTTP/1.1"

    # -- routes ---------------------------------------------------------------------------------
    def do_GET(self):
        self._handle({"/": self._page, "/api/info": self._info})

    def do_POST(self):
        self._handle({"/api/decode": self._decode, "/api/encode": self._encode, "/api/upload": self._upload,
                      "/api/traverse": self._traverse})

    def _page(self, query):
        self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")

    def _info(self, query):
        explorer = self.explorer
        info = explorer.info()
        info["test_images"] = [data_url(explorer.test_png(i)) for i in range(info["tests"])]
        self._json(200, info)

    def _decode(self, query):
        self._json(200, _with_urls(self.explorer.decode(self._read_json())))

    def _encode(self, query):
        body = self._read_json()
        if not isinstance(body, dict) or set(body) != {"test"}:
            raise RequestError(400, 'send {"test": INDEX} (or upload an image to /api/upload)')
        self._json(200, _with_urls(self.explorer.encode_test(body["test"])))

    def _upload(self, query):
        resize = query.get("resize", ["0"])[-1] in ("1", "true")
        data = self._read_body(MAX_UPLOAD, "an uploaded image")
        self._json(200, _with_urls(self.explorer.encode_upload(data, resize=resize)))

    def _traverse(self, query):
        body = self._read_json()
        if not isinstance(body, dict) or set(body) != {"factor", "test"}:
            raise RequestError(400, 'send {"factor": NAME, "test": INDEX}')
        self._json(200, _with_urls(self.explorer.traverse(body["factor"], body["test"])))

    # -- plumbing -------------------------------------------------------------------------------
    def _handle(self, routes: dict) -> None:
        try:
            self._check_host()
            parts = urlsplit(self.path)
            route = routes.get(parts.path)
            if route is None:
                known = any(parts.path in r for r in (self._get_routes, self._post_routes))
                raise RequestError(405 if known else 404, f"no {self.command} {parts.path[:80]} here; the explorer "
                                   "serves / and /api/...")
            route(parse_qs(parts.query))
        except RequestError as exc:
            self._json(exc.status, {"error": str(exc)})
        except VitaeError as exc:
            self._json(400, {"error": str(exc)})
        except Exception as exc:  # noqa: BLE001 (a bug: one line to the page and the terminal, no traceback)
            print(f"vitae explore: internal error on {self.command} {self.path[:80]}: {type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
            self._json(500, {"error": f"internal error ({type(exc).__name__}); see the terminal running vitae explore"})

    _get_routes = ("/", "/api/info")
    _post_routes = ("/api/decode", "/api/encode", "/api/upload", "/api/traverse")

    def _check_host(self) -> None:
        if self.allowed_hosts is not None and self.headers.get("Host", "") not in self.allowed_hosts:
            raise RequestError(403, "this explorer answers requests for 127.0.0.1 and localhost only")

    def _read_body(self, limit: int, what: str) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise RequestError(411, f"send {what} with a Content-Length")
        if int(length) > limit:
            self._discard(int(length))
            raise RequestError(413, f"{what} may be at most {limit // 1024} KiB, this one is {int(length) // 1024} KiB")
        return self.rfile.read(int(length))

    def _discard(self, length: int) -> None:
        """Read a refused body away in chunks (kept nowhere), so that the client, still sending it,
        gets the answer instead of a reset connection; past ``MAX_DISCARD`` just hang up."""
        self.close_connection = True
        if length <= MAX_DISCARD:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 16))
                if not chunk:
                    break
                length -= len(chunk)

    def _read_json(self):
        try:
            return json.loads(self._read_body(MAX_JSON, "a JSON request"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RequestError(400, "the request body is not JSON") from None

    def _json(self, status: int, value) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (a malformed request, an unknown method) as JSON too."""
        self.close_connection = True
        try:
            self._json(code, {"error": f"{code} {message or self.responses.get(code, ('',))[0]}"})
        except OSError:
            pass

    def log_message(self, format, *args):  # noqa: A002 (the signature of http.server's)
        pass  # quiet: the terminal shows the address and any internal error only


def make_server(explorer: Explorer, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A server for ``explorer`` on ``host:port`` (port 0: a free one), not yet serving."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise VitaeError(f"port must be a whole number from 0 to 65535, got {port!r}")
    local = host in LOCAL_HOSTS
    family = {"address_family": socket.AF_INET6} if ":" in host else {}
    try:
        server = type("ExplorerServer", (ThreadingHTTPServer,), family)((host, port), Handler)
    except OSError as exc:
        raise VitaeError(f"cannot serve on {host}:{port} ({exc.strerror or exc}); choose another --port or --host") from None
    bound = server.server_address[1]
    allowed = frozenset(f"{h}:{bound}" for h in ("127.0.0.1", "localhost", "[::1]")) if local else None
    server.RequestHandlerClass = type("ExplorerHandler", (Handler,), {"explorer": explorer, "allowed_hosts": allowed})
    server.daemon_threads = True
    return server


def url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
