"""The runs themselves: :func:`run_batch` (label SRC into DST, resumably), and the read-only passes
:func:`verify_batch` and :func:`training_check`.

A labelling run is a :class:`MarkJob`: it checks SRC and DST, opens the journal, turns source entries into tasks
(skipping what an earlier run finished and whose output is still in place), journals each result as it lands, and
ends with the folder metadata or the archive assembly and the reports, all rebuilt from the journal so a resumed run
reports exactly what an uninterrupted one would. :mod:`kzlabel.distributed` drives the same MarkJob with Dask instead
of the local pool. The read-only passes share the readers, the pool and the end of run, but keep no journal; the
training check also applies the source's own TDMRep site rules (``/.well-known/tdmrep.json``) by member path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import KzlabelError
from ..formats.sidecar import needs_sidecar
from ..io import temp_dir, write_atomic
from ..label import Training, TrainingSignal
from ..rights.vocab import TDMREP_FILE, decide, rule_for, signal_from_tdmrep, tdmrep_rules
from .archives import count_members, inside, iter_entries, kind_of
from .config import portable_config
from .executor import open_pool, pump
from .journal import Journal, result_from_row
from .members import training_result
from .model import (
    COPIED,
    DEFAULT_BOMB_MIN_BYTES,
    DEFAULT_BOMB_RATIO,
    DEFAULT_MAX_MEMBER_BYTES,
    DEFAULT_MAX_TOTAL_RATIO,
    DIR,
    FAILED,
    LABELLED,
    REFUSED,
    SITE_RULES,
    UNSUPPORTED,
    BatchSummary,
    Ctx,
    Entry,
    FaultHooks,
    Item,
    MemberResult,
    Meta,
    Refused,
    Safety,
    Task,
)
from .output import assemble, remove_stale_temps, replace_old_sidecars, restore_dirs, write_report
from .progress import Progress
from .sidecars import pair_sidecars

TDMREP_MEMBER = ".well-known/tdmrep.json"


def _sidecar(dst: Path, suffix: str) -> Path:
    return dst.with_name(dst.name + suffix)


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
    if row["status"] in (REFUSED, DIR):
        return True
    try:
        p = inside(dst, row["path"]) if kind == "folder" else parts / (row["part"] or "")
        return p.is_file() and p.stat().st_size == row["size"]
    except (Refused, OSError):
        return False


def _unique(entries: Iterable[Entry]) -> Iterator[Entry]:
    """Entries with a repeated member path turned into refusals (the second would overwrite the first), each under a
    report path of its own — ``PATH (duplicate)``, then ``PATH (duplicate 3)``, ``PATH (duplicate 4)``… for the
    third, fourth… — so the JSONL and the journal, keyed by path, keep one line per member. A folder entry repeating a
    folder is harmless and passes; one that repeats a file's path (or a file one of a folder's) is refused too."""
    files: set[str] = set()
    dirs: set[str] = set()
    for entry in entries:
        if entry.kind == "dir" and entry.path not in files:
            dirs.add(entry.path)
            yield entry
            continue
        if entry.path not in files and entry.path not in dirs:
            files.add(entry.path)
            yield entry
            continue
        n = 2
        while (alias := f"{entry.path} (duplicate{'' if n == 2 else f' {n}'})") in files:
            n += 1
        files.add(alias)
        yield Entry(alias, "refused", reason="duplicate member name")


def _refusal(entry: Entry, reason: str | None = None) -> Item:
    return MemberResult(entry.path, REFUSED, None, reason or entry.reason), Ctx(entry.meta)


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
        write_report(report_p, ordered)
        summary.report_path = str(report_p)
    if summary_p is not None:
        summary_p.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(summary_p, summary.text().encode("utf-8"))
        summary.summary_path = str(summary_p)
    return summary


class MarkJob:
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
        hooks: FaultHooks | None = None,
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
        self.hooks = hooks or FaultHooks()

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
                self.jr.record(MemberResult(entry.path, DIR), entry.meta, None)
                continue
            if entry.kind == "refused":
                yield _refusal(entry)
                continue
            if entry.path in self.reused or (
                not entry.spilled and entry.src_file is not None and self.is_done(entry.path)
            ):
                on_reused()
                continue
            if self.kind == "folder" and entry.path.endswith(".c2pa") and needs_sidecar(self.src / entry.path[:-5]):
                # the member's new sidecar manifest takes this path: copying the old one would overwrite it
                yield _refusal(entry, f"replaced by the new sidecar C2PA manifest of {entry.path[:-5]}")
                continue
            part = None
            try:
                out = inside(self.dst, entry.path) if self.kind == "folder" else None
            except Refused as exc:
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
            yield task, Ctx(entry.meta, part, entry.src_file if entry.spilled else None)

    def record(self, res: MemberResult, ctx: Ctx) -> None:
        """Journal one finished member (its output, if any, is already durable)."""
        self.jr.record(res, ctx.meta, ctx.part if res.status in (LABELLED, COPIED) else None)
        self.committed += 1
        if self.hooks.after_commit is not None:
            self.hooks.after_commit(self.committed)

    def finish(self) -> BatchSummary:
        """Folder DST: folder times and modes; archive DST: assemble it. Then the reports, from the journal."""
        if self.aborts:
            self.summary.aborted = "; ".join(self.aborts)
        # Members in the journal but no longer in the source (or not re-seen because the run aborted) stay as they are.
        if self.kind == "folder":
            remove_stale_temps(self.dst)
            restore_dirs(self.dst, self.dirs)
        elif self.summary.aborted is None:
            replace_old_sidecars(self.jr, self.parts)
            assemble(self.dst, self.kind, self.jr, self.parts)
            self.jr.set_meta("complete", "1")  # before the staging goes: a crash in between still resumes
            shutil.rmtree(self.parts, ignore_errors=True)
        if self.kind == "folder" and self.summary.aborted is None:
            self.jr.set_meta("complete", "1")
        return self.report()

    def report(self, *, resumed_all: bool = False) -> BatchSummary:
        results = [
            result_from_row(row, resumed_all or row["path"] in self.reused)
            for row in self.jr.rows()
            if row["status"] != DIR
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
    _hooks: FaultHooks | None = None,
) -> BatchSummary:
    """Label every supported member of SRC into DST (folder or archive, by DST's suffix); resumable via the journal.

    Unsupported members are copied unchanged; hostile ones are refused; per-member outcomes go to a JSONL report
    (default ``DST.report.jsonl``) and a human summary (``DST.summary.txt``). Re-running the same command after a
    crash skips members the journal (``DST.journal.sqlite``) records as done and reuses their outputs.

    ``_hooks`` is for the batch's own crash tests only (see :class:`~kzlabel.batch.model.FaultHooks`).
    """
    hooks = _hooks or FaultHooks()
    job = MarkJob(
        src,
        dst,
        config=labeler_config,
        key_dir=key_dir,
        safety=Safety(max_member_bytes, max_total_ratio, bomb_ratio, bomb_min_bytes),
        journal=journal,
        report_path=report_path,
        summary_path=summary_path,
        hooks=hooks,
    )
    try:
        if job.finished_before():
            return job.report(resumed_all=True)  # nothing to redo; the reports are rebuilt from the journal
        job.start()
        spill = temp_dir(f"{job.dst.name}.spill", job.dst.parent)  # a killed run's spill folder is swept first
        bar = Progress(progress, count_members(job.src, job.exclude), "labelling")

        def handle(res: MemberResult, ctx: Ctx) -> None:
            job.record(res, ctx)
            bar.advance()

        with open_pool(workers, job.config, job.key, bar, spill, hooks.before_member) as ex:
            pump(ex, job.items(job.entries(spill), bar.advance), handle)
        return job.finish()
    finally:
        job.close()


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
        root = self.src
        if entry.src_file is None or entry.spilled:  # an archive member: put it where tdmrep_rules looks
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
        return training_result(r.path, r.format, decide(own + [site], use, r.path), note)


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
    allow_untrusted: bool = False,
) -> BatchSummary:
    """Read-only pass (verify / training check): the same readers, pool and end of run as labelling, no journal.

    A sidecar manifest ``X.c2pa`` of a member ``X`` that keeps its manifest there (in a folder or an archive, in
    either order) is not a member of its own: verify reads it with ``X`` (:mod:`kzlabel.batch.sidecars`)."""
    t0 = time.monotonic()
    src_p = Path(src)
    if not src_p.exists():
        raise KzlabelError("no such file or folder", source=str(src_p))
    summary = BatchSummary(op, str(src_p), allow_untrusted=allow_untrusted)
    results: list[MemberResult] = []
    abort: list[str] = []
    spill = temp_dir("kzlabel-spill")
    site = _SiteRules(src_p, spill) if op == "training" else None
    bar = Progress(progress, count_members(src_p, ()), "verifying" if op == "verify" else "checking")

    def items() -> Iterator[Item]:
        entries = _unique(iter_entries(src_p, safety, abort=abort, spill_dir=spill))
        for entry, side in pair_sidecars(entries, spill, on_paired=bar.advance):
            if entry.kind == "dir":
                continue
            if entry.kind == "refused":
                yield _refusal(entry)
            elif site is not None and entry.path == TDMREP_MEMBER:
                yield site.load(entry), Ctx(spilled=entry.src_file if entry.spilled else None)
            else:
                yield (
                    Task(
                        op,
                        entry.path,
                        data=entry.data,
                        src_file=entry.src_file,
                        use=use,
                        allow_untrusted=allow_untrusted,
                        sidecar=side,
                        sidecar_name=None if side is None else PurePosixPath(entry.path).name + ".c2pa",
                    ),
                    Ctx(spilled=entry.src_file if entry.spilled else None),
                )
                entry.data = None

    def handle(res: MemberResult, _ctx: Ctx) -> None:
        results.append(res)
        bar.advance()

    with open_pool(workers, portable_config(config), None, bar, spill) as ex:
        pump(ex, items(), handle)
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
    allow_untrusted: bool = False,
) -> BatchSummary:
    """Verify every member of a folder or archive; ``counts`` is verdict → members (plus unsupported/refused/failed).

    ``trust``: a TrustStore, a PEM bundle path, a keygen folder, or a list of those. With trust anchors, a compliant
    member none of whose signed layers is trusted is listed in ``untrusted`` and not accepted (``accepted`` is
    False), unless ``allow_untrusted``; each JSONL line says ``trust_checked`` / ``accepted`` as ``kzlabel verify``
    does.
    """
    config: dict[str, Any] = {"trust": trust, "registry": registry, "watermark_key": watermark_key}
    config = {k: v for k, v in config.items() if v is not None}
    return _scan(
        "verify",
        src,
        config,
        workers=workers,
        report_path=report_path,
        summary_path=summary_path,
        progress=progress,
        safety=Safety(max_member_bytes),
        allow_untrusted=allow_untrusted,
    )


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
    return _scan(
        "training",
        src,
        config,
        workers=workers,
        report_path=report_path,
        summary_path=summary_path,
        progress=progress,
        safety=Safety(max_member_bytes),
        use=use,
    )
