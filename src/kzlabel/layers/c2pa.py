"""The C2PA layer: sign a manifest into content and read one back (the only module that imports c2pa-python).

Manifest written by ``sign`` (claim v2, as c2pa-rs 0.91 builds it):

* ``claim_generator_info`` ``[{"name": "kzlabel", "version": ...}]``
* ``c2pa.actions.v2``: first ``c2pa.created`` with the IPTC ``digitalSourceType``; or, when the input already carries
  a C2PA manifest, ``c2pa.opened`` (linked to the old manifest, kept as a ``parentOf`` ingredient) followed by
  ``c2pa.edited`` with ``compositeWithTrainedAlgorithmicMedia``; plus ``c2pa.watermarked`` when a soft binding is given
* ``c2pa.soft-binding`` ``{"alg", "blocks": [{"scope": {}, "value"}]}`` (when a watermark was embedded)
* ``kz.kzlabel.label`` with the caller's ``label_claims`` (a signed label: ``kzlabel.label.token_claims``, the JWS's
  header and payload as JSON text and its signature; manifests before 2026-12-06 held ``{"token": "<compact JWS>"}``)
* ``cawg.training-mining`` ``{"entries": {cawg.ai_generative_training|ai_training|ai_inference|data_mining: {"use"}}}``

Settings (thumbnail on/off, trust anchors) are passed per call through a fresh ``c2pa.Context`` built from a settings
dict; nothing is written to c2pa-python's process-global settings, so concurrent calls with different trust stores
cannot leak into each other and no lock is needed.
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from .._version import __version__
from ..errors import MissingDependency, SigningError, UnsupportedFormat
from ..keys import Signer, TrustStore
from ..label import IPTC_COMPOSITE, IPTC_TRAINED, token_from_claims
from . import c2pa_native

__all__ = [
    "COMPOSITE_URI",
    "LABEL_ASSERTION",
    "TRAINED_ALGORITHMIC_MEDIA_URI",
    "TRAINING_VALUES",
    "C2paReport",
    "available",
    "HARD_BINDING_MISMATCH",
    "STORE_MIME",
    "Parent",
    "parent_from_store",
    "active_manifest_only",
    "edit_source_type",
    "existing_manifest",
    "only_binding_broken",
    "read",
    "sign",
    "sign_data_hashed",
    "store_data_hash",
    "supported_mime_types",
]

# the IPTC digital source types, defined once in the label module
TRAINED_ALGORITHMIC_MEDIA_URI = IPTC_TRAINED
COMPOSITE_URI = IPTC_COMPOSITE
LABEL_ASSERTION = "kz.kzlabel.label"
SOFT_BINDING_ASSERTION = "c2pa.soft-binding"
TRAINING_ASSERTION = "cawg.training-mining"
TRAINING_VALUES = ("allowed", "notAllowed", "constrained")
TRAINING_KEYS = ("cawg.ai_generative_training", "cawg.ai_training", "cawg.ai_inference", "cawg.data_mining")
_PARENT_ID = "kzlabel-parent"
_PARENT_STORE = "kzlabel-parent.c2pa"  # the builder resource holding a Parent's store
STORE_MIME = "application/c2pa"  # a bare manifest store (a sidecar, a registry's copy): readable without its asset

# content: bytes, or a seekable binary file (a long file is signed and read from disk, never copied into memory here;
# the C2PA library itself still buffers the asset, see docs/audio.md)
Content = bytes | IO[bytes]

# a hard binding (hash over the asset's bytes) that no longer matches: the file was edited after signing
HARD_BINDING_MISMATCH = frozenset(
    {
        "assertion.dataHash.mismatch",
        "assertion.bmffHash.mismatch",
        "assertion.boxesHash.mismatch",
        "assertion.collectionHash.mismatch",
        # reported beside a BMFF/data hash mismatch when a tool has rewritten the boxes the hash excludes (exiftool
        # -all= on MP4/M4A): about the same hard binding, not about the manifest
        "assertion.bmffHash.additionalExclusionsPresent",
        "assertion.dataHash.additionalExclusionsPresent",
    }
)
# codes that say nothing against the manifest itself
_NOT_FAILURES = frozenset({"signingCredential.untrusted", "signingCredential.ocsp.skipped"})


def only_binding_broken(codes: list[str]) -> bool:
    """Whether a manifest that does not validate fails only because its hard binding no longer matches the bytes,
    its claim signature still validating: the container was edited, the manifest itself is intact."""
    failures = {c for c in codes if c not in _NOTABLE_SUCCESS and c not in _NOT_FAILURES}
    return "claimSignature.validated" in codes and bool(failures) and failures <= HARD_BINDING_MISMATCH


# success codes worth reporting next to failures and informational codes
_NOTABLE_SUCCESS = (
    "signingCredential.trusted",
    "claimSignature.validated",
    "assertion.dataHash.match",
    "assertion.bmffHash.match",
    "assertion.boxesHash.match",
    "assertion.collectionHash.match",
)


@functools.lru_cache(maxsize=1)
def _library() -> Any:
    """c2pa-python, imported on first use: it loads the native c2pa-rs library (~0.2 s), which `kzlabel --help`,
    `keygen` and text-only runs never need. None when it is not installed."""
    try:  # absolute import: the c2pa-python package, not this module
        import c2pa
    except ImportError:  # pragma: no cover - exercised only without the extra
        return None
    return c2pa


def available() -> bool:
    return _library() is not None


def _need() -> Any:
    c2pa = _library()
    if c2pa is None:
        raise MissingDependency("the C2PA layer needs c2pa-python: pip install 'kzlabel[c2pa]'")
    return c2pa


@functools.lru_cache(maxsize=1)
def _reader_types() -> frozenset[str]:
    c2pa = _library()
    if c2pa is None:
        return frozenset()
    try:
        return frozenset(t.lower() for t in c2pa.Reader.get_supported_mime_types())
    except c2pa.C2paError:
        return frozenset()


@functools.lru_cache(maxsize=1)
def _builder_types() -> frozenset[str]:
    c2pa = _library()
    if c2pa is None:
        return frozenset()
    try:
        return frozenset(t.lower() for t in c2pa.Builder.get_supported_mime_types())
    except c2pa.C2paError:
        return _reader_types()


def supported_mime_types() -> frozenset[str]:
    """MIME types the installed C2PA library can carry a manifest in (empty without c2pa-python)."""
    return _reader_types()


def _context(settings: dict[str, Any]) -> Any:
    c2pa = _need()
    return c2pa.Context.from_dict(settings)


def _msg(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text


def _stream(content: Content) -> IO[bytes]:
    """A stream positioned at the start of ``content`` (a file is rewound: each use reads it from the start)."""
    if isinstance(content, (bytes, bytearray, memoryview)):
        return io.BytesIO(content)
    content.seek(0)
    return content


def _mentions(content: Content, needles: tuple[bytes, ...] = (b"c2pa", b"jumb")) -> bool:
    """Whether any of ``needles`` occurs in ``content``; a file is scanned in 1 MiB reads (with overlap)."""
    if isinstance(content, (bytes, bytearray, memoryview)):
        return any(n in content for n in needles)
    content.seek(0)
    keep = max(len(n) for n in needles) - 1
    tail = b""
    while chunk := content.read(1 << 20):
        window = tail + chunk
        if any(n in window for n in needles):
            return True
        tail = window[-keep:]
    return False


# --- sign ----------------------------------------------------------------------------------------------------------
def existing_manifest(data: Content, mime: str) -> tuple[bool, bool]:
    """(has a manifest?, readable?) for the input: signing then records an edit of it (a file is scanned, not
    loaded; ask once and hand the answer to :func:`sign`)."""
    c2pa = _need()
    if not isinstance(data, (bytes, bytearray, memoryview)) and not _mentions(data):
        return False, True  # a file without JUMBF: no need to have the C2PA library load it whole to say so
    try:
        with _context({"verify": {"verify_trust": False}}) as ctx:
            reader = c2pa.Reader.try_create(mime, _stream(data), None, ctx)
            if reader is None:
                return False, True
            reader.close()
            return True, True
    except c2pa.C2paError:  # a broken manifest (or JUMBF) in the input, or an unparsable container
        if not _mentions(data):
            return False, True
        return True, False


def edit_source_type(source_type: str) -> str:
    """The digital source type an edit of existing content records: AI-generated content made from content that
    already had a history is a composite (IPTC), so the new manifest says ``compositeWithTrainedAlgorithmicMedia``."""
    return COMPOSITE_URI if source_type == TRAINED_ALGORITHMIC_MEDIA_URI else source_type


def _definition(
    *,
    has_parent: bool,
    label_claims: dict | None,
    title: str | None,
    source_type: str | None,
    soft_binding: dict | None,
    training: str | Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The manifest definition; ``source_type=None`` claims nothing about AI (a rights-holder's own work: the input
    is then the ``parentOf`` ingredient of a ``c2pa.opened`` action, which needs no digital source type)."""
    actions: list[dict[str, Any]] = []
    if has_parent:
        actions.append({"action": "c2pa.opened", "parameters": {"ingredientIds": [_PARENT_ID]}})
        if source_type is not None:
            actions.append({"action": "c2pa.edited", "digitalSourceType": edit_source_type(source_type)})
    else:
        actions.append({"action": "c2pa.created", "digitalSourceType": source_type})
    assertions: list[dict[str, Any]] = []
    if soft_binding is not None:
        if "alg" not in soft_binding or "value" not in soft_binding:
            raise SigningError("soft_binding needs 'alg' and 'value'")
        actions.append({"action": "c2pa.watermarked"})
    assertions.append({"label": "c2pa.actions.v2", "data": {"actions": actions}})
    if soft_binding is not None:
        assertions.append(
            {
                "label": SOFT_BINDING_ASSERTION,
                "data": {
                    "alg": str(soft_binding["alg"]),
                    "blocks": [{"scope": {}, "value": str(soft_binding["value"])}],
                },
            }
        )
    if label_claims is not None:
        assertions.append({"label": LABEL_ASSERTION, "data": dict(label_claims)})
    if training is not None:
        entries = dict(training) if isinstance(training, Mapping) else {k: {"use": training} for k in TRAINING_KEYS}
        bad = [
            e.get("use") for e in entries.values() if not isinstance(e, Mapping) or e.get("use") not in TRAINING_VALUES
        ]
        if bad or not entries:
            raise SigningError(f"training must be one of {', '.join(TRAINING_VALUES)}, not {training!r}")
        assertions.append({"label": TRAINING_ASSERTION, "data": {"entries": entries}})
    definition: dict[str, Any] = {
        "claim_generator_info": [{"name": "kzlabel", "version": __version__}],
        "assertions": assertions,
    }
    if title:
        definition["title"] = title
    return definition


