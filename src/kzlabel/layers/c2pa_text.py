"""C2PA manifests in text, in the three forms of C2PA 2.4 (appendices A.7-A.9).

* ``unstructured`` (A.8, plain text): ``U+FEFF`` then one variation selector per byte (0-15 → U+FE00-FE0F,
  16-255 → U+E0100-E01EF) of a ``C2PATextManifestWrapper``: magic ``C2PATXT\\0``, version 1, the store's length
  (uint32, big-endian), the store, then padding to a length fixed before signing. Invisible, and it survives
  copy-paste. Hard binding: ``c2pa.hash.data`` over the UTF-8 bytes of the NFC-normalised text, the wrapper excluded.
* ``structured`` (A.9, Markdown): ``<!-- -----BEGIN C2PA MANIFEST----- data:application/c2pa;base64,...
  -----END C2PA MANIFEST----- -->`` on a last line; the binding covers the raw bytes with that line (and the line
  break before it) excluded.
* ``html`` (A.7): ``<script type="application/c2pa">BASE64</script>`` just before ``</head>``; the element is
  excluded from the binding over the raw bytes.

The store is signed data-hashed (c2pa.sign_data_hashed): the size is known before signing, so the exclusion is
written into the manifest it excludes. Reading validates the store with the C2PA library (signature, trust,
assertions) and the hard binding here, since the library has no text handler. A wrapper found inside a larger text
(pasted) still validates for the span it was signed over: the report says which bytes that is.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SigningError, UnsupportedFormat
from ..io import Input
from ..keys import Signer, TrustStore
from ..label import Label, token_claims
from ..report import Evidence, Report, Status
from . import c2pa as c2pa_layer
from . import c2pa_embed
from .c2pa_native import DataHash

__all__ = [
    "FORMS",
    "MIMES",
    "TextCarrier",
    "decode_wrapper",
    "encode_wrapper",
    "Pasted",
    "find",
    "pasted",
    "read",
    "sign",
    "sign_file",
    "strip",
]

FORMS = {"text/plain": "unstructured", "text/markdown": "structured", "text/html": "html"}
MIMES = frozenset(FORMS)

MAGIC = b"C2PATXT\0"
VERSION = 1
_HEADER = struct.Struct(">8sBI")
_PREFIX = "\ufeff"
_VS = "[\ufe00-\ufe0f\U000e0100-\U000e01ef]"
_WRAPPER = re.compile(_PREFIX + f"{_VS}{{{_HEADER.size},}}")
BEGIN, END = "-----BEGIN C2PA MANIFEST-----", "-----END C2PA MANIFEST-----"
DATA_URI = "data:application/c2pa;base64,"
# an A.9 block, line-bounded: a comment line (``<!-- … -->`` in Markdown, ``# …`` in YAML/TOML front matter), or the
# multi-line form (BEGIN, the reference, END on lines of their own); the reference is a data: URI or a URL
_BLOCK = re.compile(
    r"^[ \t]*(?:<!--|#)?[ \t]*" + re.escape(BEGIN) + r"\s+(\S+)\s+" + re.escape(END) + r"[ \t]*(?:-->)?[ \t]*(?=\r?$)",
    re.M,
)
# YAML (---) or TOML (+++) front matter at the start: its opening fence line, and a closing fence line after it
_FRONT = re.compile(r"\A\ufeff?(---|\+\+\+)[ \t]*\r?\n(?:.*?\r?\n)??\1[ \t]*(?:\r?\n|\Z)", re.S)
_LINK = re.compile(r"<link\b[^>]*>", re.I)
_ATTR = re.compile(r"""([a-zA-Z-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
_SCRIPT = re.compile(r'<script\s+type\s*=\s*["\']application/c2pa["\']\s*>\s*([A-Za-z0-9+/=\s]*?)\s*</script\s*>', re.I)
_HEAD_CLOSE = re.compile(r"</head\s*>", re.I)


# --- the A.8 wrapper ------------------------------------------------------------------------------------------------
def _vs(byte: int) -> str:
    return chr(0xFE00 + byte) if byte < 16 else chr(0xE0100 + byte - 16)


# byte ↔ selector tables for str.translate (a store is ~5 KB: a per-character Python loop costs milliseconds)
_TO_VS = {b: _vs(b) for b in range(256)}
_FROM_VS = {ord(_vs(b)): b for b in range(256)}


def wrapper_size(store_size: int) -> int:
    """UTF-8 bytes of the padded wrapper for a store of ``store_size`` bytes: fixed before signing, whatever the
    store's bytes (each is 3 or 4 UTF-8 bytes); 6 spare bytes so that any shortfall is a sum of 3s and 4s."""
    return 3 + (_HEADER.size + store_size) * 4 + 6


def encode_wrapper(store: bytes, size: int | None = None) -> str:
    """The wrapper for ``store``, padded (after the store, which its length field delimits) to ``size`` bytes."""
    text = _PREFIX + (_HEADER.pack(MAGIC, VERSION, len(store)) + store).decode("latin-1").translate(_TO_VS)
    gap = (wrapper_size(len(store)) if size is None else size) - len(text.encode("utf-8"))
    fours = next(b for b in range(gap // 4, -1, -1) if (gap - 4 * b) % 3 == 0)  # gap is never 1, 2 or 5
    return text + _vs(0) * ((gap - 4 * fours) // 3) + _vs(255) * fours


def decode_wrapper(wrapper: str) -> bytes | None:
    """The store inside a wrapper (``U+FEFF`` + selectors), or None when it is not a version-1 C2PA wrapper."""
    raw = wrapper[1:].translate(_FROM_VS).encode("latin-1")
    if len(raw) < _HEADER.size:
        return None
    magic, version, length = _HEADER.unpack_from(raw)
    if magic != MAGIC or version != VERSION or len(raw) < _HEADER.size + length:
        return None
    return raw[_HEADER.size : _HEADER.size + length]


# --- finding a carrier ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextCarrier:
    """A manifest store found in a text: its form, the store (None when undecodable or only referenced) and the
    carrier's byte span in the bytes the binding covers (the NFC-normalised text for ``unstructured``, the raw text
    otherwise; an A.9 block's line(s) without their line breaks). ``reference``: the URL of a manifest the text only
    points to (an A.9 block's URL, an A.7 ``<link rel="c2pa-manifest">``), which kzlabel does not fetch."""

    form: str
    store: bytes | None
    start: int
    length: int
    reference: str | None = None


def _b64(data: str) -> bytes | None:
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _span(text: str, m: re.Match[str]) -> tuple[int, int]:
    start = len(text[: m.start()].encode("utf-8"))
    return start, len(m.group(0).encode("utf-8"))


def _link_href(tag: str) -> str | None:
    """The ``href`` of a ``<link rel="c2pa-manifest">`` tag (None for any other link)."""
    attrs = {m.group(1).lower(): next(g for g in m.groups()[1:] if g is not None) for m in _ATTR.finditer(tag)}
    return attrs.get("href") if "c2pa-manifest" in attrs.get("rel", "").lower().split() else None


def find(text: str) -> list[TextCarrier]:
    """Every C2PA carrier in ``text``, in all three forms (a valid asset has exactly one)."""
    found: list[TextCarrier] = []
    nfc = unicodedata.normalize("NFC", text) if _PREFIX in text else text
    for m in _WRAPPER.finditer(nfc):
        found.append(TextCarrier("unstructured", decode_wrapper(m.group(0)), *_span(nfc, m)))
    if BEGIN in text:
        for m in _BLOCK.finditer(text):
            ref = m.group(1)
            inline = ref.startswith(DATA_URI)
            store = _b64(ref[len(DATA_URI) :]) if inline else None
            found.append(TextCarrier("structured", store, *_span(text, m), reference=None if inline else ref))
    for m in _SCRIPT.finditer(text):
        found.append(TextCarrier("html", _b64(m.group(1)), *_span(text, m)))
    for m in _LINK.finditer(text):
        href = _link_href(m.group(0))
        if href is not None:
            found.append(TextCarrier("html", None, *_span(text, m), reference=href))
    return found


def _unblock(m: re.Match[str]) -> tuple[int, int]:
    """The characters an A.9 block takes out of the text: its line(s) and one line break, the one before it when
    there is one, else the one after it (a first line). Either way ``a⏎BLOCK⏎b`` leaves ``a⏎b``."""
    text, start, end = m.string, m.start(), m.end()
    if start:
        return start - (2 if text[start - 2 : start] == "\r\n" else 1), end
    return start, end + (2 if text[end : end + 2] == "\r\n" else 1 if text[end : end + 1] == "\n" else 0)


def strip(text: str) -> str:
    """``text`` without any C2PA carrier (what the kzlabel label's digests were computed over before signing)."""
    if _PREFIX in text:
        text = _WRAPPER.sub("", text)
    if BEGIN in text:
        for m in reversed(list(_BLOCK.finditer(text))):
            lo, hi = _unblock(m)
            text = text[:lo] + text[hi:]
    text = _SCRIPT.sub("", text)
    return _LINK.sub(lambda m: "" if _link_href(m.group(0)) is not None else m.group(0), text)


# --- sign -----------------------------------------------------------------------------------------------------------
def _hash(data: bytes, start: int, length: int) -> bytes:
    return hashlib.sha256(data[:start] + data[start + length :]).digest()


def sign(
    text: str,
    mime: str,
    signer: Signer,
    *,
    label_claims: dict | None,
    title: str | None = None,
    source_type: str = c2pa_layer.TRAINED_ALGORITHMIC_MEDIA_URI,
    soft_binding: dict | None = None,
    training: str | Mapping[str, Any] | None = None,
) -> tuple[str, bytes]:
    """``text`` with a signed manifest in the form for ``mime`` (an old carrier replaced), and the store.

    Raises ``UnsupportedFormat`` for a type with no text form, ``SigningError`` when signing fails (an HTML document
    without ``</head>`` included)."""
    form = FORMS.get(mime.lower())
    if form is None:
        raise UnsupportedFormat(f"C2PA 2.4 defines no text embedding for {mime}", format=mime)
    text = strip(text)
    if form == "unstructured":
        text = unicodedata.normalize("NFC", text)
    nl = "\r\n" if "\r\n" in text else "\n"
    data = text.encode("utf-8")
    at = len(data)
    head = None
    front = _FRONT.match(text) if form == "structured" else None
    if front:  # A.9: the block goes in the front matter, a YAML/TOML comment line right after the opening fence
        fence = text.index("\n") + 1
        nl = "\r\n" if text[fence - 2 : fence] == "\r\n" else "\n"
        at = len(text[:fence].encode("utf-8"))
    if form == "html":
        head = _HEAD_CLOSE.search(text)
        if head is None:
            raise SigningError("the HTML has no </head> to hold the C2PA manifest element (A.7)", format=mime)
        at = len(text[: head.start()].encode("utf-8"))

    def carrier_size(store_size: int) -> int:
        b64 = 4 * ((store_size + 2) // 3)
        if form == "unstructured":
            return wrapper_size(store_size)
        if form == "structured" and front:
            return len(f"# {BEGIN} {DATA_URI} {END}{nl}".encode()) + b64
        if form == "structured":
            return len(f"{nl}<!-- {BEGIN} {DATA_URI} {END} -->".encode()) + b64
        return len('<script type="application/c2pa"></script>') + b64

    store = c2pa_layer.sign_data_hashed(
        signer,
        lambda size: DataHash(hashlib.sha256(data).digest(), [(at, carrier_size(size))]),
        label_claims=label_claims,
        title=title,
        source_type=source_type,
        soft_binding=soft_binding,
        training=training,
        mime=mime,
    )
    b64 = base64.b64encode(store).decode("ascii")
    if form == "unstructured":
        out = text + encode_wrapper(store, carrier_size(len(store)))
    elif front:
        out = text[:fence] + f"# {BEGIN} {DATA_URI}{b64} {END}{nl}" + text[fence:]
    elif form == "structured":
        out = text + f"{nl}<!-- {BEGIN} {DATA_URI}{b64} {END} -->"
    else:
        assert head is not None
        out = text[: head.start()] + f'<script type="application/c2pa">{b64}</script>' + text[head.start() :]
    return out, store


def sign_file(
    src: Path, dst: Path | None, mime: str, signer: Signer, label: Label, token: str, training: str | None
) -> bytes:
    """:func:`sign` from file to file for a signed kzlabel ``label`` (``token``), carried as ``kz.kzlabel.label``;
    the text is under the text limit, so it is read whole. Returns the store."""
    if dst is None:
        raise ValueError("a C2PA text manifest is always embedded: dst is needed")
    text = src.read_bytes().decode("utf-8")
    out, store = sign(
        text, mime, signer, label_claims=token_claims(token), source_type=label.source_type, training=training
    )
    dst.write_bytes(out.encode("utf-8"))
    return store


# --- read -----------------------------------------------------------------------------------------------------------
def _binding_state(carrier: TextCarrier, covered: bytes, data_hash: dict | None) -> tuple[bool, str, dict]:
    """(matches?, why, extra evidence): the exclusion must be the carrier and the rest must hash to the signed value.
    A wrapper pasted into a longer text is checked over the span before it that has the signed length."""
    exclusions = (data_hash or {}).get("exclusions")
    first = exclusions[0] if isinstance(exclusions, list) and len(exclusions) == 1 else None
    signed_at = first.get("start") if isinstance(first, dict) else None
    if carrier.form == "unstructured" and isinstance(signed_at, int) and 0 <= signed_at < carrier.start:
        lo = carrier.start - signed_at  # pasted: the signed text is the ``signed_at`` bytes just before the wrapper
        excl = (signed_at, carrier.length)
        ok, why = c2pa_embed.check_hash(
            data_hash, excl, lambda: hashlib.sha256(covered[lo : carrier.start]).digest(), "text"
        )
        if not ok:
            return False, why, {}
        span = {"signed_span": [lo, carrier.start], "text_bytes": len(covered) - carrier.length}
        return True, f"covers bytes {lo}-{carrier.start} only: the labelled text was pasted into a longer one", span
    excl = (carrier.start, carrier.length)
    if carrier.form == "structured" and isinstance(signed_at, int) and isinstance(first, dict):
        excl = _block_exclusion(covered, carrier, signed_at, first.get("length"))
    ok, why = c2pa_embed.check_hash(data_hash, excl, lambda: _hash(covered, *excl), "text")
    return ok, why, {}


def _block_exclusion(covered: bytes, carrier: TextCarrier, start: int, length: Any) -> tuple[int, int]:
    """The signed exclusion when it is the A.9 block's line(s) with at most one line break on either side (writers
    differ: the line and the break before it when last, the break after it when first or inside front matter);
    else the block alone, which the signed exclusion then fails to match."""
    end = carrier.start + carrier.length
    if isinstance(length, int) and start <= carrier.start and start + length >= end:
        before, after = covered[start : carrier.start], covered[end : start + length]
        if before in (b"", b"\n", b"\r\n") and after in (b"", b"\n", b"\r\n"):
            return start, length
    return carrier.start, carrier.length


def read(text: str, trust: TrustStore | None = None) -> c2pa_layer.C2paReport:
    """Find and validate the C2PA manifest in ``text`` (any of the three forms); never raises for a missing or
    broken one. The report is the media layer's, with the hard binding checked here."""
    carriers = find(text)
    if not carriers:
        return c2pa_layer.C2paReport(present=False, state="absent")
    if len(carriers) > 1:
        return c2pa_layer.C2paReport(
            present=True, state="invalid", codes=["manifest.text.multipleManifests"], detail="more than one carrier"
        )
    carrier = carriers[0]
    if carrier.store is None and carrier.reference is not None:  # a URL: not fetched (no network, no tracking pixel)
        detail = f"a manifest referenced at {carrier.reference}: not fetched, so not verified"
        return c2pa_layer.C2paReport(
            present=True,
            state="referenced",
            detail=detail,
            carrier={"form": carrier.form, "reference": carrier.reference},
        )
    if carrier.store is None:
        return c2pa_layer.C2paReport(
            present=True, state="invalid", codes=["manifest.unreadable"], detail=f"undecodable {carrier.form} carrier"
        )
    rep = c2pa_layer.read(carrier.store, c2pa_layer.STORE_MIME, trust)
    if rep.manifest is None:
        return rep
    covered = (unicodedata.normalize("NFC", text) if carrier.form == "unstructured" else text).encode("utf-8")
    ok, why, extra = _binding_state(carrier, covered, rep.data_hash)
    c2pa_embed.settle(rep, ok, why)
    rep.carrier = {"form": carrier.form, **extra}
    return rep


@dataclass(frozen=True)
class Pasted:
    """A labelled text found inside a longer one: ``input`` is the labelled part (the signed span and its wrapper)."""

    input: Input
    detail: str
    data: dict

    def annotate(self, report: Report) -> Report:
        """``report`` (on the labelled part) with a ``c2pa:span`` line saying which span of the text it speaks for."""
        report.evidence.append(Evidence("c2pa:span", Status.FOUND, self.detail, self.data))
        return report


def pasted(data: bytes, name: str | None = None) -> Pasted | None:
    """The labelled part when ``data`` holds an A.8 wrapper whose signed text is a span of it, not all of it (a chat
    answer pasted into a document); None otherwise. Verify then reports on that span and says so."""
    text = data.decode("utf-8", "replace")
    carriers = find(text)
    carrier = carriers[0] if len(carriers) == 1 else None
    if carrier is None or carrier.form != "unstructured" or carrier.store is None:
        return None
    covered = unicodedata.normalize("NFC", text).encode("utf-8")
    ok, _, extra = _binding_state(carrier, covered, c2pa_layer.store_data_hash(carrier.store))
    if not ok or "signed_span" not in extra:
        return None
    lo, hi = extra["signed_span"]
    detail = f"the labelled text is bytes {lo}-{hi} of {extra['text_bytes']}: the label covers that span only"
    part = covered[lo : hi + carrier.length]
    return Pasted(Input(data=part, name=name), detail, {"span": [lo, hi], "text_bytes": extra["text_bytes"]})
