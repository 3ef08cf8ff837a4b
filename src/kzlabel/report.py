"""Verification results: one Evidence line per layer, and the single verdict they add up to; and what mark() did
(:class:`MarkResult`).

The verdict follows Art. 21(2): content is compliant only with BOTH a valid machine-readable mark and a
perceptible warning. ``unlabelled`` means nothing was found, which says nothing about how the content was made.

Whether a platform should *accept* the file is one step more (:meth:`Report.passes`): when the verifier gave trust
anchors, a compliant file is accepted only if some signed layer chains to them (``trusted``); a valid signature from
a signer outside the anchors (``untrusted``) is accepted only on request (``allow_untrusted=True``). Without anchors
(statuses ``valid``) a compliant file is accepted as before, since nothing was asked about who signed it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .errors import KzlabelError
from .label import Label
from .layers import Layer

__all__ = ["SIGNED_OK", "Evidence", "MarkResult", "Report", "Status", "Verdict", "warning_evidence"]


class Verdict(str, Enum):
    COMPLIANT = "compliant"
    MACHINE_READABLE_ONLY = "machine_readable_only"
    WARNING_ONLY = "warning_only"
    STRIPPED = "stripped"
    TAMPERED = "tampered"
    UNLABELLED = "unlabelled"

    def __str__(self) -> str:
        return self.value


class Status(str, Enum):
    TRUSTED = "trusted"  # signature valid and chains to a given trust anchor
    VALID = "valid"  # signature valid; no trust anchors were given
    UNTRUSTED = "untrusted"  # signature valid; signer not under the given anchors
    INVALID = "invalid"  # a signature or content hash does not match
    FOUND = "found"  # present (warnings, watermarks: nothing to sign)
    ABSENT = "absent"
    UNAVAILABLE = "unavailable"  # the layer does not exist for this format, or could not be checked
    # signature valid, but the manifest's hard binding no longer matches the bytes while the content still matches
    # the signed label: the container was edited (metadata stripped, chunks rewritten), not what a person sees
    UNBOUND = "unbound"
    # a valid signed label beside unsigned fields of the same file that say otherwise (ai-generated false, another
    # source type): someone edited the label's carriers
    INCONSISTENT = "inconsistent"

    def __str__(self) -> str:
        return self.value


SIGNED_OK = {Status.TRUSTED, Status.VALID, Status.UNTRUSTED}


@dataclass
class Evidence:
    """What one layer showed: a status, one human sentence, and structured details."""

    layer: str
    status: Status
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "status": self.status.value, "detail": self.detail, "data": self.data}


@dataclass
class Report:
    source: str
    format: str
    evidence: list[Evidence]
    label: Label | None = None
    recovered: bool = False  # label came from the registry via the watermark, not from the file
    trust_checked: bool = False  # the verifier gave trust anchors, so signers were checked against them

    def layer(self, name: str) -> Evidence | None:
        return next((e for e in self.evidence if e.layer == name), None)

    @property
    def verdict(self) -> Verdict:
        statuses = {e.layer: e.status for e in self.evidence}
        if Status.INVALID in statuses.values() or Status.INCONSISTENT in statuses.values():
            return Verdict.TAMPERED
        # Unsigned standard fields written by other tools (IPTC, AIGC) still mark the content machine-readably.
        signed = statuses.get("c2pa") in SIGNED_OK or statuses.get("metadata") in SIGNED_OK | {Status.FOUND}
        # "visible:audio" (a video's soundtrack tone) is a perceptible warning too, "watermark:audio" a watermark
        found = {e.layer.partition(":")[0] for e in self.evidence if e.status == Status.FOUND}
        warned = "visible" in found
        if signed:
            return Verdict.COMPLIANT if warned else Verdict.MACHINE_READABLE_ONLY
        if "watermark" in found:
            return Verdict.STRIPPED
        return Verdict.WARNING_ONLY if warned else Verdict.UNLABELLED

    @property
    def trusted(self) -> bool:
        """True when some signed layer chains to a trust anchor the verifier gave."""
        return any(e.status == Status.TRUSTED for e in self.evidence)

    def rejection(self, *, allow_untrusted: bool = False) -> str | None:
        """Why a platform should not accept the file, in one line; None when it should.

        Not compliant is never accepted. A compliant file is refused when trust anchors were given and no signed
        layer is ``trusted`` (its signer is not under them, or only unsigned fields mark it), unless
        ``allow_untrusted`` says a valid signature from any signer is enough.
        """
        verdict = self.verdict
        if verdict != Verdict.COMPLIANT:
            return f"not compliant: {verdict.value}"
        if self.trust_checked and not self.trusted and not allow_untrusted:
            if any(e.status == Status.UNTRUSTED for e in self.evidence):
                return "compliant but untrusted: the signer is not under the given trust anchors"
            return "compliant but untrusted: no signed layer chains to the given trust anchors"
        return None

    def passes(self, *, allow_untrusted: bool = False) -> bool:
        """Whether a platform should accept the file (see :meth:`rejection`)."""
        return self.rejection(allow_untrusted=allow_untrusted) is None

    @property
    def accepted(self) -> bool:
        """:meth:`passes` with the default strictness: with trust anchors given, an untrusted signer is refused."""
        return self.passes()

    def raise_for_unlabelled(self, *, allow_untrusted: bool = False) -> Report:
        """Opt-in strictness for pipelines that must reject anything not accepted (see :meth:`rejection`)."""
        why = self.rejection(allow_untrusted=allow_untrusted)
        if why is not None:
            raise KzlabelError(why, source=self.source, format=self.format)
        return self

    def to_dict(self, *, allow_untrusted: bool = False) -> dict[str, Any]:
        """The report as JSON-ready data; ``accepted`` / ``why_not_accepted`` follow :meth:`rejection` with
        ``allow_untrusted``."""
        why = self.rejection(allow_untrusted=allow_untrusted)
        return {
            "source": self.source,
            "format": self.format,
            "verdict": self.verdict.value,
            "trusted": self.trusted,
            "trust_checked": self.trust_checked,
            "accepted": why is None,
            "why_not_accepted": why,
            "label": self.label.to_dict() if self.label else None,
            "label_recovered_from_registry": self.recovered,
            "evidence": [e.to_dict() for e in self.evidence],
        }

    def to_json(self, indent: int | None = 2, *, allow_untrusted: bool = False) -> str:
        return json.dumps(self.to_dict(allow_untrusted=allow_untrusted), indent=indent, ensure_ascii=False)

    def __str__(self) -> str:
        lines = [f"{self.source} ({self.format}): {self.verdict.value}"]
        width = max((len(e.layer) for e in self.evidence), default=0)
        for e in self.evidence:
            lines.append(f"  {e.layer:<{width}}  {e.status.value:<11} {e.detail}")
        if self.label:
            who = f"{self.label.owner} / {self.label.system} {self.label.system_version}".rstrip()
            src = " (recovered from registry)" if self.recovered else ""
            lines.append(f"  label{src}: {who}, created {self.label.created}, id {self.label.content_id}")
        return "\n".join(lines)


def warning_evidence(layer: str, seen: bool | None, why_absent: str, how: str = "") -> Evidence:
    """The evidence line for a perceptible warning: seen, not seen (why), or not checkable; ``how``: the handler's
    account of it (where the warning matched and how well, or why it cannot tell)."""
    more = f" ({how})" if how else ""
    if seen:
        return Evidence(layer, Status.FOUND, "perceptible warning present" + more)
    if seen is None:
        return Evidence(layer, Status.UNAVAILABLE, "cannot tell whether a warning is shown" + more)
    return Evidence(layer, Status.ABSENT, why_absent)


@dataclass(frozen=True)
class MarkResult:
    """What mark() did: the signed label, its token, which layers were applied and where the output went."""

    label: Label
    token: str
    format: str
    layers: tuple[Layer, ...]
    # the labelled bytes when no destination was given; None when the output went to ``dst`` (``data`` then reads a
    # path back: only on demand, a 3-hour WAV is 2 GB)
    held: bytes | None = field(repr=False)
    dst: str | None = None
    skipped: dict[Layer, str] = field(default_factory=dict)  # layer → why it was not applied
    # a sidecar C2PA manifest (for types the C2PA library cannot embed into): written to ``dst + ".c2pa"`` when dst
    # is a path, otherwise only returned here for the caller to store beside the output
    c2pa_sidecar: bytes | None = field(default=None, repr=False)
    to_path: bool = field(default=False, repr=False)  # ``dst`` is a path mark() wrote
    # layer → what a standard degradation tried on the written content showed ("survives JPEG quality 75 (p = …)"):
    # measured on this file at mark time, for the layers whose format has such a check (docs/watermark.md)
    robustness: dict[Layer, str] = field(default_factory=dict)
    # stream → how the content was re-encoded, measured on the written output ("video": "h264 712.3 kb/s written,
    # source h264 726.5 kb/s (0.98×)"), and why a rate was raised to keep the watermark (kzlabel.media_rate)
    encoding: dict[str, str] = field(default_factory=dict)
    # layer → the measured survival class of its mark on content of this kind and size ("full": the benchmark's whole
    # attack list held; "reduced": part of it, the robustness line says which), for layers whose format has classes
    survival_class: dict[Layer, str] = field(default_factory=dict)

    @property
    def data(self) -> bytes:
        """The labelled content (read back from ``dst`` when it was streamed there)."""
        if self.held is not None:
            return self.held
        if not self.to_path or self.dst is None:
            raise KzlabelError("the output was streamed to the file object given as dst; read it from there")
        return Path(self.dst).read_bytes()
