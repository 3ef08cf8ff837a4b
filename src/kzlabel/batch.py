"""Label, verify or training-check a whole folder or archive, member by member, on all cores, resumably.

Why this shape:

* Archives are streamed member by member and at most ``2 × workers`` members are in flight, so a 100 GB tar never
  sits in memory.
* Every finished member is recorded in a SQLite journal *after* its output is durably on disk (fsync + rename), so a
  run killed with ``kill -9`` resumes where it stopped and reuses what was already produced; archive outputs are
  assembled at the end in sorted member order with the source's metadata, so a resumed run gives the same archive an
  uninterrupted run would have given for the same produced members.
* Hostile members (path traversal, absolute paths, links, devices, bombs) are refused with a reason, never written.

The per-member functions (:func:`process_member`, :func:`build_labeler`) are shared with :mod:`kzlabel.distributed`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import stat
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from .errors import KzlabelError, LimitExceeded, UnsupportedFormat
from .io import Limits, sidecar_path, write_atomic

__all__ = [
    "BatchSummary",
    "MemberResult",
    "Task",
    "build_labeler",
    "process_member",
    "run_batch",
    "training_check",
    "verify_batch",
]

GiB = 1024**3
MiB = 1024**2
DEFAULT_MAX_MEMBER_BYTES = 1 * GiB
DEFAULT_MAX_TOTAL_RATIO = 200.0  # whole-archive expansion (decompressed / compressed) tolerated past BOMB_MIN_BYTES
DEFAULT_BOMB_RATIO = 100.0  # one zip member's declared size / compressed size
DEFAULT_BOMB_MIN_BYTES = 16 * MiB  # below this, a high ratio is just a compressible file
CHUNK = 1 * MiB
SPILL_OVER = 64 * MiB  # archive members above this go to a temp file instead of memory / the worker pipe
_CRASH_ENV = "KZLABEL_BATCH_TEST_CRASH_AFTER"  # test hook: die like kill -9 after N journal commits
_WORKER_DIE_ENV = "KZLABEL_BATCH_TEST_WORKER_DIES_ON"  # test hook: a pool worker exits on this member path

# Member outcomes (the JSONL ``status`` field).
LABELLED = "labelled"
COPIED = "copied-unsupported"
FAILED = "failed"
REFUSED = "refused"
SKIPPED_DONE = "skipped-done"
UNSUPPORTED = "unsupported"  # verify / training check: nothing to say about this file
SITE_RULES = "tdmrep-site-rules"  # training check: the source's /.well-known/tdmrep.json, applied to other members
_MAY_NOT_USE = ("notAllowed", "constrained")  # training statuses a trainer must filter out
_DIR = "dir"  # journal-only: a directory entry kept for the output's structure


# --------------------------------------------------------------------------------------------------------------------
# Data shapes
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Meta:
    """Source metadata we carry to the output (mtime/mode for everyone, owner fields for tar)."""

    mode: int | None = None
    mtime_ns: int | None = None
    uid: int | None = None
    gid: int | None = None
    uname: str | None = None
    gname: str | None = None


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

    @property
    def ok(self) -> bool:
        """No member failed and the run was not aborted (refusals are deliberate, not failures)."""
        return not self.counts.get(FAILED) and self.aborted is None

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
        if self.problems:
            lines.append(f"failed or refused ({len(self.problems)}):")
            lines.extend(f"  [{s}] {p}: {r}" for p, s, r in self.problems)
        return "\n".join(lines) + "\n"


class _Refused(Exception):
    """A member path or entry we will not touch."""


# --------------------------------------------------------------------------------------------------------------------
# Building a Labeler from picklable config (once per worker)
# --------------------------------------------------------------------------------------------------------------------
_CONFIG_KEYS_PASSED_AS_IS = {
    "owner",
    "system",
    "system_version",
    "languages",
    "source_type",
    "training",
    "depicts_real_person",
    "producer_id",
    "layers",
    "position",
    "style",
    "thumbnail",
    "pages",
    "video_warning",
    "audio_notice",
}


def _trust_from(value: Any) -> Any:
    from .keys import TrustStore, parse_certs

    if value is None or isinstance(value, TrustStore):
        return value
    if isinstance(value, (bytes, bytearray)):
        return TrustStore(parse_certs(bytes(value), "<trust>", "trust bundle"))
    return TrustStore.load(value)


def portable_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with unpicklable values (a TrustStore, a Registry) replaced by what rebuilds them."""
    from .keys import TrustStore
    from .registry import Registry

    out = dict(config)
    if isinstance(out.get("trust"), TrustStore):
        out["trust"] = out["trust"].pem().encode("ascii")
    if isinstance(out.get("registry"), Registry):
        out["registry"] = out["registry"].path
    if isinstance(out.get("limits"), Limits):
        lim = out["limits"]
        out["limits"] = {k: getattr(lim, k) for k in ("max_pixels", "max_bytes", "max_text_bytes", "max_duration_s")}
    for k in ("layers", "languages"):
        if k in out and out[k] is not None and not isinstance(out[k], (str, list, tuple)):
            out[k] = sorted(out[k])
    return out


def build_labeler(config: Mapping[str, Any], key_dir: str | os.PathLike | None) -> Any:
    """A Labeler from a plain dict: what a worker process builds once in its initializer.

    Keys: any ``Labeler`` keyword (owner, system, system_version, languages, source_type, training, layers, position,
    style, thumbnail, pages, video_warning, audio_notice, depicts_real_person, producer_id), plus ``watermark_key`` (bytes or hex),
    ``trust`` (path(s) or PEM bytes), ``registry`` (path of a registry SQLite file) and ``limits`` (dict of Limits).
    """
    from .keys import Signer
    from .pipeline import Labeler
    from .registry import Registry

    unknown = set(config) - _CONFIG_KEYS_PASSED_AS_IS - {"watermark_key", "trust", "registry", "limits"}
    if unknown:
        raise KzlabelError(f"unknown labeler option(s): {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {k: v for k, v in config.items() if k in _CONFIG_KEYS_PASSED_AS_IS and v is not None}
    if isinstance(kwargs.get("layers"), str):
        kwargs["layers"] = [x.strip() for x in kwargs["layers"].split(",") if x.strip()]
    if isinstance(kwargs.get("languages"), str):
        kwargs["languages"] = [x.strip() for x in kwargs["languages"].split(",") if x.strip()]
    wk = config.get("watermark_key")
    if isinstance(wk, str):
        wk = bytes.fromhex(wk)
    lim = config.get("limits")
    limits = Limits(**lim) if isinstance(lim, Mapping) else (lim or Limits())
    reg = config.get("registry")
    registry = Registry(reg) if isinstance(reg, (str, os.PathLike)) else reg
    signer = Signer.load(key_dir) if key_dir is not None else None
    return Labeler(
        signer,
        watermark_key=wk,
        trust=_trust_from(config.get("trust")),
        registry=registry,
        limits=limits,
        **kwargs,
    )


# --------------------------------------------------------------------------------------------------------------------
# The per-member work (runs in a worker process, a Dask task, or inline)
# --------------------------------------------------------------------------------------------------------------------
def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _apply_meta(path: Path, meta: Meta) -> None:
    if meta.mode is not None:
        os.chmod(path, meta.mode & 0o7777)
    if meta.mtime_ns is not None:
        os.utime(path, ns=(meta.mtime_ns, meta.mtime_ns))


def _write_output(out: Path, data: bytes, meta: Meta, apply_meta: bool) -> None:
    """Durable write: temp + fsync + rename (write_atomic), then the source's mode/mtime, then the folder entry."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, data)
    if apply_meta:
        _apply_meta(out, meta)
    _fsync_dir(out.parent)


def _copy_output(src_file: Path, out: Path, meta: Meta, apply_meta: bool) -> tuple[str, int]:
    """Stream-copy an unsupported file (it may be big) with the same durability as _write_output."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.kztmp")
    h = hashlib.sha256()
    n = 0
    try:
        with open(src_file, "rb") as fi, open(tmp, "wb") as fo:
            while chunk := fi.read(CHUNK):
                h.update(chunk)
                n += len(chunk)
                fo.write(chunk)
            fo.flush()
            os.fsync(fo.fileno())
        if apply_meta:
            _apply_meta(tmp, meta)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(out.parent)
    return h.hexdigest(), n


