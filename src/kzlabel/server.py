"""HTTP upload-verification service: ``POST /verify`` (and optionally ``POST /mark``) over Starlette/uvicorn.

Uploads are hostile by default, so the body is size-checked while it streams, verification runs in worker threads
behind a semaphore (it is CPU-bound and must not block the event loop), each job has a deadline, and no error
response ever carries a traceback. Key material is never logged.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._version import __version__
from .errors import KzlabelError, LimitExceeded, UnsupportedFormat, error_kind
from .io import Limits
from .keys import Signer, TrustStore
from .pipeline import Labeler
from .registry import Registry

__all__ = ["OPENAPI", "create_app", "run"]

log = logging.getLogger("kzlabel.server")

T = TypeVar("T")

DEFAULT_MAX_UPLOAD = 256 * 1024**2
MULTIPART = "multipart/form-data"


class HTTPFailure(Exception):
    """A request that ends in a JSON error body; raised deep, rendered once in the endpoint wrapper."""

    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.kind = kind
        self.reason = reason


def error_response(status: int, kind: str, reason: str) -> JSONResponse:
    """Every error has the same shape so clients need one parser."""
    return JSONResponse({"error": kind, "reason": reason}, status_code=status)


def _kzlabel_failure(exc: KzlabelError) -> HTTPFailure:
    """Map the library's error hierarchy onto HTTP statuses (most specific first)."""
    status = 415 if isinstance(exc, UnsupportedFormat) else 413 if isinstance(exc, LimitExceeded) else 422
    return HTTPFailure(status, error_kind(exc), exc.message)


# --- bounded body reading ------------------------------------------------------------------------------------------


async def read_bounded(request: Request, max_bytes: int) -> bytes:
    """Read the body but never hold more than ``max_bytes + 1`` bytes: a declared or streamed excess is a 413."""
    too_big = HTTPFailure(413, "payload_too_large", f"upload exceeds the limit of {max_bytes} bytes")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise HTTPFailure(400, "bad_request", "invalid Content-Length header") from None
        if length < 0:
            raise HTTPFailure(400, "bad_request", "invalid Content-Length header")
        if length > max_bytes:
            raise too_big
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            if not chunk:
                continue
            room = max_bytes + 1 - size
            chunk = chunk[:room]  # never keep more than one byte past the limit
            size += len(chunk)
            if size > max_bytes:
                raise too_big
            chunks.append(chunk)
    except ClientDisconnect:
        raise HTTPFailure(400, "client_disconnected", "the client closed the connection mid-upload") from None
    return b"".join(chunks)


