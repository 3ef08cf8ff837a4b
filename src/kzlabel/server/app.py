"""The ASGI app (``create_app``) and ``run``: endpoints that receive an upload within the limits, check its format's
size limit, run the CPU-bound work in a worker lane and answer in one JSON error shape."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from .. import formats
from .._version import __version__
from ..errors import KzlabelError, RegistryError
from ..io import Limits, read_input, sidecar_path
from ..keys import Signer, TrustStore
from ..pipeline import Labeler
from ..registry import Registry
from . import page
from .auth import MarkGate, check_exposure
from .http import HTTPFailure, error_response, kzlabel_failure, query_flag
from .limits import ServiceLimits, Worker, cap_malloc_arenas
from .openapi import OPENAPI
from .softbinding import softbinding_routes
from .uploads import Upload, Uploads, scrub

__all__ = ["create_app", "run"]

log = logging.getLogger("kzlabel.server")

Endpoint = Callable[[Request], Any]


def _guarded(endpoint: Endpoint) -> Endpoint:
    """Turn every failure into the JSON error shape; unexpected ones say only their type, never a traceback."""

    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except HTTPFailure as exc:
            headers = dict(exc.headers)
            if exc.status in (408, 413):  # the rest of the body is not read: this connection cannot carry another
                headers["Connection"] = "close"
            return error_response(exc.status, exc.kind, exc.reason, headers)
        except KzlabelError as exc:
            failure = kzlabel_failure(exc)
            return error_response(failure.status, failure.kind, failure.reason)
        except Exception as exc:  # noqa: BLE001 - the boundary: a bug in kzlabel; the client gets its type only
            log.error("internal error while handling %s %s", request.method, request.url.path, exc_info=exc)
            return error_response(500, "internal_error", type(exc).__name__)

    return wrapper


def _library_limits(limits: ServiceLimits) -> Limits:
    default = Limits()
    text_max = limits.max_bytes_for("text", "text")
    return Limits(
        max_bytes=limits.max_upload,
        max_text_bytes=min(default.max_text_bytes, text_max),
        max_pixels=limits.max_pixels,
    )


def create_app(
    *,
    trust: TrustStore | None = None,
    registry: Registry | None = None,
    signer: Signer | None = None,
    owner: str | None = None,
    system: str | None = None,
    mark_token: str | None = None,
    mark_without_token: bool = False,
    limits: ServiceLimits | None = None,
    **settings: Any,
) -> Starlette:
    """Build the ASGI app; marking is enabled only when a signer, owner and system are all given, and then needs
    ``mark_token`` (the bearer token ``POST /mark`` requires) or ``mark_without_token=True`` (loopback only: ``run``
    checks the host).

    ``limits`` (default ``ServiceLimits()``) holds every limit; ``settings`` override single fields of it
    (``create_app(max_upload=..., timeout_s=...)``)."""
    limits = dataclasses.replace(limits or ServiceLimits(), **settings)
    lib_limits = _library_limits(limits)
    verifier = Labeler(trust=trust, registry=registry, limits=lib_limits)
    mark_enabled = signer is not None and bool(owner) and bool(system)
    marker = (
        Labeler(signer, owner=owner, system=system, trust=trust, registry=registry, limits=lib_limits)
        if mark_enabled
        else None
    )
    gate = MarkGate.build(marking=mark_enabled, token=mark_token, without_token=mark_without_token, limits=limits)
    worker = Worker(limits.max_concurrency, limits.timeout_s, limits.express_slots)
    uploads = Uploads(limits)

    def check_format(upload: Upload) -> None:
        """Refuse an upload over its format's size limit before it waits for a slot (reads its header only)."""
        handler = formats.detect(read_input(upload.source, lib_limits, upload.name))
        family = formats.family(handler)
        most = limits.max_bytes_for(family, handler.id)
        if upload.size > most:
            raise HTTPFailure(
                413,
                "payload_too_large",
                f"a {handler.id} upload is limited to {most} bytes on this server ({family} files); "
                f"this one is {upload.size}",
            )

    async def process(upload: Upload, fn: Callable[[], Any], after: Callable[[bool], None] | None = None) -> Any:
        """``fn`` in a worker lane once the format check passed; ``upload`` is closed when the job is over."""

        def done(delivered: bool) -> None:
            upload.close()
            if after is not None:
                after(delivered)

        handed = False
        try:
            await anyio.to_thread.run_sync(check_format, upload)
            handed = True
            return await worker.run(fn, small=upload.size <= limits.express_bytes, after=done)
        except KzlabelError as exc:
            failure = kzlabel_failure(exc)
            raise HTTPFailure(failure.status, failure.kind, scrub(failure.reason, upload)) from None
        finally:
            if not handed:
                done(False)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__, "mark_enabled": mark_enabled})

    async def verify(request: Request) -> Response:
        allow_untrusted = query_flag(request, "allow_untrusted")
        upload = await uploads.receive(request)
        report = await process(upload, lambda: verifier.verify(upload.source, name=upload.name))
        if upload.path is not None:  # the report names the upload, not our spool file
            report = dataclasses.replace(report, source=upload.name or "upload")
        return Response(report.to_json(allow_untrusted=allow_untrusted), media_type="application/json")

    async def mark(request: Request) -> Response:
        if marker is None or gate is None:
            raise HTTPFailure(
                403,
                "mark_disabled",
                "marking is disabled: the server was started without a signing key, owner and system",
            )
        gate.admit(request)  # 429 / 401 before any of the body is read
        upload = await uploads.receive(request)
        if upload.path is None:  # small: in memory both ways
            result = await process(upload, lambda: marker.mark(upload.source, None, name=upload.name))
            body: bytes | None = result.data
            out: Path | None = None
        else:  # spooled: the output is spooled too and streamed back from its file
            out = uploads.new_spool()
            written = out

            def remove_output(delivered: bool = False) -> None:
                if not delivered:
                    written.unlink(missing_ok=True)
                    sidecar_path(written).unlink(missing_ok=True)

            try:
                result = await process(
                    upload, lambda: marker.mark(upload.source, written, name=upload.name), remove_output
                )
            except BaseException:
                remove_output()
                raise
            body = None
        headers = {"X-Kzlabel-Content-Id": str(result.label.content_id), "X-Kzlabel-Format": str(result.format)}
        if out is None:
            return Response(body, media_type="application/octet-stream", headers=headers)
        return FileResponse(
            out, media_type="application/octet-stream", headers=headers, background=BackgroundTask(remove_output)
        )

    async def openapi(request: Request) -> Response:
        return Response(json.dumps(OPENAPI), media_type="application/json")

    routes = [
        Route("/healthz", _guarded(healthz), methods=["GET"]),
        Route("/verify", _guarded(verify), methods=["POST"]),
        Route("/mark", _guarded(mark), methods=["POST"]),
        Route("/openapi.json", _guarded(openapi), methods=["GET"]),
        *page.routes(),
        *softbinding_routes(registry=registry, verifier=verifier, uploads=uploads, process=process, guard=_guarded),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(404, "not_found", f"no such endpoint: {request.url.path}")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return error_response(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")

    async def server_error(request: Request, exc: Exception) -> Response:
        return error_response(500, "internal_error", type(exc).__name__)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if registry is not None:
            try:
                await registry.start_async()  # the resolution API's reads on this loop
            except RegistryError as exc:  # its reads go through worker threads instead, and say so when they fail
                log.warning("registry: no reads on the event loop (%s)", exc)
        try:
            yield
        finally:
            uploads.close()  # the private spool folder, with anything an abandoned job left in it
            if registry is not None:
                await registry.stop_async()

    app = Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: not_allowed, 500: server_error, Exception: server_error},
        lifespan=lifespan,
    )
    app.state.mark_enabled = mark_enabled
    app.state.mark_gate = gate
    app.state.max_upload = limits.max_upload
    app.state.limits = limits
    app.state.uploads = uploads
    return app