def _error_result(task: Task, exc: BaseException) -> MemberResult:
    fmt = getattr(exc, "format", None)
    if isinstance(exc, LimitExceeded):
        return MemberResult(task.path, REFUSED, fmt, f"limit: {getattr(exc, 'message', exc)}")
    if isinstance(exc, KzlabelError):
        return MemberResult(task.path, FAILED, fmt, exc.message)
    if isinstance(exc, MemoryError):
        return MemberResult(task.path, FAILED, fmt, "out of memory")
    return MemberResult(task.path, FAILED, fmt, f"{type(exc).__name__}: {exc}")


def _source(task: Task) -> Any:
    return task.data if task.data is not None else task.src_file


def process_member(task: Task, labeler: Any) -> MemberResult:
    """Do one member's work and never raise: every problem becomes a result with a reason."""
    name = PurePosixPath(task.path).name
    try:
        if task.op == "mark":
            return _mark_member(task, labeler, name)
        if task.op == "verify":
            return _verify_member(task, labeler, name)
        if task.op == "training":
            return _training_member(task, labeler, name)
        raise ValueError(f"unknown batch operation {task.op!r}")
    except UnsupportedFormat as exc:
        return MemberResult(task.path, UNSUPPORTED, None, exc.message)
    except Exception as exc:  # noqa: BLE001 - one bad member must not stop the batch
        return _error_result(task, exc)


def _mark_member(task: Task, labeler: Any, name: str) -> MemberResult:
    out = Path(task.out) if task.out else None
    try:
        res = labeler.mark(_source(task), None, name=name)
    except UnsupportedFormat as exc:
        if out is None:
            return MemberResult(task.path, COPIED, None, exc.message)
        if task.data is not None:
            _write_output(out, task.data, task.meta, task.apply_meta)
            sha, size = _sha256_bytes(task.data), len(task.data)
        else:
            assert task.src_file is not None
            sha, size = _copy_output(Path(task.src_file), out, task.meta, task.apply_meta)
        return MemberResult(task.path, COPIED, None, exc.message, None, sha, size)
    layers, skipped = tuple(res.layers), dict(res.skipped)
    if out is not None:
        if res.c2pa_sidecar is not None and task.apply_meta:  # folder DST: the manifest goes beside the output
            _write_output(sidecar_path(out), res.c2pa_sidecar, task.meta, task.apply_meta)
            layers, _ = layers + ("c2pa",), skipped.pop("c2pa", None)
        _write_output(out, res.data, task.meta, task.apply_meta)
    return MemberResult(
        task.path,
        LABELLED,
        res.format,
        "",
        res.label.content_id,
        _sha256_bytes(res.data),
        len(res.data),
        layers,
        skipped,
    )


def _needs_sidecar(path: Path) -> bool:
    """Whether labelling ``path`` writes a sidecar C2PA manifest beside it (a type the C2PA library cannot embed
    into); False for anything unreadable or unsupported."""
    from . import formats
    from .io import Input

    try:
        from .layers import c2pa as c2pa_layer

        handler = formats.detect(Input(path=path, name=path.name))
        return "c2pa" in handler.layers and handler.mime not in c2pa_layer.supported_mime_types()
    except (KzlabelError, ImportError, OSError):
        return False


def _verify_member(task: Task, labeler: Any, name: str) -> MemberResult:
    rep = labeler.verify(_source(task), name=name)
    d = rep.to_dict()
    return MemberResult(
        task.path,
        rep.verdict.value,
        rep.format,
        "",
        rep.label.content_id if rep.label else None,
        extra={"trusted": d["trusted"], "evidence": d["evidence"]},
    )


def _training_member(task: Task, labeler: Any, name: str) -> MemberResult:
    from . import formats
    from .io import read_input
    from .rights.actions import read_signals
    from .rights.vocab import decide

    inp = read_input(_source(task), labeler.limits, name)
    handler = formats.detect(inp)
    check = decide(read_signals(inp, handler, labeler.limits, labeler.trust), task.use, inp.source)
    return _training_result(task.path, handler.id, check)


def _training_result(path: str, fmt: str | None, check: Any, note: str = "") -> MemberResult:
    """One member's training decision as a report line; conflicting carriers are named with what each says."""
    reasons = []
    if check.conflicting:
        said = [f"{s.carrier}: {s.uses[check.use].value}" for s in check.signals if check.use in s.uses]
        said = said or [s.carrier for s in check.signals]
        reasons.append("conflicting signals: " + "; ".join(said))
    if note:
        reasons.append(note)
    d = check.to_dict()
    extra = {"uses": d["uses"], "signals": d["signals"]}
    return MemberResult(path, check.status.value, fmt, "; ".join(reasons), extra=extra)


# Worker-process state: one Labeler per process, built in the initializer from picklable config.
_WORKER_LABELER: Any = None


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


def _init_worker(config: Mapping[str, Any], key_dir: str | None) -> None:
    global _WORKER_LABELER
    _die_with_parent()
    _WORKER_LABELER = build_labeler(config, key_dir)


def _run_in_worker(task: Task) -> MemberResult:
    if task.path and task.path == os.environ.get(_WORKER_DIE_ENV):
        os._exit(70)  # test hook: a worker dying on one member (a crashing C library)
    return process_member(task, _WORKER_LABELER)


