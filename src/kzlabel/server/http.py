"""The service's one error shape and the small request helpers every endpoint shares."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import KzlabelError, LimitExceeded, UnsupportedFormat, error_kind

__all__ = ["HTTPFailure", "error_response", "kzlabel_failure", "query_flag"]


class HTTPFailure(Exception):
    """A request that ends in a JSON error body; raised deep, rendered once in the endpoint wrapper."""

    def __init__(self, status: int, kind: str, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.kind = kind
        self.reason = reason
        self.headers = headers or {}


def error_response(status: int, kind: str, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Every error has the same shape so clients need one parser."""
    return JSONResponse({"error": kind, "reason": reason}, status_code=status, headers=headers)


def kzlabel_failure(exc: KzlabelError) -> HTTPFailure:
    """Map the library's error hierarchy onto HTTP statuses (most specific first)."""
    status = 415 if isinstance(exc, UnsupportedFormat) else 413 if isinstance(exc, LimitExceeded) else 422
    return HTTPFailure(status, error_kind(exc), exc.message)


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