def _parent_ingredient(title: str | None, mime: str, parent: Parent | None = None, damaged: str = "") -> dict:
    """The ``parentOf`` ingredient entry of a manifest definition: with ``parent`` its store (kept whole, the builder
    resource ``_PARENT_STORE``) and the validation results measured over its asset; with ``damaged`` none, saying why.
    Without either: the title and relationship, for the library to complete from the asset."""
    ingredient: dict[str, Any] = {"title": title or "input", "relationship": "parentOf", "label": _PARENT_ID}
    if parent is None and not damaged:
        return ingredient
    ingredient["format"] = mime
    if parent is not None and parent.store is not None:
        ingredient |= {
            "active_manifest": parent.active,
            "validation_results": parent.results,
            "manifest_data": {"format": STORE_MIME, "identifier": _PARENT_STORE},
        }
    else:
        why = damaged or (parent.damaged if parent is not None else "")
        ingredient["description"] = f"the input's C2PA manifest is damaged and could not be kept: {why}"
    return ingredient


def sign(
    data: Content,
    mime: str,
    signer: Signer,
    *,
    label_claims: dict | None,
    title: str | None = None,
    source_type: str | None = TRAINED_ALGORITHMIC_MEDIA_URI,
    soft_binding: dict | None = None,
    training: str | Mapping[str, Any] | None = None,
    thumbnail: bool = False,
    parent: Content | None = None,
    embed: bool = True,
    dest: IO[bytes] | None = None,
    existing: tuple[bool, bool] | None = None,
) -> bytes:
    """Embed a signed C2PA manifest in ``data`` (of type ``mime``) and return the new bytes.

    ``data`` and ``parent`` may be seekable binary files instead of bytes; with ``dest`` (a file opened ``w+b``) the
    signed content is written there and the manifest store is returned instead.

    An existing manifest is never dropped: it becomes the ``parentOf`` ingredient of the new one. ``parent`` is the
    original input when ``data`` is a re-encoded copy of it (re-encoding loses the manifest store, the input keeps it).
    ``existing``: what :func:`existing_manifest` said of the input, when the caller has asked already.
    ``embed=False`` returns a sidecar manifest instead (the ``.c2pa`` file beside ``data``, hard-bound to all of its
    bytes): for types the library cannot embed into (Ogg, WebM, MKV), or files an embedding would break.
    Raises ``UnsupportedFormat`` for a type the C2PA library cannot carry, ``SigningError`` when signing fails.
    """
    c2pa = _need()
    mime = mime.lower()
    if embed and mime not in _builder_types():
        raise UnsupportedFormat(f"the C2PA library cannot embed a manifest in {mime}", format=mime)
    source = data if parent is None else parent
    if not embed:
        has_parent, parent_readable = False, True
    else:
        has_parent, parent_readable = existing if existing is not None else existing_manifest(source, mime)
    has_parent = has_parent or source_type is None
    definition = _definition(
        has_parent=has_parent,
        label_claims=label_claims,
        title=title,
        source_type=source_type,
        soft_binding=soft_binding,
        training=training,
    )
    c2pa_signer = signer.c2pa_signer()
    try:
        return _build_and_sign(
            c2pa, definition, data, mime, c2pa_signer, source if has_parent else None, title, thumbnail, embed, dest
        )
    except c2pa.C2paError as exc:
        if has_parent and not parent_readable:
            # The input's manifest is broken and c2pa could not take it as an ingredient: say so plainly.
            raise SigningError(
                f"the input carries a damaged C2PA manifest that the C2PA library refuses to keep as an ingredient: "
                f"{_msg(exc)}",
                format=mime,
            ) from exc
        raise SigningError(f"C2PA signing failed: {_msg(exc)}", format=mime) from exc