# --------------------------------------------------------------------------------------------------------------------
# Member paths and safety
# --------------------------------------------------------------------------------------------------------------------
def safe_member_path(name: str) -> str:
    """Normalise an archive member name to a relative POSIX path, or refuse it (traversal, absolute, odd)."""
    if "\x00" in name:
        raise _Refused("member name contains a NUL byte")
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) >= 2 and raw[1] == ":" and raw[0].isalpha()):
        raise _Refused(f"absolute path {name!r}")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise _Refused(f"path traversal ('..') in {name!r}")
    if not parts:
        raise _Refused(f"empty member name {name!r}")
    return "/".join(parts)


def _inside(root: Path, rel: str) -> Path:
    """The output path for ``rel`` under ``root``, refusing anything that would resolve outside it."""
    target = (root / rel).resolve()
    base = root.resolve()
    if target != base and base not in target.parents:
        raise _Refused(f"{rel!r} would be written outside the destination")
    return target


@dataclass(frozen=True)
class Safety:
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    max_total_ratio: float = DEFAULT_MAX_TOTAL_RATIO
    bomb_ratio: float = DEFAULT_BOMB_RATIO
    bomb_min_bytes: int = DEFAULT_BOMB_MIN_BYTES


# --------------------------------------------------------------------------------------------------------------------
# Readers: folder, zip, tar (plain / gz / zst), all yielding Entries in a streaming fashion
# --------------------------------------------------------------------------------------------------------------------
_ARCHIVE_SUFFIXES = {
    ".zip": "zip",
    ".tar": "tar",
    ".tar.gz": "tgz",
    ".tgz": "tgz",
    ".tar.zst": "tzst",
    ".tar.zstd": "tzst",
    ".tzst": "tzst",
}


def kind_of(path: str | os.PathLike, *, existing: bool = False) -> str:
    """The kind ("folder", "zip", "tar", "tgz", "tzst"): by content for an existing source, by suffix otherwise."""
    p = Path(path)
    if existing and p.is_dir():
        return "folder"
    if existing and p.is_file():
        with open(p, "rb") as fh:
            head = fh.read(512)
        if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            return "zip"
        if head.startswith(b"\x1f\x8b"):
            return "tgz"
        if head.startswith(b"\x28\xb5\x2f\xfd"):
            return "tzst"
        if len(head) >= 262 and head[257:262] == b"ustar":
            return "tar"
    name = p.name.lower()
    for suf in sorted(_ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suf):
            return _ARCHIVE_SUFFIXES[suf]
    if existing and p.is_file():
        raise KzlabelError("not a folder or a supported archive (.zip, .tar, .tar.gz, .tgz, .tar.zst)", source=str(p))
    return "folder"


