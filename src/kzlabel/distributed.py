"""Run the batch's per-file work on Dask, for folders too big for one machine's cores.

The work per file is exactly :func:`kzlabel.batch.process_member` (no second copy of the logic), and the run
around it is the batch's own (:class:`kzlabel.batch.job.MarkJob`: checks, SQLite journal and resume, archive
assembly, reports); this module only ships the tasks to Dask in chunks (one Dask task per chunk) and journals each
chunk's results on the client as the chunk finishes. Each Dask worker process builds its Labeler once (cached by
config) from the key folder, which must be readable at the same path on every worker (docs/batch.md, "On a Dask
cluster").

On a cluster (``scheduler="tcp://host:port"``) a worker that dies takes its running chunk with it: Dask re-runs the
chunk elsewhere (up to the scheduler's ``allowed-failures``), and past that the chunk's members are reported
``failed`` with the reason while the other chunks go on; re-running the same call resumes from the journal and
retries only what failed or never finished, so every member ends up labelled once, by the run that journalled it.

Dask also re-runs a chunk that had *finished* when the worker holding its result died, even after the client took
the result (it was still wanted until released): that second run would label the chunk's members again over the
outputs the journal already vouches for. So a finished chunk leaves its results in a marker file (in
``DST.dask-chunks/``, beside DST, which workers share) and a re-run of the same chunk returns them without touching
any output. (Measured: with a worker killed just after a chunk was journalled, 4 test runs in 12 relabelled a journalled
member before this.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
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
from .io import write_atomic

__all__ = ["run_dask"]

_LABELERS: dict[str, Any] = {}  # per worker process: config fingerprint → Labeler


def _labeler_for(config: Mapping[str, Any], key_dir: str) -> Any:
    key = hashlib.sha256(json.dumps([dict(config), key_dir], sort_keys=True, default=repr).encode()).hexdigest()
    lab = _LABELERS.get(key)
    if lab is None:
        lab = _LABELERS[key] = build_labeler(config, key_dir)
    return lab


def _dask_chunk(
    chunk: Sequence[Task], config: Mapping[str, Any], key_dir: str, marker: str | None = None
) -> list[MemberResult]:
    """What each Dask task runs: the batch's own per-member function over a chunk, with a cached Labeler. With a
    ``marker`` path, a chunk that already finished (Dask re-running it after the result was lost) returns the results
    it left there instead of labelling its members a second time."""
    if marker is not None and os.path.exists(marker):
        with open(marker, encoding="utf-8") as fh:
            return [MemberResult(**{**d, "layers": tuple(d["layers"])}) for d in json.load(fh)]
    try:
        labeler = _labeler_for(config, key_dir)
    except Exception as exc:  # noqa: BLE001 - a worker without the key fails its members, with the reason
        return [MemberResult(t.path, FAILED, None, f"cannot build the labeler on this worker: {exc}") for t in chunk]
    results = [process_member(task, labeler) for task in chunk]
    if marker is not None:
        done = json.dumps([dataclasses.asdict(r) for r in results], default=str).encode()
        write_atomic(marker, done)
    return results


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
    "tcp://10.0.0.5:8786" (needs ``dask.distributed``; SRC, DST and the key folder must be at the same paths on every
    worker, a shared filesystem; the journal and the reports stay on this machine). The members are cut into
    ``npartitions`` chunks (default: four per local core), one Dask task each, and journalled as their chunk finishes
    (locally, in waves of one chunk per core), so re-running the same call after a crash skips what is done, exactly
    as :func:`kzlabel.batch.run_batch` does.

    ``_hooks`` is for the crash tests only; run_dask honours its ``after_commit``.
    """
    try:
        import dask  # noqa: F401 - checked here, before any work; the schedulers import it where they run
    except ImportError:
        raise MissingDependency("Dask is not installed: pip install 'kzlabel[dask]'") from None
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
            size = -(-len(tasks) // parts)
            chunks = [tasks[i : i + size] for i in range(0, len(tasks), size)]
            markers = Path(str(job.dst) + ".dask-chunks")
            try:
                for results in _finished_chunks(chunks, scheduler, job.config, str(job.key), cores, markers):
                    for res in results:
                        job.record(res, ctxs[res.path])
            finally:
                shutil.rmtree(markers, ignore_errors=True)
        return job.finish()
    finally:
        job.close()


def _finished_chunks(
    chunks: list[list[Task]], scheduler: str, config: Mapping[str, Any], key_dir: str, wave: int, markers: Path
) -> Iterator[list[MemberResult]]:
    """Each chunk's results once it is done: on a cluster as each finishes (each chunk with a marker file in
    ``markers``), locally ``wave`` chunks at a time (the local schedulers return only when everything they were given
    is done, and never re-run a finished task)."""
    if scheduler in _LOCAL:
        import dask

        work = [dask.delayed(_dask_chunk, pure=False)(chunk, config, key_dir) for chunk in chunks]
        for i in range(0, len(work), wave):
            yield from dask.compute(*work[i : i + wave], scheduler=scheduler)
        return
    try:
        from dask.distributed import Client, as_completed
    except ImportError:
        raise MissingDependency("a cluster address needs dask.distributed: pip install 'kzlabel[dask]'") from None
    try:
        client = Client(scheduler, timeout=30)
    except (OSError, TimeoutError) as exc:
        raise KzlabelError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    shutil.rmtree(markers, ignore_errors=True)  # a crashed run's: this run's chunks are new tasks
    markers.mkdir(parents=True)  # the workers write here: as open as DST itself
    run = uuid.uuid4().hex[:12]
    with client:
        futures = {
            client.submit(_dask_chunk, chunk, config, key_dir, str(markers / f"{run}-{i}.json"), pure=False): chunk
            for i, chunk in enumerate(chunks)
        }
        for fut in as_completed(futures):
            try:
                results = fut.result()
            except Exception as exc:  # noqa: BLE001 - a dead worker (KilledWorker) or a lost task: its members fail
                why = "its Dask worker died" if type(exc).__name__ == "KilledWorker" else "its Dask task failed"
                results = [
                    MemberResult(t.path, FAILED, None, f"{why} ({type(exc).__name__}: {exc})") for t in futures[fut]
                ]
            fut.release()  # no longer wanted: a result lost with its worker from now on is not recomputed
            yield results


# Statuses re-exported for callers that only import this module.
STATUSES = (LABELLED, COPIED, FAILED, REFUSED)
