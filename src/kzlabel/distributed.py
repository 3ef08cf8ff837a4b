"""Run the batch's per-file work on Dask, for folders too big for one machine's cores.

The work per file is exactly :func:`kzlabel.batch.process_member` (no second copy of the logic), and the run
around it is the batch's own (:class:`kzlabel.batch.job.MarkJob`: checks, SQLite journal and resume, archive
assembly, reports); this module only ships the tasks as a ``dask.bag``. Each Dask worker process builds its Labeler
once (cached by config) from the key folder, which must be readable on every worker.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .batch import (
    COPIED,
    FAILED,
    LABELLED,
    REFUSED,
    BatchSummary,
    MemberResult,
    Safety,
    Task,
    build_labeler,
    process_member,
)
from .batch.job import MarkJob
from .batch.model import Ctx, FaultHooks
from .errors import KzlabelError, MissingDependency

__all__ = ["run_dask"]

_LABELERS: dict[str, Any] = {}  # per worker process: config fingerprint → Labeler


def _labeler_for(config: Mapping[str, Any], key_dir: str) -> Any:
    key = hashlib.sha256(json.dumps([dict(config), key_dir], sort_keys=True, default=repr).encode()).hexdigest()
    lab = _LABELERS.get(key)
    if lab is None:
        lab = _LABELERS[key] = build_labeler(config, key_dir)
    return lab


def _dask_work(task: Task, config: Mapping[str, Any], key_dir: str) -> MemberResult:
    """What each Dask task runs: the batch's own per-member function with a cached Labeler."""
    try:
        labeler = _labeler_for(config, key_dir)
    except Exception as exc:  # noqa: BLE001 - a worker without the key fails its members, with the reason
        return MemberResult(task.path, FAILED, None, f"cannot build the labeler on this worker: {exc}")
    return process_member(task, labeler)


_LOCAL = ("processes", "threads", "sync", "synchronous", "single-threaded")


def run_dask(
    src_dir: str | os.PathLike,
    dst_dir: str | os.PathLike,
    labeler_config: Mapping[str, Any],
    key_dir: str | os.PathLike,
    scheduler: str = "processes",
    *,
    npartitions: int | None = None,
    journal: str | os.PathLike | None = None,
    report_path: str | os.PathLike | None = None,
    summary_path: str | os.PathLike | None = None,
    max_member_bytes: int = 1024**3,
    _hooks: FaultHooks | None = None,
) -> BatchSummary:
    """Label a folder into a folder (or an archive, by DST's name) on Dask; resumable with the batch's journal.

    ``scheduler``: "processes", "threads" or "sync" (local), or a distributed scheduler address such as
    "tcp://10.0.0.5:8786" (needs ``dask.distributed``; SRC, DST and the key folder must be on a shared filesystem).
    Members are journalled as their partition finishes (locally, in waves of one partition per core), so re-running
    the same call after a crash skips what is done, exactly as :func:`kzlabel.batch.run_batch` does.

    ``_hooks`` is for the crash tests only; run_dask honours its ``after_commit``.
    """
    try:
        import dask.bag as db
    except ImportError:
        raise MissingDependency("Dask is not installed: pip install kzlabel[dask]") from None
    if not Path(src_dir).is_dir():
        raise KzlabelError("run_dask needs a folder as source", source=str(src_dir))
    job = MarkJob(
        src_dir,
        dst_dir,
        config=labeler_config,
        key_dir=Path(key_dir).resolve(),
        safety=Safety(max_member_bytes),
        journal=journal,
        report_path=report_path,
        summary_path=summary_path,
        hooks=_hooks,
    )
    try:
        if job.finished_before():
            return job.report(resumed_all=True)
        build_labeler(job.config, job.key)  # fail fast here on a bad key or option
        job.start()
        tasks: list[Task] = []
        ctxs: dict[str, Ctx] = {}
        for item, ctx in job.items(job.entries(None), lambda: None):
            if isinstance(item, MemberResult):
                job.record(item, ctx)
            else:
                tasks.append(item)
                ctxs[item.path] = ctx
        if tasks:
            cores = os.cpu_count() or 1
            parts = npartitions or max(1, min(len(tasks), cores * 4))
            partitions = db.from_sequence(tasks, npartitions=parts).map(_dask_work, job.config, job.key).to_delayed()
            for results in _finished_partitions(partitions, scheduler, wave=cores):
                for res in results:
                    job.record(res, ctxs[res.path])
        return job.finish()
    finally:
        job.close()


def _finished_partitions(partitions: list[Any], scheduler: str, wave: int) -> Iterator[list[MemberResult]]:
    """Each partition's results once it is done: on a cluster as each finishes, locally ``wave`` partitions at a time
    (the local schedulers return only when everything they were given is done)."""
    if scheduler in _LOCAL:
        import dask

        for i in range(0, len(partitions), wave):
            yield from dask.compute(*partitions[i : i + wave], scheduler=scheduler)
        return
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise MissingDependency("a cluster address needs dask.distributed: pip install 'dask[distributed]'") from None
    with Client(scheduler) as client:
        for fut in as_completed(client.compute(partitions)):
            yield fut.result()


# Statuses re-exported for callers that only import this module.
STATUSES = (LABELLED, COPIED, FAILED, REFUSED)
