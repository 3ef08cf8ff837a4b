"""Every limit the service enforces, in one place (:class:`ServiceLimits`), and the two mechanisms behind them: byte
budgets shared by all requests (:class:`ByteBudget`) and the worker lanes that run the CPU-bound jobs
(:class:`Worker`). docs/serve.md has the table of limits, their defaults and the CLI option of each.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from .http import HTTPFailure

__all__ = ["DEFAULT_FORMAT_MAX_BYTES", "MIB", "ByteBudget", "Lanes", "ServiceLimits", "Worker", "cap_malloc_arenas"]

log = logging.getLogger("kzlabel.server")

T = TypeVar("T")
MIB = 1024**2

# Largest upload per format family (bytes); a family not named here is bounded by max_upload only. Text is parsed in
# pure Python and held whole (16 MiB of HTML is the issue-21 denial-of-service case); an image, a PDF is read whole
# into memory before decoding, so these bound a job's memory too. Audio and video stream from the spooled file.
DEFAULT_FORMAT_MAX_BYTES: Mapping[str, int] = MappingProxyType({"text": 16 * MIB, "image": 64 * MIB, "pdf": 64 * MIB})


@dataclass(frozen=True)
class ServiceLimits:
    """The service's limits; ``create_app(**fields)`` and ``kzlabel serve --option`` set them (docs/serve.md)."""

    # size
    max_upload: int = 256 * MIB  # any body (413 above), also the library's max_bytes
    format_max_bytes: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_FORMAT_MAX_BYTES))
    # Decoding costs ~16 bytes a pixel at verify's peak (a 48 Mpx image: 800 MB RSS), so the service allows less than
    # the library's 100 Mpx: 25 Mpx (a 6000x4000 photo) is ~400 MB a job.
    max_pixels: int = 25_000_000
    # memory: a body stays in memory up to spool_threshold bytes while all in-memory bodies together stay under
    # memory_budget; anything else goes to a private temp file (0600) in spool_dir (default: the system temp folder)
    spool_threshold: int = 1 * MIB
    memory_budget: int = 32 * MIB
    spool_budget: int = 4 * 1024 * MIB  # all spooled bodies on disk together; a new upload past it gets 503
    spool_dir: Path | None = None
    # CPU and time
    max_concurrency: int = 2  # jobs running at once
    express_slots: int = 1  # extra slots only small uploads may use, so they never queue behind big ones
    express_bytes: int = 1 * MIB  # "small": an upload of at most this many bytes
    timeout_s: float = 120.0  # a job's time budget, waiting for a slot included (504 after)
    # connections (uvicorn and our protocol guard)
    header_timeout_s: float = 10.0  # connection open (or the last response sent) to the end of the request headers
    body_timeout_s: float = 20.0  # longest gap between two body chunks; also the grace before min_upload_rate counts
    min_upload_rate: int = 32 * 1024  # bytes/s a body must average once body_timeout_s has passed (408 below)
    keep_alive_s: float = 5.0  # an idle kept-alive connection is closed after this long
    max_connections: int = 64  # open connections; a request arriving over it gets 503
    # marking (POST /mark): each client address has a bucket of mark_burst requests that refills at mark_rate a
    # second; an empty bucket answers 429. Marking a 1080p JPEG took 0.23 s of CPU (3 runs, 2026-12), so the
    # default keeps one client to about a quarter of a core over time while letting it send 10 at once.
    mark_rate: float = 1.0
    mark_burst: int = 10

    def __post_init__(self) -> None:
        names = ("max_upload", "max_pixels", "max_concurrency", "max_connections", "min_upload_rate", "mark_burst")
        for name in names:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("spool_threshold", "memory_budget", "spool_budget", "express_slots", "express_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("timeout_s", "header_timeout_s", "body_timeout_s", "keep_alive_s", "mark_rate"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for fam, size in self.format_max_bytes.items():
            if size < 1:
                raise ValueError(f"format_max_bytes[{fam!r}] must be at least 1")

    def max_bytes_for(self, family: str, format_id: str) -> int:
        """The size limit of one format: its id's entry, else its family's, never above max_upload."""
        limit = self.format_max_bytes.get(format_id, self.format_max_bytes.get(family, self.max_upload))
        return min(limit, self.max_upload)


class ByteBudget:
    """A count of bytes shared by all requests on the event loop (no lock needed: only the loop touches it)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0

    def take(self, n: int) -> bool:
        if self.used + n > self.total:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n
        assert self.used >= 0, "a budget was given back more than it lent"


class Lanes:
    """Job slots: ``general`` ones any job may take, ``express`` ones only small jobs may. Waiters retry in the
    order they queued each time a slot is given back."""

    def __init__(self, general: int, express: int) -> None:
        self.free = {"general": general, "express": express}
        self._waiters: list[anyio.Event] = []

    def try_take(self, small: bool) -> str | None:
        for lane in ("general", "express") if small else ("general",):
            if self.free[lane] > 0:
                self.free[lane] -= 1
                return lane
        return None

    async def take(self, small: bool) -> str:
        while True:
            lane = self.try_take(small)
            if lane is not None:
                return lane
            event = anyio.Event()
            self._waiters.append(event)
            try:
                await event.wait()
            finally:
                if event in self._waiters:
                    self._waiters.remove(event)

    def give(self, lane: str) -> None:
        self.free[lane] += 1
        waiters, self._waiters = self._waiters, []
        for event in waiters:
            event.set()


class Worker:
    """Runs CPU-bound jobs in threads, at most ``max_concurrency`` at once plus ``express_slots`` more for small
    jobs, each within ``timeout_s`` (waiting for a slot included).

    A timed-out thread cannot be killed, so its slot stays taken until it really finishes; otherwise a stream of
    slow uploads could pile up unbounded CPU work behind the 504s. The express slots are why that cannot starve a
    small request: big jobs never take them.
    """

    def __init__(self, max_concurrency: int, timeout_s: float, express_slots: int = 0) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self.express_slots = express_slots
        self.timeout_s = timeout_s
        self._lanes: Lanes | None = None  # created lazily: its events belong to the serving event loop

    def lanes(self) -> Lanes:
        if self._lanes is None:
            self._lanes = Lanes(self.max_concurrency, self.express_slots)
        return self._lanes

    async def run(self, fn: Callable[[], T], *, small: bool = False, after: Callable[[bool], None] | None = None) -> T:
        """``fn()`` in a thread within the deadline; a small job may take an express slot. ``after(delivered)`` is
        called on the event loop exactly once, when the job is over: finished with its result going back to the
        caller (True), or abandoned at the deadline and now finished, or never started (False). Whatever the job
        reads (an upload's spool file) must live until then."""
        lanes = self.lanes()
        token = anyio.lowlevel.current_token()
        lock = threading.Lock()
        state = {"started": False, "finished": False, "orphaned": False}
        taken: list[str] = []

        def release(delivered: bool) -> None:
            if taken:
                lanes.give(taken[0])
            if after is not None:
                after(delivered)

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
                        anyio.from_thread.run_sync(release, False, token=token)
                    except RuntimeError:  # the event loop is gone, and the lanes with it
                        log.debug("event loop closed before an abandoned job finished")

        deadline: anyio.CancelScope | None = None
        try:
            with anyio.fail_after(self.timeout_s) as deadline:
                try:
                    taken.append(await lanes.take(small))
                except BaseException:
                    release(False)
                    raise
                try:
                    return await anyio.to_thread.run_sync(job, abandon_on_cancel=True)
                finally:
                    with lock:
                        state["orphaned"] = True
                        release_now = not state["started"] or state["finished"]
                    if release_now:
                        release(state["finished"])
        except TimeoutError:
            if deadline is None or not deadline.cancel_called:  # a TimeoutError from the job itself is not our deadline
                raise
            raise HTTPFailure(504, "timeout", f"processing exceeded {self.timeout_s:g} s") from None


_M_ARENA_MAX = -8  # glibc's mallopt parameter


def cap_malloc_arenas(arenas: int) -> bool:
    """Let glibc's malloc keep at most ``arenas`` heaps in this process (True when set).

    Jobs run on whichever of anyio's worker threads is free, and glibc gives each new thread that allocates its own
    heap (up to 8 per core) whose freed pages mostly stay mapped: the service's RSS then grows with the number of
    distinct threads that have decoded a picture (~37 MiB a step on 1080p JPEGs), not with the work in flight. As
    many heaps as jobs run at once keeps them uncontended. An operator's own MALLOC_ARENA_MAX wins; elsewhere than
    glibc this does nothing. Call it before the threads start: existing heaps stay.
    """
    if arenas < 1 or "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
