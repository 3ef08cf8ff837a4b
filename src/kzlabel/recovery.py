"""Soft binding, both ways: record what mark signed under the watermark's payload, and recover a stripped file's
label and C2PA manifest from a registry (a local one, or a remote Soft Binding Resolution API) by that payload.

A registry's answer is not taken on trust: the label must be signed (its signature is checked against the verifier's
trust anchors like any other), must carry the content id the watermark carries, and a recovered manifest store must
have a valid claim signature and a soft binding naming this very payload -- else nothing is recovered and the
evidence says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import formats
from .errors import RegistryError
from .io import Limits, Source, read_input
from .keys import TrustStore
from .label import Label, label_from_token_unverified, verify_token
from .layers import c2pa as c2pa_layer
from .registry import SOFT_BINDING_ALG, Registry, binding_value
from .report import Evidence, Status

__all__ = ["Recovery", "record_mark", "recover", "soft_binding", "watermark_evidence", "watermark_payloads"]


def soft_binding(content_id: str) -> dict[str, str]:
    """The ``c2pa.soft-binding`` claim for a watermark carrying ``content_id``: the algorithm id the resolution API
    serves and the base64 value a client sends to ``/matches/byBinding`` as it is."""
    return {"alg": SOFT_BINDING_ALG, "value": binding_value(content_id)}


def record_mark(registry: Registry, label: Label, token: str, format: str, store: bytes | None) -> None:
    """Record a mark: the signed label, and the manifest store signed with it (when there is one) under its active
    manifest's id, so the resolution API can serve it."""
    manifest_id = c2pa_layer.read(store, c2pa_layer.STORE_MIME).manifest_id if store else None
    registry.record(label.content_id, token, format, store if manifest_id else None, manifest_id)


@dataclass
class Recovery:
    """What a registry gave back for one payload: the label (None when nothing usable came back), a phrase for the
    evidence line and the data behind it."""

    label: Label | None
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


def _manifest_note(store: bytes, content_id: str, trust: TrustStore | None) -> tuple[str | None, str, dict]:
    """(the label token inside, a phrase, data) for a recovered manifest store; token None when it does not hold."""
    rep = c2pa_layer.read(store, c2pa_layer.STORE_MIME, trust)
    data: dict[str, Any] = {"manifest_id": rep.manifest_id, "manifest_bytes": len(store)}
    # read without its asset, a store's hard binding cannot match: only the claim signature says anything
    signed = rep.ok or c2pa_layer.only_binding_broken(rep.codes)
    bound = rep.soft_binding or {}
    if not signed:
        data["manifest"] = "invalid"
        return None, f"manifest {rep.manifest_id} does not validate ({', '.join(rep.codes)})", data
    if (bound.get("alg"), bound.get("value")) != (SOFT_BINDING_ALG, binding_value(content_id)):
        data["manifest"] = "unbound"
        return None, f"manifest {rep.manifest_id} does not claim this watermark", data
    trusted = "signingCredential.trusted" in rep.codes
    state = "trusted" if trusted else ("untrusted" if trust is not None and trust.anchors else "valid")
    data["manifest"] = state
    return rep.label_token, f"manifest {rep.manifest_id} ({state} signature)", data


def recover(registry: Registry, content_id: str, trust: TrustStore | None) -> Recovery | None:
    """The label (and manifest) ``registry`` holds for ``content_id``; None when it holds nothing. An unreachable
    registry is reported, not raised: verify still reports every layer it could read."""
    try:
        found = registry.entry(content_id)
    except RegistryError as exc:
        return Recovery(None, f"registry unavailable ({exc.message})", {"error": exc.message})
    if found is None:
        return None
    notes: list[str] = []
    data: dict[str, Any] = {}
    token = found.token
    if found.manifest is not None:
        inside, note, data = _manifest_note(found.manifest, content_id, trust)
        notes.append(note)
        token = token or inside
    if not token:
        return Recovery(None, "registry: " + "; ".join(notes or ["no label"]), data)
    check = verify_token(token, trust)
    label = check.label if check.ok else label_from_token_unverified(token)
    if label is not None and label.content_id != content_id:
        notes.insert(0, f"its label is for content id {label.content_id}, not this one")
        return Recovery(None, "registry: " + "; ".join(notes), data)
    data["label"] = check.status
    notes.insert(0, f"label of {label.owner if label else '?'} ({check.status})")
    return Recovery(label, "registry: " + "; ".join(notes), data)


def watermark_payloads(src: Source, limits: Limits, key: bytes | None = None, name: str | None = None) -> list[str]:
    """The content ids the watermarks in ``src`` carry (a video's picture and soundtrack each may have one), read by
    the very detector verify uses (the format handler's ``inspect``): what ``/matches/byContent`` resolves."""
    inp = read_input(src, limits, name)
    findings = formats.detect(inp).inspect(inp, limits, key)
    marks = [findings.watermark, *(part.watermark for part in findings.parts.values())]
    return list(dict.fromkeys(m.payload.hex() for m in marks if m is not None and m.found and m.payload))


def watermark_evidence(
    layer: str, wm: Any, label: Label | None, registry: Registry | None, trust: TrustStore | None
) -> tuple[Evidence, Label | None, bool]:
    """One watermark's evidence line (``wm``: a WatermarkResult or None); with no label yet, the registry may recover
    it from the payload. Returns (line, the label, whether it was recovered)."""
    if wm is None:
        return Evidence(layer, Status.UNAVAILABLE, "watermark could not be checked"), label, False
    if wm.unreadable:  # the keyed pilot proves a mark; its payload cannot be read
        detail = (
            f"watermark present (p = {wm.p_value:.1e}), payload unreadable: the mark is too damaged to decode (or a "
            "second mark was written over it), so it cannot name the content or recover its label"
        )
        return Evidence(layer, Status.FOUND, detail, {"payload": None, "p_value": wm.p_value}), label, False
    if not wm.found:
        return Evidence(layer, Status.ABSENT, "no watermark found", {"p_value": wm.p_value}), label, False
    recovered = False
    cid = wm.payload.hex()
    data: dict[str, Any] = {"payload": cid, "p_value": wm.p_value}
    detail = f"payload {cid} (p = {wm.p_value:.1e})"
    if label is not None and label.content_id != cid:
        detail += f"; does not match the label's content id {label.content_id}"
        data["matches_label"] = False
    elif label is not None:
        data["matches_label"] = True
    if label is None and registry is not None:
        found = recover(registry, cid, trust)
        if found is not None:
            label, recovered = found.label, found.label is not None
            detail += "; " + found.detail
            data["registry"] = found.data
    return Evidence(layer, Status.FOUND, detail, data), label, recovered