class _CountingReader(io.RawIOBase):
    """Counts compressed bytes read, for the whole-archive expansion ratio."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.fh.read(len(b))
        n = len(data)
        b[:n] = data
        self.count += n
        return n


def _read_limited(fh: IO[bytes], limit: int, what: str) -> bytes:
    """Read all of ``fh`` but stop as soon as it passes ``limit`` bytes (the size claimed may be a lie)."""
    buf = bytearray()
    while True:
        chunk = fh.read(min(CHUNK, limit + 1 - len(buf)))
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise _Refused(f"{what} expands past {limit} bytes")


def _read_member(fh: IO[bytes], limit: int, declared: int, spill_dir: Path | None) -> tuple[bytes | None, str | None]:
    """Member bytes in memory, or — when big — in a temp file, so in-flight work never holds GBs in RAM."""
    if spill_dir is None or declared <= SPILL_OVER:
        return _read_limited(fh, limit, "member"), None
    spill_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=spill_dir, suffix=".member")
    n = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := fh.read(CHUNK):
                n += len(chunk)
                if n > limit:
                    raise _Refused(f"member expands past {limit} bytes")
                out.write(chunk)
    except BaseException:
        os.unlink(tmp)
        raise
    return None, tmp


def _walk_folder(root: Path, safety: Safety, exclude: list[Path]) -> Iterator[Entry]:
    """Sorted walk; symlinks are reported, never followed; the destination (if inside) is left out."""
    excluded = {p.resolve() for p in exclude}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        keep = []
        for name in sorted(dirnames):
            p = d / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                yield Entry(rel, "refused", reason="symlink to a folder (not followed)")
                continue
            if p.resolve() in excluded:
                continue
            st = p.lstat()
            keep.append(name)
            yield Entry(rel, "dir", Meta(stat.S_IMODE(st.st_mode), st.st_mtime_ns))
        dirnames[:] = keep
        for name in sorted(filenames):
            p = d / name
            rel = p.relative_to(root).as_posix()
            if p.resolve() in excluded and not p.is_symlink():
                continue
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                yield Entry(rel, "refused", reason="symlink (not followed)")
            elif not stat.S_ISREG(st.st_mode):
                yield Entry(rel, "refused", reason="not a regular file (device, socket or pipe)")
            elif st.st_size > safety.max_member_bytes:
                yield Entry(
                    rel,
                    "refused",
                    size=st.st_size,
                    reason=f"{st.st_size} bytes, over the {safety.max_member_bytes}-byte limit",
                )
            else:
                yield Entry(rel, "file", Meta(stat.S_IMODE(st.st_mode), st.st_mtime_ns), st.st_size, src_file=str(p))


def _zip_mtime_ns(dt: tuple[int, ...]) -> int:
    return int(time.mktime((*dt[:6], 0, 0, -1))) * 1_000_000_000


def _walk_zip(path: Path, safety: Safety, skip: Callable[[str], bool], spill: Path | None) -> Iterator[Entry]:
    with zipfile.ZipFile(path) as zf:
        total_out = 0
        total_in = 0
        for info in zf.infolist():
            try:
                rel = safe_member_path(info.filename)
            except _Refused as exc:
                yield Entry(info.filename, "refused", reason=str(exc))
                continue
            unix = info.external_attr >> 16
            meta = Meta(stat.S_IMODE(unix) if unix else None, _zip_mtime_ns(info.date_time))
            if info.is_dir():
                yield Entry(rel, "dir", meta)
                continue
            if unix and stat.S_ISLNK(unix):
                yield Entry(rel, "refused", reason="symlink member")
                continue
            if unix and stat.S_IFMT(unix) not in (0, stat.S_IFREG):
                yield Entry(rel, "refused", reason="not a regular file (device or special member)")
                continue
            if info.flag_bits & 0x1:
                yield Entry(rel, "refused", reason="encrypted member")
                continue
            size = info.file_size
            if size > safety.max_member_bytes:
                yield Entry(
                    rel, "refused", meta, size, reason=f"{size} bytes, over the {safety.max_member_bytes}-byte limit"
                )
                continue
            ratio = size / max(info.compress_size, 1)
            if ratio > safety.bomb_ratio and size > safety.bomb_min_bytes:
                yield Entry(rel, "refused", meta, size, reason=f"zip bomb: expands {ratio:.0f}x to {size} bytes")
                continue
            total_out += size
            total_in += info.compress_size
            if total_out > safety.bomb_min_bytes and total_out / max(total_in, 1) > safety.max_total_ratio:
                yield Entry(
                    rel, "refused", meta, size, reason=f"archive expands more than {safety.max_total_ratio:.0f}x"
                )
                continue
            if skip(rel):
                yield Entry(rel, "file", meta, size)
                continue
            try:
                with zf.open(info) as fh:
                    data, spilled = _read_member(fh, min(size, safety.max_member_bytes), size, spill)
            except _Refused as exc:
                yield Entry(rel, "refused", meta, size, reason=f"{exc} (declared {size})")
                continue
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as exc:
                yield Entry(rel, "refused", meta, size, reason=f"unreadable member: {exc}")
                continue
            yield Entry(rel, "file", meta, size, data=data, src_file=spilled, spilled=spilled is not None)


def _open_tar_stream(path: Path, kind: str) -> tuple[tarfile.TarFile, _CountingReader, list[Any]]:
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller with the decompressor and tarfile
    counter = _CountingReader(raw)
    buffered = io.BufferedReader(counter, CHUNK)
    closers: list[Any] = [raw]
    if kind == "tgz":
        stream: IO[bytes] = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
        closers.insert(0, stream)
    elif kind == "tzst":
        try:
            import zstandard
        except ImportError:
            raw.close()
            from .errors import MissingDependency

            raise MissingDependency("reading .tar.zst needs zstandard: pip install kzlabel[batch]") from None
        stream = zstandard.ZstdDecompressor().stream_reader(buffered)  # type: ignore[assignment]
        closers.insert(0, stream)
    else:
        stream = buffered  # type: ignore[assignment]
    tf = tarfile.open(fileobj=stream, mode="r|")  # noqa: SIM115 - streamed by _walk_tar, closed there
    return tf, counter, closers


def _walk_tar(
    path: Path, kind: str, safety: Safety, skip: Callable[[str], bool], abort: list[str], spill: Path | None
) -> Iterator[Entry]:
    tf, counter, closers = _open_tar_stream(path, kind)
    total_out = 0
    try:
        while True:
            try:
                ti = tf.next()
            except (tarfile.TarError, OSError, EOFError) as exc:
                abort.append(f"archive unreadable after {total_out} bytes: {exc}")
                return
            if ti is None:
                return
            try:
                rel = safe_member_path(ti.name)
            except _Refused as exc:
                yield Entry(ti.name, "refused", reason=str(exc))
                continue
            meta = Meta(ti.mode, int(ti.mtime * 1_000_000_000), ti.uid, ti.gid, ti.uname, ti.gname)
            if ti.isdir():
                yield Entry(rel, "dir", meta)
                continue
            if ti.issym() or ti.islnk():
                yield Entry(
                    rel, "refused", reason=f"{'symlink' if ti.issym() else 'hardlink'} member -> {ti.linkname!r}"
                )
                continue
            if not ti.isreg():
                yield Entry(rel, "refused", reason="device, fifo or other special member")
                continue
            if ti.size > safety.max_member_bytes:
                yield Entry(
                    rel,
                    "refused",
                    meta,
                    ti.size,
                    reason=f"{ti.size} bytes, over the {safety.max_member_bytes}-byte limit",
                )
                continue
            total_out += ti.size
            if total_out > safety.bomb_min_bytes and total_out / max(counter.count, 1) > safety.max_total_ratio:
                yield Entry(
                    rel, "refused", meta, ti.size, reason=f"archive expands more than {safety.max_total_ratio:.0f}x"
                )
                abort.append(f"decompression bomb: archive expands more than {safety.max_total_ratio:.0f}x; stopped")
                return
            if skip(rel):
                yield Entry(rel, "file", meta, ti.size)
                continue
            fh = tf.extractfile(ti)
            try:
                data, spilled = _read_member(fh, safety.max_member_bytes, ti.size, spill) if fh else (b"", None)
            except (tarfile.TarError, OSError, EOFError) as exc:
                abort.append(f"archive unreadable in {rel}: {exc}")
                yield Entry(rel, "refused", meta, ti.size, reason=f"unreadable member: {exc}")
                return
            except _Refused as exc:
                yield Entry(rel, "refused", meta, ti.size, reason=str(exc))
                continue
            yield Entry(rel, "file", meta, ti.size, data=data, src_file=spilled, spilled=spilled is not None)
    finally:
        tf.close()
        for c in closers:
            try:
                c.close()
            except Exception:  # noqa: BLE001, S110 - closing a half-read stream may complain; nothing to do
                pass


def iter_entries(
    src: Path,
    safety: Safety,
    *,
    skip: Callable[[str], bool] = lambda _p: False,
    exclude: Iterable[Path] = (),
    abort: list[str] | None = None,
    spill_dir: Path | None = None,
) -> Iterator[Entry]:
    """Every member of a folder or archive, streamed; ``skip(path)`` true means "don't read its bytes".

    Archive members over SPILL_OVER bytes are written to a temp file in ``spill_dir`` (when given) and passed as
    ``src_file`` with ``spilled=True``; the caller deletes that file when the member is finished.
    """
    kind = kind_of(src, existing=True)
    abort = abort if abort is not None else []
    if kind == "folder":
        yield from _walk_folder(src, safety, list(exclude))
    elif kind == "zip":
        yield from _walk_zip(src, safety, skip, spill_dir)
    else:
        yield from _walk_tar(src, kind, safety, skip, abort, spill_dir)


def _count_members(src: Path, exclude: Iterable[Path]) -> int | None:
    """A cheap total for the progress bar (None for streamed tar: unknown until the end)."""
    kind = kind_of(src, existing=True)
    if kind == "folder":
        excluded = {p.resolve() for p in exclude}
        n = 0
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames[:] = [d for d in dirnames if (Path(dirpath) / d).resolve() not in excluded]
            n += len(filenames)
        return n
    if kind == "zip":
        with zipfile.ZipFile(src) as zf:
            return sum(1 for i in zf.infolist() if not i.is_dir())
    return None


# --------------------------------------------------------------------------------------------------------------------
# Journal
# --------------------------------------------------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    path TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    format TEXT,
    reason TEXT,
    content_id TEXT,
    sha256 TEXT,
    size INTEGER,
    part TEXT,
    mode INTEGER,
    mtime_ns INTEGER,
    uid INTEGER,
    gid INTEGER,
    uname TEXT,
    gname TEXT,
    layers TEXT,
    skipped TEXT
);
"""
_COLS = [
    "path",
    "status",
    "format",
    "reason",
    "content_id",
    "sha256",
    "size",
    "part",
    "mode",
    "mtime_ns",
    "uid",
    "gid",
    "uname",
    "gname",
    "layers",
    "skipped",
]
_FINAL = {LABELLED, COPIED, REFUSED, _DIR}  # journal statuses a resumed run does not redo (failed is retried)


