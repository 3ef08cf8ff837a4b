"""The uvicorn side of the service: its own connection settings, and the one guard it lacks.

uvicorn closes an idle kept-alive connection (``timeout_keep_alive``) and answers 503 past ``limit_concurrency``, but
it waits forever for the headers of a request: a client that connects and says nothing, or sends half a request line,
holds its connection (issue 21: 200 silent connections and 50 half-sent headers were all open after 75 s).
:class:`GuardedProtocol` closes a connection whose request headers are not complete ``header_timeout_s`` after it
opened (or after the previous response on it was sent), and refuses a request line and headers over
``MAX_HEAD_BYTES`` (400, connection closed: the limit h11 had; llhttp has none). It is uvicorn's httptools protocol
(llhttp, in C): h11's pure-Python parser cost about a third of the service's CPU per small request (profiled on
byBinding lookups). With uvloop installed uvicorn runs on it (``loop="auto"``). This module imports uvicorn: only
``run()`` and tests need it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .limits import ServiceLimits

__all__ = ["MAX_HEAD_BYTES", "GuardedProtocol", "guarded_protocol", "server_config"]

MAX_HEAD_BYTES = 16 * 1024  # request line + headers; more is refused before it is held


class HeadTooLarge(ValueError):
    """Raised from a parser callback: httptools turns it into a parser error, which uvicorn answers with a 400."""


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for the request headers."""

    header_timeout_s: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = None

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        super().on_message_begin()

    def _count_head(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEAD_BYTES:
            raise HeadTooLarge(f"request line and headers over {MAX_HEAD_BYTES} bytes")

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()  # the request line and headers are in
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        if not self.pipeline:  # a pipelined request's headers are already in: no deadline for it
            self._arm_header_timer()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(header_timeout_s: float) -> type[GuardedProtocol]:
    """The protocol class for one server's header deadline (uvicorn instantiates the class it is given)."""
    return type("GuardedProtocol", (GuardedProtocol,), {"header_timeout_s": header_timeout_s})


def server_config(
    app: Any, limits: ServiceLimits, *, host: str = "127.0.0.1", port: int = 8080, uds: Path | None = None, **kw: Any
) -> uvicorn.Config:
    """The uvicorn configuration that enforces ``limits``' connection settings (``kw``: more uvicorn options)."""
    kw.setdefault("log_level", "info")
    kw.setdefault("access_log", True)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        uds=str(uds) if uds is not None else None,
        http=guarded_protocol(limits.header_timeout_s),
        # uvicorn types it int but only hands it to loop.call_later, which takes seconds as a float
        timeout_keep_alive=cast(int, limits.keep_alive_s),
        # uvicorn answers 503 once len(connections) >= limit_concurrency, the asking connection included: one more
        # than max_connections lets exactly max_connections connections be served
        limit_concurrency=limits.max_connections + 1,
        server_header=False,
        lifespan="on",
        **kw,
    )
