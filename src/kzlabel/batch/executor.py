"""Running member tasks: inline for one worker, otherwise on a process pool that survives its workers dying.

Each pool worker builds its Labeler once, in the pool initializer, from the portable config (see
:mod:`kzlabel.batch.config`), and dies with its parent, so a batch killed with ``kill -9`` leaves no orphan writing
into the destination behind the resumed run. At most ``2 × workers`` tasks are in flight, which bounds memory however
large the source; a worker killed by a hostile file (a crashing C library) breaks the whole pool, so a fresh pool
retries the members that were in flight one at a time and only the culprit fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..pipeline import Labeler
from .config import build_labeler
from .members import process_member
from .model import FAILED, Ctx, Item, MemberResult, Task
from .progress import Progress

BeforeMember = Callable[[Task], Any]  # FaultHooks.before_member: a test's fault, run before a member's work

# Worker-process state: one Labeler per process, built in the initializer from picklable config.
_WORKER_LABELER: Labeler | None = None
_WORKER_BEFORE: BeforeMember | None = None


def _die_with_parent() -> None:
    """A pool worker must not outlive a killed batch (kill -9 of the parent would otherwise orphan it, blocked
    forever, or still writing outputs while the resumed run writes the same files)."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:  # portable fallback
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="kzlabel-parent-watch", daemon=True).start()


def _init_worker(config: Mapping[str, Any], key_dir: str | None, before_member: BeforeMember | None) -> None:
    global _WORKER_LABELER, _WORKER_BEFORE
    _die_with_parent()
    _WORKER_LABELER = build_labeler(config, key_dir)
    _WORKER_BEFORE = before_member


def _run_in_worker(task: Task) -> MemberResult:
    assert _WORKER_LABELER is not None, "the pool initializer builds the labeler"
    if _WORKER_BEFORE is not None:
        _WORKER_BEFORE(task)
    return process_member(task, _WORKER_LABELER)


class Executor:
    """Runs tasks inline (1 worker) or on a process pool, keeping at most ``2 × workers`` in flight.

    A worker that dies (a C library crashing on a hostile file) breaks the whole pool: a fresh pool takes over and
    the members that were in flight are retried one at a time, so only the member that kills its worker fails.
    """

    def __init__(
        self,
        workers: int,
        config: Mapping[str, Any],
        key_dir: str | None,
        before_member: BeforeMember | None = None,
    ) -> None:
        self.workers = workers
        self.inline = workers <= 1
        self.config = dict(config)
        self.key_dir = key_dir
        self.before_member = before_member
        self.pending: dict[Future[MemberResult], tuple[Task, Any]] = {}
        self.retry: list[tuple[Task, Any]] = []
        self.pool: ProcessPoolExecutor | None = None
        if self.inline:
            self.labeler = build_labeler(config, key_dir)
        else:
            build_labeler(config, key_dir)  # fail fast in the parent on a bad key or option
            self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        initargs = (self.config, self.key_dir, self.before_member)
        self.pool = ProcessPoolExecutor(self.workers, initializer=_init_worker, initargs=initargs)
        return self.pool

    def submit(self, task: Task, ctx: Any) -> Iterator[tuple[MemberResult, Any]]:
        """Submit a task; yields finished results (blocking when too much is in flight)."""
        if self.inline:
            if self.before_member is not None:
                self.before_member(task)
            yield process_member(task, self.labeler), ctx
            return
        while len(self.pending) >= 2 * self.workers:
            yield from self._collect(block=True)
        assert self.pool is not None
        try:
            fut = self.pool.submit(_run_in_worker, task)
        except BrokenProcessPool:
            self.retry.append((task, ctx))
        else:
            self.pending[fut] = (task, ctx)
        yield from self._collect(block=False)

    def _settle(self, block: bool) -> Iterator[tuple[MemberResult, Any]]:
        if not self.pending:
            return
        done, _ = wait(list(self.pending), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for fut in done:
            task, ctx = self.pending.pop(fut)
            try:
                res = fut.result()
            except BrokenProcessPool:
                self.retry.append((task, ctx))
                continue
            except Exception as exc:  # noqa: BLE001 - e.g. an unpicklable result
                res = MemberResult(task.path, FAILED, None, f"worker error: {type(exc).__name__}: {exc}")
            yield res, ctx

    def _collect(self, block: bool) -> Iterator[tuple[MemberResult, Any]]:
        yield from self._settle(block)
        if not self.retry:
            return
        while self.pending:  # let everything the broken pool held settle first
            yield from self._settle(block=True)
        batch, self.retry = self.retry, []
        pool = self._new_pool()
        for task, ctx in batch:
            try:
                res = pool.submit(_run_in_worker, task).result()
            except BrokenProcessPool as exc:
                res = MemberResult(task.path, FAILED, None, f"worker process died on this member: {exc}")
                pool = self._new_pool()
            except Exception as exc:  # noqa: BLE001
                res = MemberResult(task.path, FAILED, None, f"worker error: {type(exc).__name__}: {exc}")
            yield res, ctx

    def drain(self) -> Iterator[tuple[MemberResult, Any]]:
        while self.pending or self.retry:
            yield from self._collect(block=True)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _default_workers(workers: int | None) -> int:
    return max(1, workers if workers is not None else (os.cpu_count() or 1))


@contextmanager
def open_pool(
    workers: int | None,
    config: Mapping[str, Any],
    key_dir: str | None,
    bar: Progress,
    spill: Path | None,
    before_member: BeforeMember | None = None,
) -> Iterator[Executor]:
    """The executor for one run; whatever happens, the pool, the progress bar and the spill folder are cleaned up."""
    try:
        ex = Executor(_default_workers(workers), config, key_dir, before_member)
        try:
            yield ex
        finally:
            ex.close()
    finally:
        bar.close()
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)


def pump(ex: Executor, items: Iterable[Item], handle: Callable[[MemberResult, Ctx], None]) -> None:
    """Run every task on ``ex`` (at most 2 × workers in flight) and hand each result, run or known, to ``handle``."""

    def settle(res: MemberResult, ctx: Ctx) -> None:
        if ctx.spilled:
            Path(ctx.spilled).unlink(missing_ok=True)
        handle(res, ctx)

    for item, ctx in items:
        if isinstance(item, MemberResult):
            settle(item, ctx)
            continue
        for res, c in ex.submit(item, ctx):
            settle(res, c)
    for res, c in ex.drain():
        settle(res, c)