class Journal:
    """SQLite record of finished members; a row is written only after its output is durable."""

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL survives a killed process (only a power cut may lose the last rows, which are then simply redone).
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (fingerprint,))
        elif row[0] != fingerprint:
            self.db.close()
            raise KzlabelError(
                "the journal belongs to a different batch (other source, destination or options); "
                "delete it or pass another --journal",
                source=str(path),
            )

    def get(self, rel: str) -> dict[str, Any] | None:
        row = self.db.execute(f"SELECT {', '.join(_COLS)} FROM members WHERE path=?", (rel,)).fetchone()
        return dict(zip(_COLS, row)) if row else None

    def done_paths(self) -> set[str]:
        q = f"SELECT path FROM members WHERE status IN ({','.join('?' * len(_FINAL))})"
        return {r[0] for r in self.db.execute(q, tuple(_FINAL))}

    def record(self, r: MemberResult, meta: Meta, part: str | None) -> None:
        self.db.execute(
            f"INSERT OR REPLACE INTO members ({', '.join(_COLS)}) VALUES ({', '.join('?' * len(_COLS))})",
            (
                r.path,
                r.status,
                r.format,
                r.reason,
                r.content_id,
                r.sha256,
                r.size,
                part,
                meta.mode,
                meta.mtime_ns,
                meta.uid,
                meta.gid,
                meta.uname,
                meta.gname,
                json.dumps(list(r.layers)),
                json.dumps(r.skipped, sort_keys=True),
            ),
        )

    def rows(self) -> Iterator[dict[str, Any]]:
        for row in self.db.execute(f"SELECT {', '.join(_COLS)} FROM members ORDER BY path"):
            yield dict(zip(_COLS, row))

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.db.close()


def _result_from_row(row: Mapping[str, Any], resumed: bool) -> MemberResult:
    return MemberResult(
        row["path"],
        row["status"],
        row["format"],
        row["reason"] or "",
        row["content_id"],
        row["sha256"],
        row["size"],
        tuple(json.loads(row["layers"] or "[]")),
        json.loads(row["skipped"] or "{}"),
        resumed=resumed,
    )


# --------------------------------------------------------------------------------------------------------------------
# Archive assembly (deterministic: sorted member order, metadata from the source, fixed compression headers)
# --------------------------------------------------------------------------------------------------------------------
def _zip_date(mtime_ns: int | None) -> tuple[int, int, int, int, int, int]:
    if mtime_ns is None:
        return (1980, 1, 1, 0, 0, 0)
    t = time.localtime(mtime_ns // 1_000_000_000)
    if t.tm_year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    if t.tm_year > 2107:
        return (2107, 12, 31, 23, 59, 58)
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def _assemble(dst: Path, kind: str, journal: Journal, parts: Path) -> None:
    """Build the output archive from the journal and the staged parts, then rename it into place."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.kztmp")
    rows = [r for r in journal.rows() if r["status"] == _DIR or r["part"]]
    try:
        with open(tmp, "wb") as raw:
            if kind == "zip":
                with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
                    for r in rows:
                        is_dir = r["status"] == _DIR
                        zi = zipfile.ZipInfo(r["path"] + ("/" if is_dir else ""), _zip_date(r["mtime_ns"]))
                        zi.create_system = 3
                        mode = r["mode"] if r["mode"] is not None else (0o755 if is_dir else 0o644)
                        zi.external_attr = ((stat.S_IFDIR if is_dir else stat.S_IFREG) | mode) << 16
                        if is_dir:
                            zi.external_attr |= 0x10
                            zf.writestr(zi, b"")
                            continue
                        zi.compress_type = zipfile.ZIP_DEFLATED
                        size = (parts / r["part"]).stat().st_size
                        with open(parts / r["part"], "rb") as fi, zf.open(zi, "w", force_zip64=size > 2**31) as fo:
                            shutil.copyfileobj(fi, fo, CHUNK)
            else:
                zstd_writer = None
                if kind == "tgz":
                    stream: Any = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
                elif kind == "tzst":
                    import zstandard

                    zstd_writer = zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False)
                    stream = zstd_writer
                else:
                    stream = raw
                with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                    for r in rows:
                        is_dir = r["status"] == _DIR
                        ti = tarfile.TarInfo(r["path"])
                        ti.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
                        ti.mode = r["mode"] if r["mode"] is not None else (0o755 if is_dir else 0o644)
                        ti.mtime = (r["mtime_ns"] or 0) // 1_000_000_000
                        ti.uid, ti.gid = r["uid"] or 0, r["gid"] or 0
                        ti.uname, ti.gname = r["uname"] or "", r["gname"] or ""
                        if is_dir:
                            tf.addfile(ti)
                            continue
                        ti.size = (parts / r["part"]).stat().st_size
                        with open(parts / r["part"], "rb") as fi:
                            tf.addfile(ti, fi)
                if kind in ("tgz", "tzst"):
                    stream.close()  # writes the trailer; raw stays open (closefd=False / fileobj)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, dst)
        _fsync_dir(dst.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------------------------------------
# Progress bar
# --------------------------------------------------------------------------------------------------------------------
class _Progress:
    """rich progress with rate and ETA; a no-op when disabled (library code prints nothing else)."""

    def __init__(self, enabled: bool, total: int | None, label: str) -> None:
        self.bar: Any = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.bar.start()
        self.task = self.bar.add_task(label, total=total, rate="")
        self.t0 = time.monotonic()
        self.n = 0

    def advance(self) -> None:
        if self.bar is None:
            return
        self.n += 1
        dt = time.monotonic() - self.t0
        self.bar.update(self.task, advance=1, rate=f"{self.n / dt:.1f} files/s" if dt > 0 else "")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# --------------------------------------------------------------------------------------------------------------------
# The driver shared by run_batch / verify_batch / training_check
# --------------------------------------------------------------------------------------------------------------------
class _Executor:
    """Runs tasks inline (1 worker) or on a process pool, keeping at most ``2 × workers`` in flight.

    A worker that dies (a C library crashing on a hostile file) breaks the whole pool: a fresh pool takes over and
    the members that were in flight are retried one at a time, so only the member that kills its worker fails.
    """

    def __init__(self, workers: int, config: Mapping[str, Any], key_dir: str | None) -> None:
        self.workers = workers
        self.inline = workers <= 1
        self.config = dict(config)
        self.key_dir = key_dir
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
        self.pool = ProcessPoolExecutor(self.workers, initializer=_init_worker, initargs=(self.config, self.key_dir))
        return self.pool

    def submit(self, task: Task, ctx: Any) -> Iterator[tuple[MemberResult, Any]]:
        """Submit a task; yields finished results (blocking when too much is in flight)."""
        if self.inline:
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


def _sidecar(dst: Path, suffix: str) -> Path:
    return dst.with_name(dst.name + suffix)


def _write_report(path: Path, results: Iterable[MemberResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.kztmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r.to_dict(), ensure_ascii=False, sort_keys=False) + "\n" for r in results)
    os.replace(tmp, path)


def _fingerprint(src: Path, dst: Path, config: Mapping[str, Any], key_dir: Any, safety: Safety) -> str:
    body = {
        "src": str(src.resolve()),
        "dst": str(dst.resolve()),
        "config": portable_config(config),
        "key_dir": str(Path(key_dir).resolve()) if key_dir is not None else None,
        "safety": safety.__dict__,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=repr).encode()).hexdigest()


def _part_name(rel: str) -> str:
    h = hashlib.sha256(rel.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{h[:2]}/{h}"


def _output_intact(row: Mapping[str, Any], dst: Path, kind: str, parts: Path) -> bool:
    """A done member is reused only when its output is still where the journal says (folder: at DST, else a part)."""
    if row["status"] in (REFUSED, _DIR):
        return True
    try:
        p = _inside(dst, row["path"]) if kind == "folder" else parts / (row["part"] or "")
        return p.is_file() and p.stat().st_size == row["size"]
    except (_Refused, OSError):
        return False


def restore_dirs(dst: Path, dirs: list[tuple[str, Any]]) -> None:
    """Create the source's folders in ``dst`` with their times and modes, deepest first (a parent's mtime would
    otherwise move again when its children are touched); a folder that cannot be made is left to the members' report."""
    for rel, meta in sorted(dirs, key=lambda d: d[0].count("/"), reverse=True):
        try:
            p = _inside(dst, rel)
            p.mkdir(parents=True, exist_ok=True)
            _apply_meta(p, meta)
        except (OSError, _Refused):
            pass


