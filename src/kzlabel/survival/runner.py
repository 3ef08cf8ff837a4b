"""`kzlabel.stress`: apply what platforms do to a labelled file and verify every version with ``Labeler.verify``,
the same call as `kzlabel verify`, so a row says exactly what a verifier would say about that upload.

The question it answers is whether the layer meant to outlive platforms did: the watermark (its payload equal to
the original's), or, for formats without one (text, PDF), the signed label (valid, with the original's content id).
Every transformed file lives in a private temp folder (kzlabel's temp naming, swept if a run is killed) that is
removed when the run ends; the input is only read.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import KzlabelError
from ..io import Limits, read_input, temp_dir
from ..keys import TrustStore
from ..pipeline import Labeler
from ..registry import Registry
from ..report import SIGNED_OK, Report, Status

__all__ = ["Output", "Preview", "StressReport", "Version", "stress"]

Criterion = Literal["watermark", "label"]


@dataclass(frozen=True)
class Output:
    """A version's file: its detected format, size and a human description of its shape."""

    format: str
    bytes: int
    shape: str  # "960×640", "10.0 s, 16000 Hz, 1 ch", "640×360, 2.0 s", "1 page", "512 characters"


@dataclass(frozen=True)
class Preview:
    """What the HTML report shows of a version: an image (``image/jpeg``, ``image/png``) or text (``text/plain``)."""

    mime: str
    data: bytes


@dataclass(frozen=True)
class Version:
    """One version of the file, the original or a transformation's output, and what verify said about it."""

    name: str  # "original" or the transformation's id
    title: str
    report: Report | None = None  # None: the transformation did not apply
    skipped: str | None = None  # why it did not apply
    output: Output | None = None
    survived: bool | None = None  # the watermark (text/PDF: the label) is still the original's; None: not applied
    preview: Preview | None = field(default=None, repr=False)  # made only when asked (the HTML report)

    @property
    def applied(self) -> bool:
        return self.report is not None

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape of a version (docs/stress.md)."""
        rep = self.report
        return {
            "name": self.name,
            "title": self.title,
            "applied": self.applied,
            "skipped": self.skipped,
            "output": None
            if self.output is None
            else {"format": self.output.format, "bytes": self.output.bytes, "shape": self.output.shape},
            "verdict": rep.verdict.value if rep is not None else None,
            "survived": self.survived,
            "layers": [e.to_dict() for e in rep.evidence] if rep is not None else [],
            "label_recovered_from_registry": rep.recovered if rep is not None else False,
        }


@dataclass(frozen=True)
class StressReport:
    """Every version of one file and whether the watermark (text/PDF: the label) outlived each transformation."""

    source: str
    format: str
    family: str
    criterion: Criterion  # the layer that must survive
    reference: str | None  # the original's watermark payload / label content id; None: the original has none
    original: Version
    versions: list[Version]

    @property
    def applied(self) -> list[Version]:
        return [v for v in self.versions if v.applied]

    @property
    def lost(self) -> list[str]:
        """The transformations after which the watermark (label) was gone or no longer the original's."""
        return [v.name for v in self.versions if v.applied and not v.survived]

    @property
    def survived(self) -> bool:
        """True when the original carries the layer and it outlived every transformation that applied."""
        return self.reference is not None and not self.lost

    @property
    def why_not(self) -> str | None:
        """Why :attr:`survived` is False, in one line; None when it is True."""
        what = "watermark" if self.criterion == "watermark" else "signed label"
        if self.reference is None:
            return f"the original carries no valid {what}: nothing to survive (mark it first)"
        if self.lost:
            return f"the {what} did not survive: {', '.join(self.lost)}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "family": self.family,
            "criterion": self.criterion,
            "reference": self.reference,
            "survived": self.survived,
            "why_not": self.why_not,
            "lost": self.lost,
            "original": self.original.to_dict(),
            "versions": [v.to_dict() for v in self.versions],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


def _reference(report: Report, criterion: Criterion) -> str | None:
    """What must come back after a transformation: the original's watermark payload, or its label's content id."""
    if criterion == "watermark":
        ev = report.layer("watermark")
        payload = ev.data.get("payload") if ev is not None and ev.status == Status.FOUND else None
        return str(payload) if payload is not None else None  # an unreadable mark names no payload to compare
    ev = report.layer("metadata")
    good = ev is not None and ev.status in SIGNED_OK and report.label is not None
    return report.label.content_id if good and report.label is not None else None


def holds(report: Report, criterion: Criterion, reference: str | None) -> bool:
    """Whether ``report`` still shows the original's watermark (same payload) or signed label (same content id)."""
    return reference is not None and _reference(report, criterion) == reference


def stress(
    path: str | os.PathLike,
    *,
    trust: TrustStore | None = None,
    registry: Registry | None = None,
    watermark_key: bytes | None = None,
    only: Iterable[str] | None = None,
    previews: bool = True,
    password: str | None = None,
    limits: Limits = Limits(),
) -> StressReport:
    """Apply every platform transformation of ``path``'s media family, verify each version, and report.

    ``only``: transformation ids to run (default: all of the family; an unknown id is a KzlabelError naming the
    known ones). ``previews``: make the thumbnails the HTML report shows. ``password`` opens an encrypted PDF.
    Raises only for unusable input (as ``verify`` does); a transformation that does not apply to this file (a
    960 px photo is not upscaled to 1080 px) is listed as not applied, with the reason.
    """
    from .. import formats
    from . import previews as pv
    from .transforms import NotApplicable, Original, for_family

    src = Path(path)
    inp = read_input(src, limits, password=password)  # no such file, a folder, over the size limit: one line each
    labeler = Labeler(trust=trust, registry=registry, watermark_key=watermark_key, limits=limits)
    first = labeler.verify(src, password=password)
    handler = formats.get(first.format)
    family = formats.family(handler)
    criterion: Criterion = "watermark" if "watermark" in handler.layers else "label"
    reference = _reference(first, criterion)
    chosen = for_family(family, handler.id)
    if only is not None:
        wanted = list(only)
        unknown = [n for n in wanted if n not in {t.name for t in chosen}]
        if unknown:
            known = ", ".join(t.name for t in chosen)
            raise KzlabelError(f"no transformation {', '.join(unknown)} for {handler.id} files (known: {known})")
        chosen = [t for t in chosen if t.name in wanted]

    def version(name: str, title: str, file: Path, report: Report, survived: bool | None) -> Version:
        out = pv.describe(file, family, report.format, limits)
        shown = pv.preview(file, family, report.format, limits) if previews else None
        return Version(name, title, report, None, out, survived, shown)

    original = version("original", "the labelled file as given", src, first, None)
    original_input = Original(src, handler.id, limits, password)
    work = temp_dir("stress")
    versions: list[Version] = []
    try:
        for t in chosen:
            try:
                out = t.apply(original_input, work)
            except NotApplicable as why:
                versions.append(Version(t.name, t.title, skipped=str(why)))
                continue
            try:
                report = labeler.verify(out)
            except KzlabelError as exc:  # our own output, in a format kzlabel reads: a bug, not the input's fault
                raise RuntimeError(f"{t.name}: its output cannot be verified: {exc}") from exc
            versions.append(version(t.name, t.title, out, report, holds(report, criterion, reference)))
            out.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return StressReport(inp.source, handler.id, family, criterion, reference, original, versions)