def _build_and_sign(
    c2pa: Any,
    definition: dict,
    data: Content,
    mime: str,
    c2pa_signer: Any,
    parent: Content | None,
    title: str | None,
    thumbnail: bool,
    embed: bool = True,
    dest: IO[bytes] | None = None,
) -> bytes:
    settings = {"builder": {"thumbnail": {"enabled": bool(thumbnail)}}}
    with _context(settings) as ctx:
        builder = c2pa.Builder(definition, context=ctx)
        try:
            if parent is not None:
                try:
                    builder.add_ingredient_from_stream(_parent_ingredient(title, mime), mime, _stream(parent))
                except c2pa.C2paError as exc:  # the input's manifest is damaged beyond what c2pa accepts
                    # Record the parent without its (unreadable) manifest store, saying why, and sign anyway.
                    builder.close()
                    fallback = dict(definition, ingredients=[_parent_ingredient(title, mime, damaged=_msg(exc))])
                    builder = c2pa.Builder(fallback, context=ctx)
            if not embed:
                builder.set_no_embed()
            if dest is not None:
                return bytes(builder.sign(c2pa_signer, mime, _stream(data), dest))
            out = io.BytesIO()
            manifest = builder.sign(c2pa_signer, mime, _stream(data), out)
            return out.getvalue() if embed else bytes(manifest)
        finally:
            builder.close()