@dataclass(frozen=True)
class _Ctx:
    """What the driver keeps about a member while its task is in flight."""

    meta: Meta = field(default_factory=Meta)
    part: str | None = None  # archive DST: the staged output's name under DST.parts
    spilled: str | None = None  # temp copy of a big archive member, deleted once the member is finished


Item = tuple["Task | MemberResult", _Ctx]  # a task to run, or a result known without running one (refusals)


def _unique(entries: Iterable[Entry]) -> Iterator[Entry]:
    """Entries with a repeated member path turned into refusals (the second would overwrite the first); the refusal
    gets its own report path, so the JSONL and the journal keep one line per path."""
    seen: set[str] = set()
    for entry in entries:
        if entry.path in seen and entry.kind != "dir":
            yield Entry(f"{entry.path} (duplicate)", "refused", reason="duplicate member name")
            continue
        seen.add(entry.path)
        yield entry


def _refusal(entry: Entry, reason: str | None = None) -> Item:
    return MemberResult(entry.path, REFUSED, None, reason or entry.reason), _Ctx(entry.meta)


@contextmanager
def _pool(
    workers: int | None, config: Mapping[str, Any], key_dir: str | None, bar: _Progress, spill: Path | None
) -> Iterator[_Executor]:
    """The executor for one run; whatever happens, the pool, the progress bar and the spill folder are cleaned up."""
    try:
        ex = _Executor(_default_workers(workers), config, key_dir)
        try:
            yield ex
        finally:
            ex.close()
    finally:
        bar.close()
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)


def _pump(ex: _Executor, items: Iterable[Item], handle: Callable[[MemberResult, _Ctx], None]) -> None:
    """Run every task on ``ex`` (at most 2 × workers in flight) and hand each result, run or known, to ``handle``."""

    def settle(res: MemberResult, ctx: _Ctx) -> None:
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


def _conclude(
    summary: BatchSummary,
    results: Iterable[MemberResult],
    t0: float,
    report_p: Path | None,
    summary_p: Path | None,
) -> BatchSummary:
    """The end of every run: count the results (sorted by path), then write the JSONL report and the summary text."""
    ordered = sorted(results, key=lambda r: r.path)
    for r in ordered:
        summary.add(r)
    summary.elapsed_s = time.monotonic() - t0
    if report_p is not None:
        _write_report(report_p, ordered)
        summary.report_path = str(report_p)
    if summary_p is not None:
        summary_p.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(summary_p, summary.text().encode("utf-8"))
        summary.summary_path = str(summary_p)
    return summary


