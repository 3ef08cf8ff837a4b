"""What every text dialect shares: decoding, the notice line, the digests that bind a label to the text.

The label binds the text with two SHA-256 digests (line endings normalised to LF, carrier removed):
``content`` covers the text with the notice in place, ``body`` the text without the notice. So verify can tell
an edit of the text (tampered) from removal of the notice alone (machine-readable only).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import CorruptInput, LimitExceeded
from ...io import Input, Limits
from ...label import JWS_TYPE, NOTICES, Label, TrainingSignal, b64url_decode
from ...layers import Layer, c2pa_text
from ...rights.vocab import signal_from_tdmrep
from ..base import Handler, LabelMatch, MarkOptions, rewrite

WARNING_SIGN = "⚠"
BOM = "\ufeff"
# TDMRep fields (https://www.w3.org/community/reports/tdmrep/): a rights-holder's opt-out, kept across re-marking
TDM_KEYS = ("tdm-reservation", "tdm-policy")


def notice_line(label: Label) -> str:
    return f"{WARNING_SIGN} {label.notice_text()}"


def known_notice_texts() -> set[str]:
    return {text for kind in NOTICES.values() for text in kind.values()}


def looks_like_notice(line: str) -> bool:
    """A notice written by kzlabel, whatever its languages: the sign, then known notice texts."""
    line = line.strip().lstrip("> ").strip()
    if not line.startswith(WARNING_SIGN):
        return False
    parts = [p.strip() for p in line[len(WARNING_SIGN) :].split("|")]
    known = known_notice_texts()
    return bool(parts) and any(p in known for p in parts)


_COMPACT_JWS = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def stray_labels(text: str, known: Iterable[str] = ()) -> list[str]:
    """Signed kzlabel labels (compact JWS of type ``kzlabel+json``) anywhere in ``text`` besides the ``known`` ones
    read from the dialect's carrier: a label moved out of its carrier (a renamed key, meta name or field) is still
    the label, and still binds the text it was signed over."""
    seen = set(known)
    found: list[str] = []
    for m in _COMPACT_JWS.finditer(text):
        token = m.group(0)
        if token in seen:
            continue
        try:
            header = json.loads(b64url_decode(token.split(".", 1)[0]))
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(header, dict) and header.get("typ") == JWS_TYPE:
            seen.add(token)
            found.append(token)
    return found


def drop_enclosing(text: str, token: str, opening: str, closing: str) -> str:
    """``text`` without the span holding ``token`` from the last ``opening`` before it to the first ``closing`` after
    it (inclusive), and the one line break before it: the renamed carrier of a stray label, left out of the text its
    digests cover as the carrier itself is."""
    at = text.find(token)
    if at < 0:
        return text
    start = text.rfind(opening, 0, at)
    end = text.find(closing, at + len(token))
    if start < 0 or end < 0:
        return text
    end += len(closing)
    if text[max(start - 2, 0) : start] == "\r\n":
        start -= 2
    elif text[max(start - 1, 0) : start] == "\n":
        start -= 1
    return text[:start] + text[end:]


def _digest(text: str) -> str:
    return hashlib.sha256(text.replace("\r\n", "\n").rstrip("\n").encode("utf-8")).hexdigest()


def _body_digest(body: str) -> str:
    """The body ignoring blank lines and trailing spaces, so deleting the notice by hand still matches it."""
    return _digest("\n".join(line.rstrip() for line in body.splitlines() if line.strip()))


def text_binding(content: str, body: str) -> dict[str, Any]:
    return {"alg": "sha256-lf", "content": _digest(content), "body": _body_digest(body)}


def match_text(label: Label, content: str, body: str | None, notice_present: bool) -> LabelMatch:
    """Compare a label's binding with the text: notice intact, notice removed, or text changed.

    ``body`` is the text without the notice, or None when the notice is present (then only ``content`` can match).
    """
    binding = label.binding or {}
    if binding.get("alg") != "sha256-lf":
        return LabelMatch(None, notice_present, "label carries no text binding")
    if _digest(content) == binding.get("content"):
        return LabelMatch(True, notice_present, "text matches the signed digest")
    if body is not None and _body_digest(body) == binding.get("body"):
        return LabelMatch(True, False, "text unchanged but the notice was removed or altered")
    return LabelMatch(False, notice_present, "the text differs from the signed digest")


def detect_newline(text: str) -> str:
    """The file's own line break (CRLF when most lines use it), so what kzlabel adds matches it."""
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf >= text.count("\n") - crlf else "\n"


