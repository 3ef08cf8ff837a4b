"""The batch's vocabulary: member outcomes, the limits a source is read under, and the plain data that passes
between the readers, the workers, the journal and the reports.

Everything here is a small picklable value (a Task crosses a process pipe or a Dask graph; a MemberResult comes back
the same way), so the other batch modules share these shapes and none of them has to import another's internals.
:class:`FaultHooks` is the one exception to "plain data": it lets the crash and worker-death tests inject their
faults without any test switch in the production code path.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..report import Verdict

GiB = 1024**3
MiB = 1024**2
DEFAULT_MAX_MEMBER_BYTES = 1 * GiB
DEFAULT_MAX_TOTAL_RATIO = 200.0  # whole-archive expansion (decompressed / compressed) tolerated past BOMB_MIN_BYTES
DEFAULT_BOMB_RATIO = 100.0  # one zip member's declared size / compressed size
DEFAULT_BOMB_MIN_BYTES = 16 * MiB  # below this, a high ratio is just a compressible file
CHUNK = 1 * MiB

# Member outcomes (the JSONL ``status`` field).
LABELLED = "labelled"
COPIED = "copied-unsupported"
FAILED = "failed"
REFUSED = "refused"
SKIPPED_DONE = "skipped-done"
UNSUPPORTED = "unsupported"  # verify / training check: nothing to say about this file
COMPLIANT = Verdict.COMPLIANT.value  # verify: a member's status is its verdict
SITE_RULES = "tdmrep-site-rules"  # training check: the source's /.well-known/tdmrep.json, applied to other members
_MAY_NOT_USE = ("notAllowed", "constrained")  # training statuses a trainer must filter out
DIR = "dir"  # journal-only: a directory entry kept for the output's structure


@dataclass(frozen=True)
class Meta:
    """Source metadata we carry to the output (mtime/mode for everyone, owner fields for tar)."""

    mode: int | None = None
    mtime_ns: int | None = None
    uid: int | None = None
    gid: int | None = None
    uname: str | None = None
    gname: str | None = None


def safe_mode(mode: int, *, is_dir: bool) -> int:
    """The permissions an output gets for a source mode, as Python's tarfile ``data`` filter extracts them.

    Setuid, setgid and sticky bits and group/other write are dropped (``& 0o755``); a file the owner cannot execute
    is executable by no one, and its owner can read and write it. A folder keeps its remaining bits plus owner
    ``rwx`` (the ``data`` filter ignores a folder's mode; the owner must be able to enter and fill it). Applied to
    every output, whatever the source (folder, zip or tar) and the destination (folder or archive): a source mode of
    04777 comes out as 0755, a folder's 0777 as 0755.
    """
    mode &= 0o755
    if is_dir:
        return mode | stat.S_IRWXU
    if not mode & stat.S_IXUSR:
        mode &= ~0o111
    return mode | 0o600


@dataclass
class Entry:
    """One source member as the reader saw it; ``data``/``src_file`` is absent when refused or skipped."""

    path: str
    kind: str  # "file" | "dir" | "refused"
    meta: Meta = field(default_factory=Meta)
    size: int = 0
    data: bytes | None = None
    src_file: str | None = None
    reason: str = ""
    spilled: bool = False  # src_file is a temp copy of an archive member, to delete after use


@dataclass(frozen=True)
class Task:
    """Picklable unit of work for a worker process (or a Dask task)."""

    op: str  # "mark" | "verify" | "training"
    path: str
    data: bytes | None = None
    src_file: str | None = None
    out: str | None = None  # where to write the output (final file or staging part); None: do not write
    meta: Meta = field(default_factory=Meta)
    apply_meta: bool = False  # folder output: set mode/mtime on the written file
    use: str = "ai_training"
    allow_untrusted: bool = False  # verify: accept a compliant member whose signer is not under the trust anchors
    sidecar: bytes | None = None  # verify: the member's sidecar C2PA manifest (its companion ``X.c2pa``)
    sidecar_name: str | None = None  # that companion's file name, for the evidence


@dataclass
class MemberResult:
    """The outcome for one member; one JSONL line."""

    path: str
    status: str
    format: str | None = None
    reason: str = ""
    content_id: str | None = None
    sha256: str | None = None
    size: int | None = None
    layers: tuple[str, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "path": self.path,
            "format": self.format,
            "status": self.status,
            "reason": self.reason or None,
            "content_id": self.content_id,
            "sha256": self.sha256,
        }
        if self.layers or self.skipped:
            d["layers"] = list(self.layers)
            d["skipped_layers"] = self.skipped
        if self.resumed:
            d["resumed"] = True
        d.update(self.extra)
        return d


@dataclass
class BatchSummary:
    """Counts and failures of one batch run; ``text()`` is the human summary written next to the output."""

    operation: str
    src: str
    dst: str | None = None
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # status (or verdict / training state) → members
    by_format: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (path, status, reason): failed / refused
    flagged: list[str] = field(default_factory=list)  # training check: members that may not be used
    # verify with trust anchors: compliant members none of whose signed layers is trusted (not accepted)
    untrusted: list[str] = field(default_factory=list)
    allow_untrusted: bool = False  # verify: such members are accepted after all (still listed)
    resumed: int = 0
    aborted: str | None = None
    elapsed_s: float = 0.0
    report_path: str | None = None
    summary_path: str | None = None
    journal_path: str | None = None

    def add(self, r: MemberResult) -> None:
        self.total += 1
        self.counts[r.status] = self.counts.get(r.status, 0) + 1
        fmt = r.format or "-"
        per = self.by_format.setdefault(fmt, {})
        per[r.status] = per.get(r.status, 0) + 1
        if r.status in (FAILED, REFUSED):
            self.problems.append((r.path, r.status, r.reason))
        if r.resumed:
            self.resumed += 1
        if self.operation == "training" and r.status in _MAY_NOT_USE:
            self.flagged.append(r.path)
        checked = self.operation == "verify" and r.extra.get("trust_checked")
        if checked and r.status == COMPLIANT and r.extra.get("trusted") is False:
            self.untrusted.append(r.path)

    @property
    def ok(self) -> bool:
        """No member failed and the run was not aborted (refusals are deliberate, not failures)."""
        return not self.counts.get(FAILED) and self.aborted is None

    @property
    def accepted(self) -> bool:
        """verify: the run is :attr:`ok` and every member is compliant, with a trusted signer when trust anchors
        were given (unless ``allow_untrusted``): what ``kzlabel batch --verify`` exits 0 for. Unsupported, refused
        and failed members are not accepted."""
        compliant = self.counts.get(COMPLIANT, 0)
        trusted_enough = self.allow_untrusted or not self.untrusted
        return self.ok and compliant == self.total and trusted_enough

    @property
    def rate(self) -> float:
        return self.total / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "src": self.src,
            "dst": self.dst,
            "total": self.total,
            "counts": dict(sorted(self.counts.items())),
            "by_format": {k: dict(sorted(v.items())) for k, v in sorted(self.by_format.items())},
            "problems": [{"path": p, "status": s, "reason": r} for p, s, r in self.problems],
            "flagged": self.flagged,
            **({"untrusted": self.untrusted, "accepted": self.accepted} if self.operation == "verify" else {}),
            "resumed": self.resumed,
            "aborted": self.aborted,
            "elapsed_s": round(self.elapsed_s, 3),
        }

    def text(self) -> str:
        head = {
            "mark": "kzlabel batch",
            "verify": "kzlabel batch --verify",
            "training": "kzlabel batch --training-check",
        }
        lines = [f"{head.get(self.operation, self.operation)}: {self.src}" + (f" -> {self.dst}" if self.dst else "")]
        lines.append(f"{self.total} members in {self.elapsed_s:.1f} s ({self.rate:.1f}/s)")
        if self.resumed:
            lines.append(f"{self.resumed} taken from the journal of an earlier run")
        if self.aborted:
            lines.append(f"ABORTED: {self.aborted}")
        lines.append("")
        lines.append("by status:")
        for k, v in sorted(self.counts.items()):
            lines.append(f"  {k:<20} {v}")
        lines.append("by format:")
        for fmt, per in sorted(self.by_format.items()):
            lines.append(f"  {fmt:<12} " + ", ".join(f"{k} {v}" for k, v in sorted(per.items())))
        if self.flagged:
            lines.append(f"may not be used ({len(self.flagged)}):")
            lines.extend(f"  {p}" for p in self.flagged)
        if self.untrusted:
            how = "accepted: --allow-untrusted" if self.allow_untrusted else "not accepted"
            lines.append(f"compliant but signed outside the trust anchors ({len(self.untrusted)}, {how}):")
            lines.extend(f"  {p}" for p in self.untrusted)
        if self.problems:
            lines.append(f"failed or refused ({len(self.problems)}):")
            lines.extend(f"  [{s}] {p}: {r}" for p, s, r in self.problems)
        return "\n".join(lines) + "\n"


class Refused(Exception):
    """A member path or entry we will not touch."""


@dataclass(frozen=True)
class Safety:
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    max_total_ratio: float = DEFAULT_MAX_TOTAL_RATIO
    bomb_ratio: float = DEFAULT_BOMB_RATIO
    bomb_min_bytes: int = DEFAULT_BOMB_MIN_BYTES


@dataclass(frozen=True)
class Ctx:
    """What the driver keeps about a member while its task is in flight."""

    meta: Meta = field(default_factory=Meta)
    part: str | None = None  # archive DST: the staged output's name under DST.parts
    spilled: str | None = None  # temp copy of a big archive member, deleted once the member is finished


Item = tuple["Task | MemberResult", Ctx]  # a task to run, or a result known without running one (refusals)


@dataclass(frozen=True)
class FaultHooks:
    """Fault injection for the batch's own crash tests; production code never sets it.

    ``after_commit(n)`` runs in the driver after the n-th journal commit (a test ends the process there to act out
    ``kill -9``); ``before_member(task)`` runs wherever a member is processed, in a pool worker when there is a pool
    (a test exits there to act out a C library crashing its worker), so it must be picklable: a module-level function.
    """

    after_commit: Callable[[int], None] | None = None
    before_member: Callable[[Task], Any] | None = None
