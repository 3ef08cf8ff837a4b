"""Label, verify or training-check a whole folder or archive, member by member, on all cores, resumably.

Why this shape:

* Archives are streamed member by member and at most ``2 × workers`` members are in flight, so a 100 GB tar never
  sits in memory.
* Every finished member is recorded in a SQLite journal *after* its output is durably on disk (fsync + rename), so a
  run killed with ``kill -9`` resumes where it stopped and reuses what was already produced; archive outputs are
  assembled at the end in sorted member order with the source's metadata, so a resumed run gives the same archive an
  uninterrupted run would have given for the same produced members.
* Hostile members (path traversal, absolute paths, links, devices, bombs) are refused with a reason, never written.

The modules, from the bottom up: :mod:`.model` (statuses and the data passed around), :mod:`.archives` (reading
folders, zips and tars safely), :mod:`.journal`, :mod:`.config` (a Labeler from picklable settings),
:mod:`.output` (durable writes, folder metadata, archive assembly), :mod:`.members` (one member's work),
:mod:`.progress`, :mod:`.executor` (the process pool) and :mod:`.job` (the runs). The per-member functions
(:func:`process_member`, :func:`build_labeler`) and :class:`~kzlabel.batch.job.MarkJob` are shared with
:mod:`kzlabel.distributed`.
"""

from __future__ import annotations

from .archives import iter_entries, kind_of, safe_member_path
from .config import build_labeler, portable_config
from .job import run_batch, training_check, verify_batch
from .members import process_member
from .model import (
    COPIED,
    DEFAULT_BOMB_MIN_BYTES,
    DEFAULT_BOMB_RATIO,
    DEFAULT_MAX_MEMBER_BYTES,
    DEFAULT_MAX_TOTAL_RATIO,
    FAILED,
    LABELLED,
    REFUSED,
    SITE_RULES,
    SKIPPED_DONE,
    UNSUPPORTED,
    BatchSummary,
    Entry,
    MemberResult,
    Meta,
    Refused,
    Safety,
    Task,
)

__all__ = [
    "BatchSummary",
    "COPIED",
    "DEFAULT_BOMB_MIN_BYTES",
    "DEFAULT_BOMB_RATIO",
    "DEFAULT_MAX_MEMBER_BYTES",
    "DEFAULT_MAX_TOTAL_RATIO",
    "Entry",
    "FAILED",
    "LABELLED",
    "MemberResult",
    "Meta",
    "REFUSED",
    "Refused",
    "SITE_RULES",
    "SKIPPED_DONE",
    "Safety",
    "Task",
    "UNSUPPORTED",
    "build_labeler",
    "iter_entries",
    "kind_of",
    "portable_config",
    "process_member",
    "run_batch",
    "safe_member_path",
    "training_check",
    "verify_batch",
]
