"""HTTP upload-verification service: ``POST /verify``, a verification page at ``/`` (and optionally ``POST /mark``,
behind a bearer token and a per-client rate limit) over Starlette/uvicorn.

Uploads are hostile by default. Connections have deadlines (headers, body, keep-alive) and a cap; a body is
size-checked while it streams and spooled to a private temp file past a small in-memory share, so memory stays
bounded whatever clients send; each format has its own size limit; verification runs in worker threads in bounded
lanes (big jobs never take the express slots small ones use) with a deadline per job; and no error response ever
carries a traceback. Key material is never logged.

Modules: ``limits`` (every limit, byte budgets, worker lanes), ``uploads`` (receiving and spooling bodies),
``connections`` (uvicorn settings and the header deadline; imports uvicorn), ``http`` (the error shape),
``openapi``, ``page`` (the page, ``/docs`` and the files of ``web/``), ``auth`` (the mark token, where marking may be
served), ``ratelimit`` (per-client token buckets), ``softbinding`` (the C2PA Soft Binding Resolution API over the
registry), ``app`` (endpoints, ``create_app``, ``run``).
"""

from __future__ import annotations

from .app import create_app, run
from .http import HTTPFailure
from .limits import DEFAULT_FORMAT_MAX_BYTES, ServiceLimits, Worker
from .openapi import OPENAPI

__all__ = ["DEFAULT_FORMAT_MAX_BYTES", "OPENAPI", "HTTPFailure", "ServiceLimits", "Worker", "create_app", "run"]