def run(host: str, port: int, *, uds: Path | None = None, **create_app_kwargs: Any) -> None:
    """Serve the app with uvicorn under the limits' connection settings; logs configuration counts and limits only,
    never key material, the mark token or upload bodies. Refuses (ValueError) to serve marking without a token on
    an address other machines can reach."""
    import uvicorn

    from .connections import server_config  # imports uvicorn: only serving needs it

    app = create_app(**create_app_kwargs)
    limits: ServiceLimits = app.state.limits
    cap_malloc_arenas(limits.max_concurrency + limits.express_slots)
    gate: MarkGate | None = app.state.mark_gate
    check_exposure(host, uds, marking=gate is not None, token=gate is not None and gate.authenticated)
    trust = create_app_kwargs.get("trust")
    # Config() installs uvicorn's logging setup, so our startup line goes through the same handlers.
    config = server_config(app, limits, host=host, port=port, uds=uds)
    logging.getLogger("uvicorn.error").info(
        "kzlabel %s serving on %s (trust anchors: %d, marking %s, max upload %d bytes, %d+%d job slots, "
        "timeout %g s, max connections %d)",
        __version__,
        uds or f"{host}:{port}",
        len(trust) if trust is not None else 0,
        _marking(gate, limits),
        limits.max_upload,
        limits.max_concurrency,
        limits.express_slots,
        limits.timeout_s,
        limits.max_connections,
    )
    uvicorn.Server(config).run()


def _marking(gate: MarkGate | None, limits: ServiceLimits) -> str:
    if gate is None:
        return "disabled"
    auth = "bearer token" if gate.authenticated else "WITHOUT a token (local only)"
    return f"enabled with {auth}, {limits.mark_rate:g}/s per client, burst {limits.mark_burst}"
