"""One member's work, the same wherever it runs (a pool worker, a Dask task, or inline): mark, verify or
training-check it, and write its output durably before reporting it done.

:func:`process_member` never raises: a member that fails, is unsupported or trips a limit becomes a
:class:`~kzlabel.batch.model.MemberResult` with a reason, so one bad file cannot stop a batch of a million. An
unsupported file met while labelling is copied unchanged (streamed when it is big), because the output of a batch
is the whole source with the labellable part labelled, not a subset of it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from typing import Any

from .. import formats
from ..errors import KzlabelError, LimitExceeded, UnsupportedFormat
from ..io import read_input, sidecar_path
from ..pipeline import Labeler
from ..rights.actions import read_signals
from ..rights.vocab import TrainingCheck, decide
from .model import COPIED, FAILED, LABELLED, REFUSED, UNSUPPORTED, MemberResult, Task
from .output import copy_output, write_output


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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


def process_member(task: Task, labeler: Labeler) -> MemberResult:
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


def _mark_member(task: Task, labeler: Labeler, name: str) -> MemberResult:
    out = Path(task.out) if task.out else None
    try:
        res = labeler.mark(_source(task), None, name=name)
    except UnsupportedFormat as exc:
        if out is None:
            return MemberResult(task.path, COPIED, None, exc.message)
        if task.data is not None:
            write_output(out, task.data, task.meta, task.apply_meta)
            sha, size = _sha256_bytes(task.data), len(task.data)
        else:
            assert task.src_file is not None
            sha, size = copy_output(Path(task.src_file), out, task.meta, task.apply_meta)
        return MemberResult(task.path, COPIED, None, exc.message, None, sha, size)
    layers: tuple[str, ...] = tuple(res.layers)
    skipped: dict[str, str] = {str(layer): why for layer, why in res.skipped.items()}
    if out is not None:
        # The manifest goes beside the output: ``X.c2pa`` in a folder DST, the staged part's ``.c2pa`` for an archive
        # DST (assembled as the member ``X.c2pa`` right after ``X``). Written first: X's part says both are done.
        if res.c2pa_sidecar is not None:
            write_output(sidecar_path(out), res.c2pa_sidecar, task.meta, task.apply_meta)
            layers, _ = layers + ("c2pa",), skipped.pop("c2pa", None)
        elif not task.apply_meta:  # an archive part: a sidecar staged by an earlier run is not this output's
            sidecar_path(out).unlink(missing_ok=True)
        write_output(out, res.data, task.meta, task.apply_meta)
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


def _verify_member(task: Task, labeler: Labeler, name: str) -> MemberResult:
    rep = labeler.verify(_source(task), name=name, sidecar=task.sidecar, sidecar_name=task.sidecar_name)
    d = rep.to_dict(allow_untrusted=task.allow_untrusted)
    keep = ("trusted", "trust_checked", "accepted", "why_not_accepted", "evidence")
    return MemberResult(
        task.path,
        rep.verdict.value,
        rep.format,
        "",
        rep.label.content_id if rep.label else None,
        extra={k: d[k] for k in keep},
    )


def _training_member(task: Task, labeler: Labeler, name: str) -> MemberResult:
    inp = read_input(_source(task), labeler.limits, name)
    handler = formats.detect(inp)
    check = decide(read_signals(inp, handler, labeler.limits, labeler.trust), task.use, inp.source)
    return training_result(task.path, handler.id, check)


def training_result(path: str, fmt: str | None, check: TrainingCheck, note: str = "") -> MemberResult:
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
