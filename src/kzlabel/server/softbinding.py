"""The C2PA Soft Binding Resolution API (C2PA 2.x "Soft Binding API", its OpenAPI version 1.1.0) over the service's
registry, so that any C2PA client can recover the manifest of a file whose metadata was stripped:

* ``GET /services/supportedAlgorithms`` → ``{"watermarks": [{"alg": "kz.kzlabel.wm.1"}], "fingerprints": []}``
* ``GET /matches/byBinding?alg=&value=[&maxResults=]`` and ``POST /matches/byBinding`` (``{"alg", "value"}``):
  ``value`` is the watermark payload in base64 → ``{"matches": [{"manifestId", "similarityScore"}]}``
* ``POST /matches/byContent[?alg=&maxResults=]``: the asset as the body; the service reads its watermark itself with
  the detector verify uses → the same answer
* ``GET /manifests/{manifestId}[?returnActiveManifest=]``: the manifest store signed at mark time, ``application/c2pa``

A match is a registry entry with a manifest store (``kzlabel mark --registry`` records it). Errors keep the service's
one JSON shape (``{"error", "reason"}``) with the statuses the API names: 400 bad query or body, 404 unknown manifest,
415 an asset type kzlabel cannot read; and 503 while the registry is unreachable (its details go to the log only).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import RegistryError
from ..layers import c2pa as c2pa_layer
from ..pipeline import Labeler
from ..recovery import watermark_payloads
from ..registry import SOFT_BINDING_ALG, Registry, content_id_from_binding
from .http import HTTPFailure, query_flag
from .uploads import Upload, Uploads

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS", "softbinding_routes"]

log = logging.getLogger("kzlabel.server")

MAX_QUERY_BODY = 64 * 1024  # a POST /matches/byBinding document: {"alg", "value"} is a few dozen bytes
MAX_MANIFEST_ID = 256
EXACT = 100  # similarityScore of a watermark payload that decoded with its integrity check: an exact match

Endpoint = Callable[[Request], Awaitable[Response]]
Process = Callable[[Upload, Callable[[], Any]], Awaitable[Any]]


def _max_results(request: Request) -> int:
    raw = request.query_params.get("maxResults")
    if raw is None:
        return 10
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise HTTPFailure(400, "bad_request", f"maxResults must be a positive integer, not {raw[:40]!r}")
    return value


def _check_alg(alg: object, required: bool) -> None:
    if alg is None and not required:
        return
    if not isinstance(alg, str) or not alg:
        raise HTTPFailure(400, "bad_request", "alg (the soft binding algorithm) is required")
    if alg != SOFT_BINDING_ALG:
        raise HTTPFailure(
            400,
            "unsupported_algorithm",
            f"this service resolves {SOFT_BINDING_ALG} only, not {alg[:80]!r} (GET /services/supportedAlgorithms)",
        )


def _content_id(value: object) -> str:
    if not isinstance(value, str):
        raise HTTPFailure(400, "bad_request", "value (the base64 soft binding value) is required")
    try:
        return content_id_from_binding(value)
    except ValueError as exc:
        raise HTTPFailure(400, "bad_request", f"value: {exc}") from None


async def _small_json(request: Request, uploads: Uploads) -> Any:
    """The request's JSON document, read within the upload deadlines and at most MAX_QUERY_BODY bytes."""
    declared = uploads.declared_length(request)
    if declared is not None and declared > MAX_QUERY_BODY:
        raise HTTPFailure(413, "payload_too_large", f"a query document is limited to {MAX_QUERY_BODY} bytes")
    body = bytearray()
    async for chunk in uploads.chunks(request):
        body += chunk
        if len(body) > MAX_QUERY_BODY:
            raise HTTPFailure(413, "payload_too_large", f"a query document is limited to {MAX_QUERY_BODY} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HTTPFailure(400, "bad_request", 'the body must be a JSON object {"alg": ..., "value": ...}') from None


def softbinding_routes(
    *,
    registry: Registry | None,
    verifier: Labeler,
    uploads: Uploads,
    process: Process,
    guard: Callable[[Endpoint], Endpoint],
) -> list[Route]:
    """The API's routes; ``process`` runs a job on an upload in the service's worker lanes (the format's size limit
    and the job deadline included), ``guard`` renders failures in the service's JSON error shape."""

    async def in_registry(call: Callable[[Registry], Awaitable[Any]]) -> Any:
        """``await call(registry)`` (its ``*_async`` reads); no registry or an unreachable one is a 503."""
        if registry is None:
            raise HTTPFailure(503, "no_registry", "this service has no registry to resolve against (--registry)")
        try:
            return await call(registry)
        except RegistryError as exc:
            log.error("registry unavailable: %s", exc)
            raise HTTPFailure(503, "registry_unavailable", "the registry is unavailable; retry later") from None

    async def matches(content_ids: list[str], limit: int) -> Response:
        found: list[dict[str, Any]] = []
        for cid in content_ids[:limit]:

            def look(reg: Registry, cid: str = cid) -> Awaitable[str | None]:
                return reg.manifest_id_async(cid)

            manifest_id = await in_registry(look)
            if manifest_id:
                found.append({"manifestId": manifest_id, "similarityScore": EXACT})
        return JSONResponse({"matches": found})

    async def supported_algorithms(request: Request) -> Response:
        return JSONResponse({"watermarks": [{"alg": SOFT_BINDING_ALG}], "fingerprints": []})

    async def by_binding(request: Request) -> Response:
        limit = _max_results(request)
        if request.method == "GET":
            alg, value = request.query_params.get("alg"), request.query_params.get("value")
        else:
            doc = await _small_json(request, uploads)
            if not isinstance(doc, dict):
                raise HTTPFailure(400, "bad_request", 'the body must be a JSON object {"alg": ..., "value": ...}')
            alg, value = doc.get("alg"), doc.get("value")
        _check_alg(alg, required=True)
        return await matches([_content_id(value)], limit)

    async def by_content(request: Request) -> Response:
        _check_alg(request.query_params.get("alg"), required=False)
        limit = _max_results(request)
        upload = await uploads.receive(request)
        found = await process(
            upload,
            lambda: watermark_payloads(upload.source, verifier.limits, verifier.options.watermark_key, upload.name),
        )
        return await matches(found, limit)

    async def manifest(request: Request) -> Response:
        manifest_id = request.path_params["manifest_id"]
        if not manifest_id or len(manifest_id) > MAX_MANIFEST_ID or not manifest_id.isprintable():
            raise HTTPFailure(400, "bad_request", "not a manifest identifier")
        active_only = query_flag(request, "returnActiveManifest")
        store = await in_registry(lambda reg: reg.manifest_async(manifest_id))
        if store is None:
            raise HTTPFailure(404, "not_found", f"no manifest {manifest_id[:MAX_MANIFEST_ID]!r} in this registry")
        if active_only:
            try:
                store = c2pa_layer.active_manifest_only(store)
            except ValueError:
                raise HTTPFailure(500, "internal_error", "the stored manifest store is malformed") from None
        return Response(store, media_type=c2pa_layer.STORE_MIME)

    return [
        Route("/services/supportedAlgorithms", guard(supported_algorithms), methods=["GET"]),
        Route("/matches/byBinding", guard(by_binding), methods=["GET", "POST"]),
        Route("/matches/byContent", guard(by_content), methods=["POST"]),
        Route("/manifests/{manifest_id}", guard(manifest), methods=["GET"]),
    ]


# --- the OpenAPI description (merged into the service's /openapi.json) ---------------------------------------------
def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_RESULT = {"application/json": {"schema": {"$ref": "#/components/schemas/c2pa.softBindingQueryResult"}}}
_MAX_RESULTS = {
    "name": "maxResults",
    "in": "query",
    "description": "The maximum number of manifest identifiers to return.",
    "schema": {"type": "integer", "minimum": 1, "default": 10},
}
_ALG = {
    "name": "alg",
    "in": "query",
    "description": f"The soft binding algorithm; this service resolves {SOFT_BINDING_ALG}.",
    "schema": {"type": "string"},
}
_COMMON = {"500": _error("Service failure"), "503": _error("No registry configured, or the registry is unreachable")}
_FOUND = {"200": {"description": "Successful operation", "content": _RESULT}}

OPENAPI_PATHS: dict[str, Any] = {
    "/services/supportedAlgorithms": {
        "get": {
            "tags": ["service"],
            "summary": "The soft binding algorithms this service resolves",
            "operationId": "getSupportedBindings",
            "responses": {
                "200": {
                    "description": "Successful operation",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/c2pa.softBindingAlgList"}}
                    },
                },
                "500": _error("Service failure"),
            },
        }
    },
    "/matches/byBinding": {
        "get": {
            "tags": ["query"],
            "summary": "Manifest identifiers for a soft binding value (the watermark payload, base64)",
            "operationId": "queryByBinding",
            "parameters": [
                {**_ALG, "required": True},
                {
                    "name": "value",
                    "in": "query",
                    "required": True,
                    "description": "The watermark payload, base64 (standard or URL-safe; padding optional).",
                    "schema": {"type": "string"},
                },
                _MAX_RESULTS,
            ],
            "responses": {**_FOUND, "400": _error("Invalid query value or unsupported alg"), **_COMMON},
        },
        "post": {
            "tags": ["query"],
            "summary": "Manifest identifiers for a soft binding value given as a JSON document",
            "operationId": "queryByLargeBinding",
            "parameters": [_MAX_RESULTS],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/c2pa.softBindingQuery"}}},
            },
            "responses": {
                **_FOUND,
                "400": _error("Invalid request body or unsupported alg"),
                "413": _error(f"Request body over {MAX_QUERY_BODY} bytes"),
                **_COMMON,
            },
        },
    },
    "/matches/byContent": {
        "post": {
            "tags": ["query"],
            "summary": "Manifest identifiers for an uploaded asset (the service reads its watermark)",
            "operationId": "uploadFile",
            "parameters": [_ALG, _MAX_RESULTS],
            "requestBody": {
                "required": True,
                "content": {
                    kind: {"schema": {"type": "string", "format": "binary"}}
                    for kind in ("image/*", "audio/*", "video/*", "application/*", "application/octet-stream")
                },
            },
            "responses": {
                **_FOUND,
                "400": _error("Invalid request"),
                "413": _error("Upload over the service's limits"),
                "415": _error("Invalid asset type"),
                "422": _error("Empty or corrupt asset"),
                **_COMMON,
                "504": _error("Processing exceeded the server's timeout"),
            },
        }
    },
    "/manifests/{manifestId}": {
        "get": {
            "tags": ["fetch"],
            "summary": "The C2PA manifest store recorded with a label (or only its active manifest)",
            "operationId": "getManifestById",
            "parameters": [
                {
                    "name": "manifestId",
                    "in": "path",
                    "required": True,
                    "description": "The active manifest's identifier (a urn:c2pa: URN), as a match gave it.",
                    "schema": {"type": "string"},
                },
                {
                    "name": "returnActiveManifest",
                    "in": "query",
                    "description": "Only the active manifest (default: the whole manifest store).",
                    "schema": {"type": "boolean", "default": False},
                },
            ],
            "responses": {
                "200": {"description": "Successful operation", "content": {"application/c2pa": {}}},
                "400": _error("Invalid manifest identifier"),
                "404": _error("Manifest identifier not found"),
                **_COMMON,
            },
        }
    },
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "c2pa.softBindingAlgList": {
        "type": "object",
        "properties": {
            kind: {
                "type": "array",
                "items": {"type": "object", "properties": {"alg": {"type": "string"}}, "required": ["alg"]},
            }
            for kind in ("watermarks", "fingerprints")
        },
    },
    "c2pa.softBindingQuery": {
        "type": "object",
        "properties": {"alg": {"type": "string"}, "value": {"type": "string"}},
        "required": ["value", "alg"],
    },
    "c2pa.softBindingQueryResult": {
        "type": "object",
        "properties": {
            "matches": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "manifestId": {"type": "string"},
                        "endpoint": {"type": "string"},
                        "similarityScore": {"type": "integer", "minimum": 0, "maximum": 100},
                    },
                    "required": ["manifestId"],
                },
            }
        },
        "required": ["matches"],
    },
}
