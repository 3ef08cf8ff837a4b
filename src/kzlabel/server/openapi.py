"""The service's OpenAPI 3.1 description (``GET /openapi.json``)."""

from __future__ import annotations

from typing import Any

from .._version import __version__
from .softbinding import OPENAPI_PATHS, OPENAPI_SCHEMAS
from .uploads import MULTIPART

__all__ = ["OPENAPI"]


def _error_schema_ref() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed request (bad Content-Length, malformed multipart, client disconnect)",
        401: "Marking needs a valid bearer token (Authorization: Bearer <token>)",
        403: "Marking is disabled on this server",
        408: "The upload arrived too slowly (a gap over body_timeout_s, or under min_upload_rate)",
        413: "Upload larger than the server's max_upload or its format's limit, or over a content limit",
        415: "Unsupported file format",
        422: "Empty, corrupt or unprocessable upload",
        429: "Too many marking requests from this client; retry after the Retry-After seconds",
        500: "Unexpected server error (exception type only)",
        503: "The server holds too many uploads or connections; retry after the Retry-After seconds",
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
                    **_errors(400, 408, 413, 415, 422, 500, 503, 504),
                },
            }
        },
        "/mark": {
            "post": {
                "summary": "Label one uploaded file (only when the server has a signing key)",
                "description": "Signs with the organisation's key, so it needs the server's bearer token and is "
                "rate-limited per client (429 with Retry-After).",
                "security": [{"bearer": []}],
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
                    **_errors(400, 401, 403, 408, 413, 415, 422, 429, 500, 503, 504),
                },
            }
        },
        "/": {
            "get": {
                "summary": "The verification page: choose a file, read the verdict (it calls POST /verify)",
                "responses": {"200": {"description": "HTML page", "content": {"text/html": {}}}},
            }
        },
        "/docs": {
            "get": {
                "summary": "A readable list of these endpoints, from this document",
                "responses": {"200": {"description": "HTML page", "content": {"text/html": {}}}},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1 document", "content": {"application/json": {}}}},
            }
        },
        **OPENAPI_PATHS,  # the C2PA Soft Binding Resolution API
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            **OPENAPI_SCHEMAS,
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
            "Label": {
                "type": "object",
                "description": "The signed kzlabel label found in the file (or recovered from the registry); "
                "docs/label-format.md has every field",
                "properties": {
                    "owner": {"type": "string"},
                    "system": {"type": "string"},
                    "system_version": {"type": "string"},
                    "created": {"type": "string", "format": "date-time"},
                    "content_id": {"type": "string"},
                    "source_type": {"type": "string"},
                    "notice": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"lang": {"type": "string"}, "text": {"type": "string"}},
                        },
                    },
                    "warning": {"$ref": "#/components/schemas/Warning"},
                },
                "required": ["owner", "system", "created", "content_id"],
            },
            "Warning": {
                "type": "object",
                "description": "Where the perceptible warning was drawn. Boxes are [x, y, width, height] as fractions "
                "of the displayed picture (after EXIF or rotation metadata). Images: kind 'overlay' with one box; "
                "video: kind 'burned-in' with parts.opening (the first opening_s seconds) and/or parts.persistent "
                "(after them), each with a box",
                "properties": {
                    "kind": {"type": "string"},
                    "box": {"$ref": "#/components/schemas/Box"},
                    "size": {"type": "array", "items": {"type": "integer"}},
                    "opening_s": {"type": "number"},
                    "parts": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "properties": {"box": {"$ref": "#/components/schemas/Box"}},
                        },
                    },
                },
            },
            "Box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4},
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
                    "label": {"oneOf": [{"$ref": "#/components/schemas/Label"}, {"type": "null"}]},
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
        },
    },
}