def sign_data_hashed(
    signer: Signer,
    binding: Callable[[int], c2pa_native.DataHash],
    *,
    label_claims: dict | None,
    title: str | None = None,
    source_type: str | None = TRAINED_ALGORITHMIC_MEDIA_URI,
    soft_binding: dict | None = None,
    training: str | Mapping[str, Any] | None = None,
    mime: str = "text/plain",
    parent: Parent | None = None,
) -> bytes:
    """A bare manifest store (``application/c2pa``) bound by a ``c2pa.hash.data`` the caller computes, for content the
    C2PA library cannot embed into itself (text) or that kzlabel places in a stream. ``binding(size)`` is told the
    store's final size before signing (the exclusion that will hold it depends on it) and returns the hash; the store
    returned has exactly that size. ``parent``: the input's manifest store, kept as the ``parentOf`` ingredient of a
    ``c2pa.opened`` action from the store alone (:func:`parent_from_store`), as :func:`sign` keeps it from the asset."""
    c2pa = _need()
    definition = _definition(
        has_parent=parent is not None,
        label_claims=label_claims,
        title=title,
        source_type=source_type,
        soft_binding=soft_binding,
        training=training,
    )
    if parent is not None:
        definition["ingredients"] = [_parent_ingredient(title, mime, parent)]
    c2pa_signer = signer.c2pa_signer()
    try:
        with _context({"builder": {"thumbnail": {"enabled": False}}}) as ctx:
            builder = c2pa.Builder(definition, context=ctx)
            try:
                if parent is not None and parent.store is not None:
                    builder.add_resource(_PARENT_STORE, io.BytesIO(parent.store))
                size = len(c2pa_native.placeholder(builder, c2pa_signer.reserve_size()))
                store = c2pa_native.sign_data_hashed(builder, c2pa_signer, binding(size))
            finally:
                builder.close()
    except (c2pa.C2paError, c2pa_native.NativeError) as exc:
        raise SigningError(f"C2PA signing failed: {_msg(exc)}", format=mime) from exc
    if len(store) != size:  # the library broke its promise: the exclusion would not cover the store
        raise RuntimeError(f"signed manifest store is {len(store)} bytes, its placeholder {size}")
    return store