class _MarkJob:
    """One labelling run from SRC to DST with its journal, shared by :func:`run_batch` and
    :func:`kzlabel.distributed.run_dask`: checks, resume, tasks, journal records, and the end of the run (folder
    metadata or archive assembly, then the reports)."""

    def __init__(
        self,
        src: str | os.PathLike,
        dst: str | os.PathLike,
        *,
        config: Mapping[str, Any],
        key_dir: str | os.PathLike,
        safety: Safety,
        journal: str | os.PathLike | None,
        report_path: str | os.PathLike | None,
        summary_path: str | os.PathLike | None,
    ) -> None:
        self.t0 = time.monotonic()
        self.src, self.dst = Path(src), Path(dst)
        if not self.src.exists():
            raise KzlabelError("no such file or folder", source=str(self.src))
        kind_of(self.src, existing=True)  # refuses a file that is neither a folder nor a supported archive
        self.kind = kind_of(self.dst)
        if self.dst.exists() and (self.dst.is_dir() != (self.kind == "folder")):
            raise KzlabelError(
                "destination exists and is not the kind its name says (folder vs archive)", source=str(self.dst)
            )
        if self.src.resolve() == self.dst.resolve():
            raise KzlabelError("destination is the source; originals are never modified", source=str(self.dst))
        self.safety = safety
        self.config = portable_config(config)
        self.key = str(key_dir)
        self.journal_p = Path(journal) if journal is not None else _sidecar(self.dst, ".journal.sqlite")
        self.report_p = Path(report_path) if report_path is not None else _sidecar(self.dst, ".report.jsonl")
        self.summary_p = Path(summary_path) if summary_path is not None else _sidecar(self.dst, ".summary.txt")
        self.parts = _sidecar(self.dst, ".parts")
        self.exclude = [self.dst, self.parts, self.journal_p, self.report_p, self.summary_p]
        self.jr = Journal(self.journal_p, _fingerprint(self.src, self.dst, self.config, self.key, safety))
        self.summary = BatchSummary("mark", str(self.src), str(self.dst), journal_path=str(self.journal_p))
        self.done: set[str] = set()
        self.reused: set[str] = set()
        self.dirs: list[tuple[str, Meta]] = []
        self.aborts: list[str] = []  # why a streamed archive stopped early (set by the reader)
        self.committed = 0
        self.crash_after = int(os.environ.get(_CRASH_ENV, "0") or 0)

    def finished_before(self) -> bool:
        """An archive DST a previous run completed: nothing to redo."""
        return (
            self.kind != "folder"
            and self.jr.get_meta("complete") == "1"
            and self.dst.is_file()
            and not self.parts.exists()
        )

    def start(self) -> None:
        if self.kind == "folder":
            self.dst.mkdir(parents=True, exist_ok=True)
        else:
            self.parts.mkdir(parents=True, exist_ok=True)
        self.jr.set_meta("complete", "0")
        self.done = self.jr.done_paths()

    def is_done(self, rel: str) -> bool:
        """Finished by an earlier run with its output still in place (then reused as it is)."""
        if rel not in self.done:
            return False
        row = self.jr.get(rel)
        ok = row is not None and _output_intact(row, self.dst, self.kind, self.parts)
        if ok:
            self.reused.add(rel)
        return ok

    def entries(self, spill: Path | None) -> Iterator[Entry]:
        return iter_entries(
            self.src, self.safety, skip=self.is_done, exclude=self.exclude, abort=self.aborts, spill_dir=spill
        )

    def items(self, entries: Iterable[Entry], on_reused: Callable[[], None]) -> Iterator[Item]:
        """Each member as a task (or a refusal); folders are recorded, members done in an earlier run skipped."""
        for entry in _unique(entries):
            if entry.kind == "dir":
                self.dirs.append((entry.path, entry.meta))
                self.jr.record(MemberResult(entry.path, _DIR), entry.meta, None)
                continue
            if entry.kind == "refused":
                yield _refusal(entry)
                continue
            if entry.path in self.reused or (
                not entry.spilled and entry.src_file is not None and self.is_done(entry.path)
            ):
                on_reused()
                continue
            if self.kind == "folder" and entry.path.endswith(".c2pa") and _needs_sidecar(self.src / entry.path[:-5]):
                # the member's new sidecar manifest takes this path: copying the old one would overwrite it
                yield _refusal(entry, f"replaced by the new sidecar C2PA manifest of {entry.path[:-5]}")
                continue
            part = None
            try:
                out = _inside(self.dst, entry.path) if self.kind == "folder" else None
            except _Refused as exc:
                yield _refusal(entry, str(exc))
                continue
            if out is None:
                part = _part_name(entry.path)
                out = self.parts / part
            task = Task(
                "mark",
                entry.path,
                data=entry.data,
                src_file=entry.src_file,
                out=str(out),
                meta=entry.meta,
                apply_meta=self.kind == "folder",
            )
            entry.data = None
            yield task, _Ctx(entry.meta, part, entry.src_file if entry.spilled else None)

    def record(self, res: MemberResult, ctx: _Ctx) -> None:
        """Journal one finished member (its output, if any, is already durable)."""
        self.jr.record(res, ctx.meta, ctx.part if res.status in (LABELLED, COPIED) else None)
        self.committed += 1
        if self.crash_after and self.committed >= self.crash_after:
            os._exit(137)  # test hook: behave like kill -9 (no cleanup, no reports)

    def finish(self) -> BatchSummary:
        """Folder DST: folder times and modes; archive DST: assemble it. Then the reports, from the journal."""
        if self.aborts:
            self.summary.aborted = "; ".join(self.aborts)
        # Members in the journal but no longer in the source (or not re-seen because the run aborted) stay as they are.
        if self.kind == "folder":
            _remove_stale_temps(self.dst)
            restore_dirs(self.dst, self.dirs)
        elif self.summary.aborted is None:
            _assemble(self.dst, self.kind, self.jr, self.parts)
            self.jr.set_meta("complete", "1")  # before the staging goes: a crash in between still resumes
            shutil.rmtree(self.parts, ignore_errors=True)
        if self.kind == "folder" and self.summary.aborted is None:
            self.jr.set_meta("complete", "1")
        return self.report()

    def report(self, *, resumed_all: bool = False) -> BatchSummary:
        results = [
            _result_from_row(row, resumed_all or row["path"] in self.reused)
            for row in self.jr.rows()
            if row["status"] != _DIR
        ]
        return _conclude(self.summary, results, self.t0, self.report_p, self.summary_p)

    def close(self) -> None:
        self.jr.close()


def run_batch(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    labeler_config: Mapping[str, Any],
    key_dir: str | os.PathLike,
    workers: int | None = None,
    journal: str | os.PathLike | None = None,
    progress: bool = False,
    report_path: str | os.PathLike | None = None,
    summary_path: str | os.PathLike | None = None,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    max_total_ratio: float = DEFAULT_MAX_TOTAL_RATIO,
    bomb_ratio: float = DEFAULT_BOMB_RATIO,
    bomb_min_bytes: int = DEFAULT_BOMB_MIN_BYTES,
) -> BatchSummary:
    """Label every supported member of SRC into DST (folder or archive, by DST's suffix); resumable via the journal.

    Unsupported members are copied unchanged; hostile ones are refused; per-member outcomes go to a JSONL report
    (default ``DST.report.jsonl``) and a human summary (``DST.summary.txt``). Re-running the same command after a
    crash skips members the journal (``DST.journal.sqlite``) records as done and reuses their outputs.
    """
    job = _MarkJob(
        src,
        dst,
        config=labeler_config,
        key_dir=key_dir,
        safety=Safety(max_member_bytes, max_total_ratio, bomb_ratio, bomb_min_bytes),
        journal=journal,
        report_path=report_path,
        summary_path=summary_path,
    )
    try:
        if job.finished_before():
            return job.report(resumed_all=True)  # nothing to redo; the reports are rebuilt from the journal
        job.start()
        for old in job.dst.parent.glob(f".{job.dst.name}.spill-*"):  # left by a killed run
            shutil.rmtree(old, ignore_errors=True)
        spill = Path(tempfile.mkdtemp(prefix=f".{job.dst.name}.spill-", dir=job.dst.parent))
        bar = _Progress(progress, _count_members(job.src, job.exclude), "labelling")

        def handle(res: MemberResult, ctx: _Ctx) -> None:
            job.record(res, ctx)
            bar.advance()

        with _pool(workers, job.config, job.key, bar, spill) as ex:
            _pump(ex, job.items(job.entries(spill), bar.advance), handle)
        return job.finish()
    finally:
        job.close()


