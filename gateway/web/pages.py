"""The market page: its files served over plain HTTP on the websocket's port.

The page (``gateway/web/static/``) is a client like any other: it reads the
market over the public websocket protocol, anonymously, so it holds no
secret and can change nothing. The files are read once at start and served
from memory with a strict Content-Security-Policy (nothing but this origin,
no inline script), so the page runs with no build step and fetches nothing
from outside.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

STATIC = Path(__file__).with_name("static")
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# 'self' covers the websocket of the same host and port (CSP level 3).
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
          "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class Asset(NamedTuple):
    body: bytes
    content_type: str
    etag: str


class StaticPages:
    """The page's files by URL path (``/`` is ``index.html``); nothing else is served.

    Args:
        directory: Where the files are; only its top level, only known types.
    """

    def __init__(self, directory: Path = STATIC) -> None:
        self.assets: dict[str, Asset] = {}
        for path in sorted(directory.iterdir()):
            content_type = TYPES.get(path.suffix)
            if content_type is None or not path.is_file():
                continue
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            self.assets["/" + path.name] = Asset(body, content_type, etag)
        if "/index.html" in self.assets:
            self.assets["/"] = self.assets["/index.html"]

    def answer(self, path: str, if_none_match: list[str]) -> tuple[int, list, bytes]:
        """(status, headers, body) for a plain HTTP GET of ``path``: the file, 304 when the
        client's copy is current, or 404; for any server library."""
        asset = self.assets.get(path.split("?", 1)[0])
        if asset is None:
            body = b"gpux: no such page; the market is at / and the websocket endpoint at /ws\n"
            return 404, [("Content-Type", "text/plain; charset=utf-8"),
                         ("Content-Length", str(len(body)))], body
        headers = [("ETag", asset.etag),
                   ("Cache-Control", "no-cache"),   # revalidate: a new release shows at once
                   ("Content-Security-Policy", POLICY),
                   ("X-Content-Type-Options", "nosniff"),
                   ("Referrer-Policy", "no-referrer")]
        if matches(asset.etag, if_none_match):
            # A 304 has no body and states no length of its own (RFC 9110, 8.6 and 15.4.5).
            return 304, headers, b""
        return 200, [("Content-Type", asset.content_type),
                     ("Content-Length", str(len(asset.body)))] + headers, asset.body

    def respond(self, connection: ServerConnection, request: Request) -> Response:
        """``answer`` as websockets' HTTP response."""
        status, headers, body = self.answer(request.path,
                                            request.headers.get_all("If-None-Match"))
        response = connection.respond(status, "")
        for name in ("Content-Type", "Content-Length"):
            del response.headers[name]
        for name, value in headers:
            response.headers[name] = value
        response.body = body
        return response


def matches(etag: str, if_none_match: list[str]) -> bool:
    """Whether If-None-Match (every instance of the header) names ``etag`` or is ``*``:
    a weak comparison, as a GET's is (RFC 9110, 13.1.2)."""
    for value in if_none_match:
        for tag in value.split(","):
            tag = tag.strip()
            if tag == "*" or tag.removeprefix("W/") == etag:
                return True
    return False