# --- read ----------------------------------------------------------------------------------------------------------
@dataclass
class C2paReport:
    """What the C2PA reader found. ``state``: absent | invalid | valid (signature fine, signer untrusted) | trusted;
    or referenced (a text points to a manifest by URL, which kzlabel does not fetch: found, not verified)."""

    present: bool
    state: str
    codes: list[str] = field(default_factory=list)
    manifest: dict | None = None
    label_token: str | None = None
    actions: list[str] = field(default_factory=list)
    source_type: str | None = None
    soft_binding: dict | None = None
    training: dict | None = None
    detail: str = ""
    ingredients: list[dict] = field(default_factory=list)
    manifest_id: str | None = None  # the active manifest's label (a URN): its id in a Soft Binding Resolution API
    data_hash: dict | None = None  # a bare store's c2pa.hash.data (its asset is elsewhere: the caller checks it)
    carrier: dict | None = None  # where a text carried the store (c2pa_text): its form, a pasted span

    @property
    def ok(self) -> bool:
        return self.state in ("valid", "trusted")

    def summary(self) -> dict[str, Any]:
        """What a person checking the manifest reads (verify's evidence data): the actions, the digital source type,
        the ingredients (what the content was made from) and who signed it, as the manifest states them."""
        sig = (self.manifest or {}).get("signature_info") or {}
        signer = {k: str(sig[k]) for k in ("common_name", "issuer", "alg", "time") if sig.get(k)}
        ingredients = [
            {
                **{k: str(i[k]) for k in ("title", "format", "relationship") if i.get(k)},
                "has_manifest": bool(i.get("active_manifest")),
            }
            for i in self.ingredients
        ]
        summary = {
            "actions": self.actions,
            "digital_source_type": self.source_type,
            "ingredients": ingredients,
            "signer": signer or None,
        }
        return summary | ({"text_carrier": self.carrier} if self.carrier else {})


def _read_settings(trust: TrustStore | None) -> dict[str, Any]:
    if trust is not None and trust.anchors:
        return {"trust": {"trust_anchors": trust.pem()}, "verify": {"verify_trust": True}}
    return {"verify": {"verify_trust": True}}


def _codes(results: dict | None, store: dict) -> list[str]:
    codes: list[str] = []
    if results:
        active = results.get("activeManifest") or {}
        for entry in active.get("failure") or []:
            codes.append(entry.get("code", ""))
        for entry in active.get("informational") or []:
            codes.append(entry.get("code", ""))
        for entry in active.get("success") or []:
            if entry.get("code") in _NOTABLE_SUCCESS:
                codes.append(entry["code"])
        for delta in results.get("ingredientDeltas") or []:
            for entry in (delta.get("validationDeltas") or {}).get("failure") or []:
                codes.append("ingredient:" + entry.get("code", ""))
    else:
        for entry in store.get("validation_status") or []:
            codes.append(entry.get("code", ""))
    return list(dict.fromkeys(c for c in codes if c))  # first occurrence of each, in order