def _remove_stale_temps(root: Path) -> None:
    """Temp files of writes a killed run left half-done (``.NAME.*.kztmp``) are not part of the output."""
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.startswith(".") and f.endswith(".kztmp"):
                try:
                    os.unlink(os.path.join(dirpath, f))
                except OSError:
                    pass


# --------------------------------------------------------------------------------------------------------------------
# Read-only passes: verify, training check
# --------------------------------------------------------------------------------------------------------------------
TDMREP_MEMBER = ".well-known/tdmrep.json"


class _SiteRules:
    """TDMRep's site-wide declaration at the root of the source (``/.well-known/tdmrep.json``).

    Its rules are read when the member shows up (a tar may list it last) and applied once every member is checked:
    a member whose ``/path`` matches a rule gets that rule's reservation as one more signal, combined with the file's
    own signals by :func:`kzlabel.rights.vocab.decide` (most restrictive wins; a conflict is reported with both sides).
    """

    def __init__(self, src: Path, scratch: Path) -> None:
        self.src = src
        self.scratch = scratch
        self.rules: list[dict[str, Any]] = []

    def load(self, entry: Entry) -> MemberResult:
        from .rights.vocab import TDMREP_FILE, tdmrep_rules

        root = self.src
        if entry.src_file is None or entry.spilled:  # an archive member: put it where optout's reader looks
            root = self.scratch / "site"
            target = root / TDMREP_FILE
            target.parent.mkdir(parents=True, exist_ok=True)
            if entry.data is not None:
                target.write_bytes(entry.data)
            else:
                shutil.copyfile(entry.src_file or "", target)
        try:
            self.rules = tdmrep_rules(root)
        except KzlabelError as exc:
            return MemberResult(entry.path, FAILED, None, f"{exc.message}; its rules were not applied")
        return MemberResult(
            entry.path, SITE_RULES, None, f"TDMRep site-wide declaration: {len(self.rules)} rule(s), applied by path"
        )

    def apply(self, r: MemberResult, use: str) -> MemberResult:
        from .label import Training, TrainingSignal
        from .rights.vocab import decide, rule_for, signal_from_tdmrep

        if not self.rules or r.status in (REFUSED, SITE_RULES) or r.path == TDMREP_MEMBER:
            return r
        rule = rule_for(self.rules, "/" + r.path)
        site = (
            signal_from_tdmrep(rule.get("tdm-reservation"), rule.get("tdm-policy"), "tdmrep.json " + rule["location"])
            if rule
            else None
        )
        if site is None:
            return r
        own = [
            TrainingSignal(d["carrier"], {u: Training(v) for u, v in d["uses"].items()}, d["value"], d.get("policy"))
            for d in r.extra.get("signals", [])
        ]
        alone = not own and r.status in (UNSUPPORTED, FAILED)
        note = f"from tdmrep.json alone (the file: {r.status}, {r.reason})" if alone else ""
        return _training_result(r.path, r.format, decide(own + [site], use, r.path), note)


def _scan(
    op: str,
    src: str | os.PathLike,
    config: Mapping[str, Any],
    *,
    workers: int | None,
    report_path: str | os.PathLike | None,
    summary_path: str | os.PathLike | None,
    progress: bool,
    safety: Safety,
    use: str = "ai_training",
) -> BatchSummary:
    """Read-only pass (verify / training check): the same readers, pool and end of run as labelling, no journal."""
    t0 = time.monotonic()
    src_p = Path(src)
    if not src_p.exists():
        raise KzlabelError("no such file or folder", source=str(src_p))
    summary = BatchSummary(op, str(src_p))
    results: list[MemberResult] = []
    abort: list[str] = []
    spill = Path(tempfile.mkdtemp(prefix="kzlabel-spill-"))
    site = _SiteRules(src_p, spill) if op == "training" else None
    bar = _Progress(progress, _count_members(src_p, ()), "verifying" if op == "verify" else "checking")

    def items() -> Iterator[Item]:
        for entry in _unique(iter_entries(src_p, safety, abort=abort, spill_dir=spill)):
            if entry.kind == "dir":
                continue
            if entry.kind == "refused":
                yield _refusal(entry)
            elif site is not None and entry.path == TDMREP_MEMBER:
                yield site.load(entry), _Ctx(spilled=entry.src_file if entry.spilled else None)
            else:
                yield Task(op, entry.path, data=entry.data, src_file=entry.src_file, use=use), _Ctx(
                    spilled=entry.src_file if entry.spilled else None
                )
                entry.data = None

    def handle(res: MemberResult, _ctx: _Ctx) -> None:
        results.append(res)
        bar.advance()

    with _pool(workers, portable_config(config), None, bar, spill) as ex:
        _pump(ex, items(), handle)
    if abort:
        summary.aborted = "; ".join(abort)
    if site is not None:
        results = [site.apply(r, use) for r in results]
    return _conclude(
        summary,
        results,
        t0,
        Path(report_path) if report_path is not None else None,
        Path(summary_path) if summary_path is not None else None,
    )


def verify_batch(
    src: str | os.PathLike,
    *,
    trust: Any = None,
    registry: str | os.PathLike | None = None,
    watermark_key: bytes | str | None = None,
    workers: int | None = None,
    report_path: str | os.PathLike | None = None,
    summary_path: str | os.PathLike | None = None,
    progress: bool = False,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
) -> BatchSummary:
    """Verify every member of a folder or archive; ``counts`` is verdict → members (plus unsupported/refused/failed).

    ``trust``: a TrustStore, a PEM bundle path, a keygen folder, or a list of those.
    """
    config: dict[str, Any] = {"trust": trust, "registry": registry, "watermark_key": watermark_key}
    config = {k: v for k, v in config.items() if v is not None}
    return _scan("verify", src, config, workers=workers, report_path=report_path, summary_path=summary_path,
                 progress=progress, safety=Safety(max_member_bytes))


def training_check(
    src: str | os.PathLike,
    *,
    use: str = "ai_training",
    trust: Any = None,
    workers: int | None = None,
    report_path: str | os.PathLike | None = None,
    summary_path: str | os.PathLike | None = None,
    progress: bool = False,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
) -> BatchSummary:
    """Art. 23(5): which members reserve training use. ``flagged`` lists notAllowed/constrained members;
    ``counts`` has allowed / notAllowed / constrained / unspecified (plus unsupported/refused/failed).

    A ``.well-known/tdmrep.json`` at the root of the source (TDMRep's site-wide declaration) applies to the members
    its locations match, on top of each file's own signals; that member itself is reported as ``tdmrep-site-rules``.
    """
    config = {"trust": trust} if trust is not None else {}
    return _scan("training", src, config, workers=workers, report_path=report_path, summary_path=summary_path,
                 progress=progress, safety=Safety(max_member_bytes), use=use)