async def _parse_multipart(request: Request, body: bytes) -> tuple[bytes, str | None]:
    """Parse an already size-checked multipart body by replaying it into a fresh Request."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    replay = Request(request.scope, receive)
    try:
        form = await replay.form(max_files=1, max_fields=16)
    except Exception as exc:  # noqa: BLE001 - python-multipart / starlette raise assorted types for bad forms
        raise HTTPFailure(400, "bad_multipart", f"malformed multipart body ({type(exc).__name__})") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPFailure(422, "missing_file", "multipart form needs a 'file' field holding the upload")
        data = await upload.read()
        return data, upload.filename or None
    finally:
        await form.close()


async def read_upload(request: Request, max_bytes: int) -> tuple[bytes, str | None]:
    """Return (content, filename) for a raw body (name from ``?name=``) or a multipart ``file`` field."""
    body = await read_bounded(request, max_bytes)
    name: str | None = request.query_params.get("name") or None
    if request.headers.get("content-type", "").lower().startswith(MULTIPART):
        data, filename = await _parse_multipart(request, body)
        name = filename or name
    else:
        data = body
    if not data:
        raise HTTPFailure(422, "empty_body", "the upload is empty")
    return data, name


def query_flag(request: Request, name: str) -> bool:
    """A yes/no query parameter: absent or 0/false/no/off is False; present bare or 1/true/yes/on is True."""
    raw = request.query_params.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("", "1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise HTTPFailure(400, "bad_request", f"?{name}= takes true or false, not {raw[:40]!r}")


# --- bounded, deadline-limited CPU work ----------------------------------------------------------------------------


class Worker:
    """Runs CPU-bound jobs in threads, at most ``max_concurrency`` at once, each within ``timeout_s``.

    A timed-out thread cannot be killed, so its slot stays taken until it really finishes; otherwise a stream of
    slow uploads could pile up unbounded CPU work behind the 504s.
    """

    def __init__(self, max_concurrency: int, timeout_s: float) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self._sem: anyio.Semaphore | None = None  # created lazily: it belongs to the serving event loop

    def _semaphore(self) -> anyio.Semaphore:
        if self._sem is None:
            self._sem = anyio.Semaphore(self.max_concurrency)
        return self._sem

    async def run(self, fn: Callable[[], T]) -> T:
        sem = self._semaphore()
        token = anyio.lowlevel.current_token()
        lock = threading.Lock()
        state = {"started": False, "finished": False, "orphaned": False}

        def job() -> T:
            with lock:
                if state["orphaned"]:  # the request gave up before the thread started: its slot is already free
                    raise TimeoutError("job abandoned before it started")
                state["started"] = True
            try:
                return fn()
            finally:
                with lock:
                    state["finished"] = True
                    release_here = state["orphaned"]
                if release_here:
                    try:
                        anyio.from_thread.run_sync(sem.release, token=token)
                    except RuntimeError:  # the event loop is gone, and the semaphore with it
                        log.debug("event loop closed before an abandoned job finished")

        deadline: anyio.CancelScope | None = None
        try:
            with anyio.fail_after(self.timeout_s) as deadline:
                await sem.acquire()
                try:
                    return await anyio.to_thread.run_sync(job, abandon_on_cancel=True)
                finally:
                    with lock:
                        state["orphaned"] = True
                        release_now = not state["started"] or state["finished"]
                    if release_now:
                        sem.release()
        except TimeoutError:
            if deadline is None or not deadline.cancel_called:  # a TimeoutError from the job itself is not our deadline
                raise
            raise HTTPFailure(504, "timeout", f"processing exceeded {self.timeout_s:g} s") from None


# --- OpenAPI -------------------------------------------------------------------------------------------------------


def _error_schema_ref() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed request (bad Content-Length, malformed multipart, client disconnect)",
        403: "Marking is disabled on this server",
        413: "Upload larger than the server's max_upload, or over a content limit",
        415: "Unsupported file format",
        422: "Empty, corrupt or unprocessable upload",
        500: "Unexpected server error (exception type only)",
        504: "Processing exceeded the server's timeout",
    }
    return {str(c): {"description": text[c], "content": _error_schema_ref()} for c in codes}


_UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        MULTIPART: {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
    },
}
_ALLOW_UNTRUSTED_PARAM: dict[str, Any] = {
    "name": "allow_untrusted",
    "in": "query",
    "required": False,
    "description": "With trust anchors configured, count a compliant file whose signer is not under them as "
    "accepted (default false: `accepted` is false unless some signed layer is trusted).",
    "schema": {"type": "boolean", "default": False},
}
_NAME_PARAM: dict[str, Any] = {
    "name": "name",
    "in": "query",
    "required": False,
    "description": "File name hint for a raw body (e.g. x.md); a multipart upload's filename takes precedence.",
    "schema": {"type": "string"},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "kzlabel",
        "version": __version__,
        "description": "Verify (and optionally apply) AI-content labels required by Kazakhstan AI Law Art. 21(2).",
    },
    "paths": {
        "/healthz": {
            "get": {
                "summary": "Liveness and configuration probe",
                "responses": {
                    "200": {
                        "description": "Server is up",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
                    }
                },
            }
        },
        "/verify": {
            "post": {
                "summary": "Verify the labels of one uploaded file",
                "parameters": [_NAME_PARAM, _ALLOW_UNTRUSTED_PARAM],
                "requestBody": _UPLOAD_BODY,
                "responses": {
                    "200": {
                        "description": "Verification report (any verdict, including unlabelled or tampered)",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Report"}}},
                    },
                    **_errors(400, 413, 415, 422, 500, 504),
                },
            }
        },
        "/mark": {
            "post": {
                "summary": "Label one uploaded file (only when the server has a signing key)",
                "parameters": [_NAME_PARAM],
                "requestBody": _UPLOAD_BODY,
                "responses": {
                    "200": {
                        "description": "The labelled file",
                        "headers": {
                            "X-Kzlabel-Content-Id": {"schema": {"type": "string"}},
                            "X-Kzlabel-Format": {"schema": {"type": "string"}},
                        },
                        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                    },
                    **_errors(400, 403, 413, 415, 422, 500, 504),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1 document", "content": {"application/json": {}}}},
            }
        },
    },
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {"error": {"type": "string"}, "reason": {"type": "string"}},
                "required": ["error", "reason"],
            },
            "Health": {
                "type": "object",
                "properties": {
                    "status": {"type": "string", "const": "ok"},
                    "version": {"type": "string"},
                    "mark_enabled": {"type": "boolean"},
                },
                "required": ["status", "version", "mark_enabled"],
            },
            "Report": {
                "type": "object",
                "properties": {
                    "source": {"type": "string"},
                    "format": {"type": "string"},
                    "verdict": {
                        "type": "string",
                        "enum": [
                            "compliant",
                            "machine_readable_only",
                            "warning_only",
                            "stripped",
                            "tampered",
                            "unlabelled",
                        ],
                    },
                    "trusted": {"type": "boolean"},
                    "trust_checked": {"type": "boolean"},
                    "accepted": {"type": "boolean"},
                    "why_not_accepted": {"type": ["string", "null"]},
                    "label": {"type": ["object", "null"]},
                    "label_recovered_from_registry": {"type": "boolean"},
                    "evidence": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "layer": {"type": "string"},
                                "status": {"type": "string"},
                                "detail": {"type": "string"},
                                "data": {},
                            },
                        },
                    },
                },
                "required": ["source", "format", "verdict", "accepted", "evidence"],
            },
        }
    },
}


# --- app -----------------------------------------------------------------------------------------------------------


Endpoint = Callable[[Request], Any]


def _guarded(endpoint: Endpoint) -> Endpoint:
    """Turn every failure into the JSON error shape; unexpected ones say only their type, never a traceback."""

    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except HTTPFailure as exc:
            return error_response(exc.status, exc.kind, exc.reason)
        except KzlabelError as exc:
            failure = _kzlabel_failure(exc)
            return error_response(failure.status, failure.kind, failure.reason)
        except Exception as exc:  # noqa: BLE001 - the boundary: a bug in kzlabel; the client gets its type only
            log.error("internal error while handling %s %s", request.method, request.url.path, exc_info=exc)
            return error_response(500, "internal_error", type(exc).__name__)

    return wrapper


def create_app(
    *,
    trust: TrustStore | None = None,
    registry: Registry | None = None,
    signer: Signer | None = None,
    owner: str | None = None,
    system: str | None = None,
    max_upload: int = DEFAULT_MAX_UPLOAD,
    max_concurrency: int = 2,
    timeout_s: float = 120.0,
) -> Starlette:
    """Build the ASGI app; marking is enabled only when a signer, owner and system are all given."""
    if max_upload < 1:
        raise ValueError("max_upload must be positive")
    limits = Limits(max_bytes=max_upload, max_text_bytes=min(Limits().max_text_bytes, max_upload))
    verifier = Labeler(trust=trust, registry=registry, limits=limits)
    mark_enabled = signer is not None and bool(owner) and bool(system)
    marker = (
        Labeler(signer, owner=owner, system=system, trust=trust, registry=registry, limits=limits)
        if mark_enabled
        else None
    )
    worker = Worker(max_concurrency, timeout_s)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__, "mark_enabled": mark_enabled})

    async def verify(request: Request) -> Response:
        allow_untrusted = query_flag(request, "allow_untrusted")
        data, name = await read_upload(request, max_upload)
        report = await worker.run(lambda: verifier.verify(data, name=name))
        return Response(report.to_json(allow_untrusted=allow_untrusted), media_type="application/json")

    async def mark(request: Request) -> Response:
        if marker is None:
            raise HTTPFailure(
                403,
                "mark_disabled",
                "marking is disabled: the server was started without a signing key, owner and system",
            )
        data, name = await read_upload(request, max_upload)
        result = await worker.run(lambda: marker.mark(data, None, name=name))
        headers = {"X-Kzlabel-Content-Id": str(result.label.content_id), "X-Kzlabel-Format": str(result.format)}
        return Response(result.data, media_type="application/octet-stream", headers=headers)

    async def openapi(request: Request) -> Response:
        return Response(json.dumps(OPENAPI), media_type="application/json")

    routes = [
        Route("/healthz", _guarded(healthz), methods=["GET"]),
        Route("/verify", _guarded(verify), methods=["POST"]),
        Route("/mark", _guarded(mark), methods=["POST"]),
        Route("/openapi.json", _guarded(openapi), methods=["GET"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, "not_found", f"no such endpoint: {request.url.path}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error_response(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")

    async def server_error(request: Request, exc: Exception) -> Response:
        return error_response(500, "internal_error", type(exc).__name__)

    app = Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: not_allowed, 500: server_error, Exception: server_error},
    )
    app.state.mark_enabled = mark_enabled
    app.state.max_upload = max_upload
    return app


def run(host: str, port: int, **create_app_kwargs: Any) -> None:
    """Serve the app with uvicorn; logs configuration counts only, never key material or upload bodies."""
    import uvicorn

    app = create_app(**create_app_kwargs)
    trust = create_app_kwargs.get("trust")
    # Config() installs uvicorn's logging setup, so our startup line goes through the same handlers.
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=True, server_header=False)
    logging.getLogger("uvicorn.error").info(
        "kzlabel %s serving on %s:%d (trust anchors: %d, marking %s, max upload %d bytes)",
        __version__,
        host,
        port,
        len(trust) if trust is not None else 0,
        "enabled" if app.state.mark_enabled else "disabled",
        app.state.max_upload,
    )
    uvicorn.Server(config).run()