def _fill(report: C2paReport, manifest: dict) -> None:
    for a in manifest.get("assertions") or []:
        label = a.get("label", "")
        data = a.get("data")
        base = label.split("__")[0]  # c2pa-rs numbers repeated labels: name__1
        if base in ("c2pa.actions", "c2pa.actions.v2") and isinstance(data, dict):
            for act in data.get("actions") or []:
                if isinstance(act, dict):
                    report.actions.append(str(act.get("action", "")))
                    if report.source_type is None and act.get("digitalSourceType"):
                        report.source_type = str(act["digitalSourceType"])
        elif base == LABEL_ASSERTION and isinstance(data, dict):
            tok = token_from_claims(data)
            if tok is not None and report.label_token is None:
                report.label_token = tok
        elif base == SOFT_BINDING_ASSERTION and isinstance(data, dict):
            sb = dict(data)
            blocks = data.get("blocks") or []
            if blocks and isinstance(blocks[0], dict) and "value" in blocks[0]:
                sb.setdefault("value", blocks[0]["value"])
            report.soft_binding = sb
        elif base == TRAINING_ASSERTION and isinstance(data, dict):
            entries = data.get("entries")
            report.training = dict(entries) if isinstance(entries, dict) else dict(data)
    report.ingredients = [i for i in manifest.get("ingredients") or [] if isinstance(i, dict)]


def _data_hash(reader: Any) -> dict | None:
    """The active manifest's ``c2pa.hash.data`` assertion (only the detailed report lists hard bindings)."""
    detailed = json.loads(reader.detailed_json())
    manifest = (detailed.get("manifests") or {}).get(detailed.get("active_manifest") or "") or {}
    found = (manifest.get("assertion_store") or {}).get("c2pa.hash.data")
    return found if isinstance(found, dict) else None


def store_data_hash(store: bytes) -> dict | None:
    """A bare store's ``c2pa.hash.data`` as the active manifest states it, parsed without validating anything (half
    the time of :func:`read`): for a caller that must know what the binding claims before it validates the store."""
    c2pa = _need()
    try:
        with _context({"verify": {"verify_after_reading": False, "verify_trust": False}}) as ctx:
            reader = c2pa.Reader.try_create(STORE_MIME, io.BytesIO(store), None, ctx)
            if reader is None:
                return None
            try:
                return _data_hash(reader)
            finally:
                reader.close()
    except c2pa.C2paError:
        return None


def read(data: Content, mime: str, trust: TrustStore | None = None, *, sidecar: bytes | None = None) -> C2paReport:
    """Read and validate the C2PA manifest in ``data`` (bytes or a seekable binary file; or the ``sidecar`` manifest
    bound to ``data``); never raises for a missing or broken manifest.

    ``trust``: the anchors to trust for this call only (applied through a per-call Context, no global state).
    """
    c2pa = _need()
    mime = mime.lower()
    if sidecar is None and mime not in _reader_types():
        raise UnsupportedFormat(f"the C2PA library cannot read {mime}", format=mime)
    try:
        with _context(_read_settings(trust)) as ctx:
            reader = c2pa.Reader.try_create(mime, _stream(data), sidecar, ctx)
            if reader is None:
                return C2paReport(present=False, state="absent")
            try:
                store = json.loads(reader.json())
                state = (reader.get_validation_state() or "").lower()
                results = reader.get_validation_results()
                data_hash = _data_hash(reader) if mime == STORE_MIME else None
            finally:
                reader.close()
    except c2pa.C2paError as exc:  # JUMBF present but unreadable, or the container itself unparsable
        if sidecar is None and not _mentions(data):
            return C2paReport(
                present=False, state="absent", detail=f"the C2PA library could not parse the file: {_msg(exc)}"
            )
        return C2paReport(present=True, state="invalid", codes=["manifest.unreadable"], detail=_msg(exc))

    active_label = store.get("active_manifest")
    manifest = (store.get("manifests") or {}).get(active_label) if active_label else None
    codes = _codes(results, store)
    failures = [c for c in codes if c not in _NOTABLE_SUCCESS and not c.startswith("ingredient:")]
    if state == "trusted":
        st = "trusted"
    elif state == "valid":
        st = "valid"
    elif state == "invalid":
        st = "invalid"
    else:  # unknown / older library: derive from codes
        hard = [c for c in failures if c not in ("signingCredential.untrusted", "signingCredential.ocsp.skipped")]
        st = "invalid" if hard or manifest is None else ("trusted" if "signingCredential.trusted" in codes else "valid")
    report = C2paReport(
        present=True, state=st, codes=codes, manifest=manifest, manifest_id=active_label, data_hash=data_hash
    )
    if manifest is None:
        report.state = "invalid"
        report.detail = "no active manifest"
    else:
        _fill(report, manifest)
    if report.state == "invalid" and not report.detail:
        bad = [c for c in failures if c != "signingCredential.untrusted"]
        report.detail = ", ".join(bad or failures)
    return report


