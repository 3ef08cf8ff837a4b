"""The verification page (``GET /``), the API pointer (``GET /docs``) and their static files (``GET /static/NAME``).

They are plain HTML, CSS and JavaScript files shipped in the package (``server/web/``): no build step, nothing
fetched from another origin, so the page works offline. The page calls the public ``POST /verify`` as any API
client does. Every response carries a strict Content-Security-Policy (scripts and styles from this origin only, no
inline code, Trusted Types so no script can write HTML from strings), and files are served from a fixed set read at
start-up, never from a path the client names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .http import error_response

__all__ = ["CONTENT_TYPES", "CSP", "SECURITY_HEADERS", "Asset", "load_assets", "routes"]

CONTENT_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}

# blob: for the preview of the chosen file (an object URL: the file never leaves the browser for it)
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        "media-src blob:",
        "connect-src 'self'",
        "form-action 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ]
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",  # revalidated every time (cheap: ETag), so an upgrade shows at once
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file of ``server/web/`` with a known type, by name."""
    out: dict[str, Asset] = {}
    for entry in (files("kzlabel.server") / "web").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in CONTENT_TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            out[entry.name] = Asset(body, CONTENT_TYPES[suffix], etag)
    return out


def _respond(request: Request, asset: Asset) -> Response:
    headers = {**SECURITY_HEADERS, "ETag": asset.etag}
    if asset.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def routes() -> list[Route]:
    """``/`` (the page), ``/docs`` (what the API is and where its description is) and ``/static/NAME``."""
    assets = load_assets()

    def page(name: str) -> Callable[[Request], Any]:
        asset = assets[name]

        async def endpoint(request: Request) -> Response:
            return _respond(request, asset)

        return endpoint

    async def static(request: Request) -> Response:
        asset = assets.get(request.path_params["name"])
        if asset is None or asset.media_type.startswith("text/html"):  # pages have their own paths
            return error_response(404, "not_found", f"no such file: {request.url.path}")
        return _respond(request, asset)

    return [
        Route("/", page("index.html"), methods=["GET"]),
        Route("/docs", page("docs.html"), methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
    ]
