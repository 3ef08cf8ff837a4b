"""Run the batch's per-file work on Dask, for folders too big for one machine's cores.

The work per file is exactly :func:`kzlabel.batch.process_member` (no second copy of the logic); this module only
builds the task list from a folder, ships it as a ``dask.bag`` and writes the same reports as ``run_batch``. Each Dask
worker process builds its Labeler once (cached by config) from the key folder, which must be readable on every worker.
There is no journal here: a Dask cluster retries failed tasks itself, and outputs are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .batch import (
    COPIED,
    FAILED,
    LABELLED,
    REFUSED,
    BatchSummary,
    MemberResult,
    Meta,
    Safety,
    Task,
    _inside,
    _Refused,
    _sidecar,
    _write_report,
    build_labeler,
    iter_entries,
    portable_config,
    process_member,
    restore_dirs,
)
from .errors import KzlabelError, MissingDependency
from .pipeline import write_atomic

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


def run_dask(
    src_dir: str | os.PathLike,
    dst_dir: str | os.PathLike,
    labeler_config: Mapping[str, Any],
    key_dir: str | os.PathLike,
    scheduler: str = "processes",
    *,
    npartitions: int | None = None,
    report_path: str | os.PathLike | None = None,
    summary_path: str | os.PathLike | None = None,
    max_member_bytes: int = 1024**3,
) -> BatchSummary:
    """Label a folder into a folder on Dask.

    ``scheduler``: "processes", "threads" or "sync" (local), or a distributed scheduler address such as
    "tcp://10.0.0.5:8786" (needs ``dask.distributed``; SRC, DST and the key folder must be on a shared filesystem).
    """
    try:
        import dask.bag as db
    except ImportError:
        raise MissingDependency("Dask is not installed: pip install kzlabel[dask]") from None
    t0 = time.monotonic()
    src, dst = Path(src_dir), Path(dst_dir)
    if not src.is_dir():
        raise KzlabelError("run_dask needs a folder as source", source=str(src))
    dst.mkdir(parents=True, exist_ok=True)
    config = portable_config(labeler_config)
    key = str(Path(key_dir).resolve())
    build_labeler(config, key)  # fail fast here on a bad key or option
    report_p = Path(report_path) if report_path is not None else _sidecar(dst, ".report.jsonl")
    summary_p = Path(summary_path) if summary_path is not None else _sidecar(dst, ".summary.txt")

    results: list[MemberResult] = []
    tasks: list[Task] = []
    dirs: list[tuple[str, Meta]] = []
    for entry in iter_entries(src, Safety(max_member_bytes), exclude=[dst, report_p, summary_p]):
        if entry.kind == "dir":
            dirs.append((entry.path, entry.meta))
        elif entry.kind == "refused":
            results.append(MemberResult(entry.path, REFUSED, None, entry.reason))
        else:
            try:
                out = _inside(dst, entry.path)
            except _Refused as exc:
                results.append(MemberResult(entry.path, REFUSED, None, str(exc)))
                continue
            tasks.append(
                Task("mark", entry.path, src_file=entry.src_file, out=str(out), meta=entry.meta, apply_meta=True)
            )

    if tasks:
        parts = npartitions or max(1, min(len(tasks), (os.cpu_count() or 1) * 4))
        bag = db.from_sequence(tasks, npartitions=parts).map(_dask_work, config, key)
        if scheduler in ("processes", "threads", "sync", "synchronous", "single-threaded"):
            results.extend(bag.compute(scheduler=scheduler))
        else:
            try:
                from dask.distributed import Client
            except ImportError:
                raise MissingDependency(
                    "a cluster address needs dask.distributed: pip install 'dask[distributed]'"
                ) from None
            with Client(scheduler) as client:
                results.extend(client.compute(bag).result())

    restore_dirs(dst, dirs)
    results.sort(key=lambda r: r.path)
    summary = BatchSummary("mark", str(src), str(dst))
    for r in results:
        summary.add(r)
    summary.elapsed_s = time.monotonic() - t0
    _write_report(report_p, results)
    write_atomic(summary_p, summary.text().encode("utf-8"))
    summary.report_path, summary.summary_path = str(report_p), str(summary_p)
    return summary


# Statuses re-exported for callers that only import this module.
STATUSES = (LABELLED, COPIED, FAILED, REFUSED)