def is_texty(header: bytes) -> bool:
    """Whether the first bytes look like UTF-8 text, the precondition every dialect's ``score`` starts from."""
    if b"\x00" in header:
        return False
    try:
        header.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        if exc.start >= len(header) - 3:  # a multi-byte character cut by the header window
            return True
    controls = sum(b < 9 or 13 < b < 32 for b in header)
    return controls <= len(header) // 100


def strip_bom(header: bytes) -> bytes:
    return header[3:] if header.startswith(b"\xef\xbb\xbf") else header


def encode_text(text: str, bom: bool) -> bytes:
    """UTF-8 bytes of ``text``, with the byte-order mark back in front when the original had one."""
    return ((BOM if bom else "") + text).encode("utf-8")


def policy_fields(policy: Any) -> dict[str, str]:
    """The TDMRep fields for a training policy."""
    fields = {"tdm-reservation": policy.tdm_reservation()}
    if policy.policy_url:
        fields["tdm-policy"] = policy.policy_url
    return fields


def tdm_signal(fields: Mapping[str, Any], carrier: str) -> list[TrainingSignal]:
    sig = signal_from_tdmrep(fields.get("tdm-reservation"), fields.get("tdm-policy"), carrier)
    return [sig] if sig else []


@dataclass
class TextDoc:
    """A text being marked: the text without BOM, its line break, where the notice went, dialect-specific state."""

    text: str
    newline: str
    bom: bool
    notice: str = ""
    state: Any = None


class TextHandler(Handler[TextDoc]):
    """Base of the text dialects: UTF-8 decoding under the text limit, and the binding over the signed text.

    A text document is at most ``Limits.max_text_bytes``, so a dialect renders and labels it in memory: ``render``
    gives the encoded document, ``labelled`` a document's bytes with the signed label added; ``encode`` and
    ``write_metadata`` put them in the pipeline's file.
    """

    is_text = True
    # c2pa: a C2PA 2.4 text manifest (layers/c2pa_text.py) in the dialect's form, signed last over everything
    layers = frozenset({"visible", "metadata", "c2pa"})

    def left_out(self, opts: MarkOptions) -> dict[Layer, str]:
        if "c2pa" not in self.layers:  # JSON: its own field is the only carrier
            return {}
        if opts.text_carrier == "kzlabel":
            return {"c2pa": "text carrier is kzlabel (text_carrier 'c2pa' or 'both' adds a C2PA 2.4 text manifest)"}
        if opts.text_carrier == "c2pa":
            return {"metadata": "text carrier is c2pa: the signed label travels in the C2PA manifest"}
        return {}

    def read_text(self, inp: Input, limits: Limits) -> TextDoc:
        if inp.size > limits.max_text_bytes:
            raise LimitExceeded(f"text is over the {limits.max_text_bytes}-byte limit", source=inp.source)
        if b"\x00" in inp.data:
            raise CorruptInput("contains NUL bytes: binary data, not text", source=inp.source, format=self.id)
        try:
            text = inp.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptInput(
                f"not valid UTF-8 (byte {exc.start}: {inp.data[exc.start : exc.start + 1]!r})",
                source=inp.source,
                format=self.id,
            ) from None
        text = c2pa_text.strip(text)  # the C2PA carrier is read by the c2pa layer; the dialect sees the text under it
        bom = text.startswith(BOM)
        return TextDoc(text[1:] if bom else text, detect_newline(text), bom)

    def covered_text(self, text: str) -> str:
        """What the label's digests cover: the text without the dialect's label carrier (all of it by default)."""
        return text

    def render(self, doc: TextDoc) -> bytes:
        return encode_text(doc.text, doc.bom)

    def encode(self, doc: TextDoc, opts: MarkOptions, out: Path) -> None:
        out.write_bytes(self.render(doc))

    def labelled(self, data: bytes, label: Label, token: str) -> bytes:
        raise NotImplementedError(f"{self.name} has no metadata layer")

    def write_metadata(self, out: Path, label: Label, token: str) -> None:
        rewrite(out, lambda data: self.labelled(data, label, token))

    def bind(self, doc: TextDoc, out: Path) -> Mapping[str, Any]:
        content = self.covered_text(doc.text)
        body = content.replace(doc.notice, "", 1) if doc.notice else content
        return {"binding": text_binding(content, body)}