# --- manifest stores -------------------------------------------------------------------------------------------------
def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, whole box) of each ISO BMFF-style box in ``data`` (JUMBF uses the same box header)."""
    out: list[tuple[bytes, bytes]] = []
    at = 0
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8]
        head = 8
        if size == 1 and at + 16 <= len(data):
            size, head = int.from_bytes(data[at + 8 : at + 16], "big"), 16
        elif size == 0:
            size = len(data) - at
        if size < head or at + size > len(data):
            raise ValueError("truncated JUMBF box")
        out.append((kind, data[at : at + size]))
        at += size
    if at != len(data):
        raise ValueError("trailing bytes after the JUMBF boxes")
    return out


def active_manifest_only(store: bytes) -> bytes:
    """The manifest store reduced to its active (last) manifest: what the Soft Binding Resolution API returns for
    ``returnActiveManifest=true``. The store is a ``jumb`` superbox holding a ``jumd`` description and one ``jumb``
    per manifest, the active one last (C2PA 2.x, "Manifest Store"). Raises ValueError for anything else."""
    top = _boxes(store)
    if len(top) != 1 or top[0][0] != b"jumb":
        raise ValueError("not a C2PA manifest store")
    inner = _boxes(top[0][1][8:])
    if len(inner) < 2 or inner[0][0] != b"jumd" or any(kind != b"jumb" for kind, _ in inner[1:]):
        raise ValueError("not a C2PA manifest store")
    body = inner[0][1] + inner[-1][1]
    return (len(body) + 8).to_bytes(4, "big") + b"jumb" + body


@dataclass(frozen=True)
class Parent:
    """The input's manifest store, to keep as the new manifest's ``parentOf`` ingredient without handing the C2PA
    library the asset (data-hashed signing): the store, its active manifest's label, and the validation results
    measured over the asset as the library records them for an ingredient it reads from the asset. ``store`` None:
    unreadable, recorded without it (``damaged`` says why), as :func:`sign` records a parent it cannot read."""

    store: bytes | None
    active: str | None = None
    results: dict | None = None
    damaged: str = ""


def parent_from_store(store: bytes, binding: Callable[[dict | None], tuple[bool, str]]) -> Parent:
    """A :class:`Parent` from a bare store read out of its asset. The library validates the store as it does an
    ingredient (the builder's settings: no trust anchors); the hard binding it cannot check without the asset, so
    ``binding(c2pa.hash.data)`` checks it over the asset (ok, why not) and its result replaces the library's."""
    c2pa = _need()
    try:
        with _context({"verify": {"verify_trust": True}}) as ctx:
            reader = c2pa.Reader.try_create(STORE_MIME, io.BytesIO(store), None, ctx)
            if reader is None:
                return Parent(None, damaged="no manifest store in its slot")
            try:
                active = json.loads(reader.json()).get("active_manifest")
                results = reader.get_validation_results() or {}
                data_hash = _data_hash(reader)
            finally:
                reader.close()
    except c2pa.C2paError as exc:
        return Parent(None, damaged=_msg(exc))
    if not active:
        return Parent(None, damaged="no active manifest")
    ok, why = binding(data_hash)
    manifest = results.setdefault("activeManifest", {})
    url = f"self#jumbf=/c2pa/{active}/c2pa.assertions/c2pa.hash.data"
    for kind in ("success", "informational", "failure"):  # the library's view of a hash it could not compute
        entries = manifest.get(kind) or []
        url = next(
            (e["url"] for e in entries if e.get("code", "").startswith("assertion.dataHash") and e.get("url")), url
        )
        manifest[kind] = [e for e in entries if not str(e.get("code", "")).startswith("assertion.dataHash")]
    if ok:
        manifest["success"].append({"code": "assertion.dataHash.match", "url": url, "explanation": "data hash valid"})
    else:
        manifest["failure"].append({"code": "assertion.dataHash.mismatch", "url": url, "explanation": why})
    return Parent(store, active, results)
