"""The uvicorn side of the service: its own connection settings, and the one guard it lacks.

uvicorn closes an idle kept-alive connection (``timeout_keep_alive``) and answers 503 past ``limit_concurrency``, but
it waits forever for the headers of a request: a client that connects and says nothing, or sends half a request line,
holds its connection (issue 21: 200 silent connections and 50 half-sent headers were all open after 75 s).
:class:`GuardedH11Protocol` closes a connection whose request headers are not complete ``header_timeout_s`` after it
opened (or after the previous response on it was sent). This module imports uvicorn: only ``run()`` and tests need it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .limits import ServiceLimits

__all__ = ["GuardedH11Protocol", "guarded_protocol", "server_config"]


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the request headers."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.header_timeout_s, self._header_timed_out
        )

    def _cancel_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        self._header_timer = None

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the request line and headers are in
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        self._arm_header_timer()  # before the next cycle starts, so a pipelined request disarms it at once
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(header_timeout_s: float) -> type[GuardedH11Protocol]:
    """The protocol class for one server's header deadline (uvicorn instantiates the class it is given)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"header_timeout_s": header_timeout_s})


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
