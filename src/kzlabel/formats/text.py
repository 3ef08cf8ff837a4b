"""Text formats: plain text, Markdown, HTML and JSON, each with a perceptible notice and the signed label.

The label binds the text with two SHA-256 digests (line endings normalised to LF, carrier removed):
``content`` covers the text with the notice in place, ``body`` the text without the notice. So verify can tell
an edit of the text (tampered) from removal of the notice alone (machine-readable only).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import yaml

from ..errors import CorruptInput, UnsupportedFormat
from ..label import NOTICES, Label, Training, TrainingSignal
from ..io import Input, Limits
from ..rights.vocab import signal_from_tdmrep
from . import register
from .base import Findings, Handler, LabelMatch, MarkOptions

WARNING_SIGN = "⚠"
TRAILER_PREFIX = "kzlabel: "
_BOM = "\ufeff"


def notice_line(label: Label) -> str:
    return f"{WARNING_SIGN} {label.notice_text()}"


def _known_notice_texts() -> set[str]:
    return {text for kind in NOTICES.values() for text in kind.values()}


def _looks_like_notice(line: str) -> bool:
    """A notice written by kzlabel, whatever its languages: the sign, then known notice texts."""
    line = line.strip().lstrip("> ").strip()
    if not line.startswith(WARNING_SIGN):
        return False
    parts = [p.strip() for p in line[len(WARNING_SIGN) :].split("|")]
    known = _known_notice_texts()
    return bool(parts) and any(p in known for p in parts)


def _digest(text: str) -> str:
    return hashlib.sha256(text.replace("\r\n", "\n").rstrip("\n").encode("utf-8")).hexdigest()


def _body_digest(body: str) -> str:
    """The body ignoring blank lines and trailing spaces, so deleting the notice by hand still matches it."""
    return _digest("\n".join(line.rstrip() for line in body.splitlines() if line.strip()))


def _binding(content: str, body: str) -> dict[str, Any]:
    return {"alg": "sha256-lf", "content": _digest(content), "body": _body_digest(body)}


def _match(label: Label, content: str, body: str | None, notice_present: bool) -> LabelMatch:
    """Compare a label's binding with the text: notice intact, notice removed, or text changed."""
    binding = label.binding or {}
    if binding.get("alg") != "sha256-lf":
        return LabelMatch(None, notice_present, "label carries no text binding")
    if _digest(content) == binding.get("content"):
        return LabelMatch(True, notice_present, "text matches the signed digest")
    if body is not None and _body_digest(body) == binding.get("body"):
        return LabelMatch(True, False, "text unchanged but the notice was removed or altered")
    return LabelMatch(False, notice_present, "the text differs from the signed digest")


def _newline(text: str) -> str:
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf >= text.count("\n") - crlf else "\n"


def _is_texty(header: bytes) -> bool:
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


def _strip_bom(header: bytes) -> bytes:
    return header[3:] if header.startswith(b"\xef\xbb\xbf") else header


@dataclass
class TextDoc:
    text: str
    newline: str
    bom: bool
    notice: str = ""
    state: Any = None


class _TextHandler(Handler):
    is_text = True
    layers = frozenset({"visible", "metadata"})

    def _decode(self, inp: Input, limits: Limits) -> TextDoc:
        from ..errors import LimitExceeded

        if inp.size > limits.max_text_bytes:
            raise LimitExceeded(f"text is over the {limits.max_text_bytes}-byte limit", source=inp.source)
        if b"\x00" in inp.data:
            raise CorruptInput("contains NUL bytes: binary data, not text", source=inp.source, format=self.id)
        try:
            text = inp.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptInput(
                f"not valid UTF-8 (byte {exc.start}: {inp.data[exc.start:exc.start + 1]!r})",
                source=inp.source,
                format=self.id,
            ) from None
        bom = text.startswith(_BOM)
        return TextDoc(text[1:] if bom else text, _newline(text), bom)

    def _encode_text(self, doc: TextDoc) -> bytes:
        return ((_BOM if doc.bom else "") + doc.text).encode("utf-8")

    def encode(self, doc: TextDoc, opts: MarkOptions) -> bytes:
        return self._encode_text(doc)


# --- plain text ----------------------------------------------------------------------------------------------------
# The trailer: the last lines of the file, each "key: value" with a key kzlabel owns. Digests exclude it, so an
# opt-out added to a labelled text later does not break the label.
_TRAILER_LINE = re.compile(r"(kzlabel|tdm-reservation|tdm-policy): (\S+)[ \t]*")
_TDM_KEYS = ("tdm-reservation", "tdm-policy")


def _tdm_lines(fields: Mapping[str, str], nl: str) -> str:
    return "".join(f"{k}: {fields[k]}{nl}" for k in _TDM_KEYS if k in fields)


def _policy_fields(policy: Any) -> dict[str, str]:
    fields = {"tdm-reservation": policy.tdm_reservation()}
    if policy.policy_url:
        fields["tdm-policy"] = policy.policy_url
    return fields


def _tdm_signal(fields: Mapping[str, Any], carrier: str) -> list[TrainingSignal]:
    sig = signal_from_tdmrep(fields.get("tdm-reservation"), fields.get("tdm-policy"), carrier)
    return [sig] if sig else []


class PlainText(_TextHandler):
    """A notice line first (or last) and trailer lines ``kzlabel: <JWS>`` (and TDMRep fields) at the very end."""

    id = "text"
    name = "plain text"
    mime = "text/plain"
    extensions = (".txt", ".text", ".log")

    def score(self, header: bytes, name: str | None) -> int:
        if not _is_texty(header):
            return 0
        return 45 if name and name.lower().endswith(self.extensions) else 20

    @staticmethod
    def _split(text: str) -> tuple[str, dict[str, str]]:
        """(text without the trailer, trailer fields); the last occurrence of a key wins."""
        lines = text.splitlines(keepends=True)
        fields: dict[str, str] = {}
        i = len(lines)
        while i > 0:
            m = _TRAILER_LINE.fullmatch(lines[i - 1].rstrip("\r\n"))
            if not m:
                break
            fields.setdefault(m.group(1), m.group(2))
            i -= 1
        return "".join(lines[:i]), fields

    @staticmethod
    def _join(content: str, trailer: str, nl: str) -> str:
        sep = "" if not content or content.endswith(("\n", "\r")) else nl
        return content + sep + trailer if trailer else content

    def load(self, inp: Input, limits: Limits) -> TextDoc:
        doc = self._decode(inp, limits)
        text, fields = self._split(doc.text)  # re-marking replaces the old label, never stacks a second one
        lines = text.splitlines(keepends=True)
        if lines and _looks_like_notice(lines[0]):
            lines = lines[1:]
        if lines and _looks_like_notice(lines[-1]):
            lines = lines[:-1]
        doc.text = "".join(lines)
        doc.state = {k: v for k, v in fields.items() if k in _TDM_KEYS}  # a rights-holder's opt-out survives
        return doc

    def draw_warning(self, doc: TextDoc, label: Label, opts: MarkOptions) -> None:
        nl, line = doc.newline, notice_line(label)
        doc.notice = line
        if (opts.position or "start") == "end":
            doc.text = self._join(doc.text, line + nl, nl)
        else:
            doc.text = line + nl + doc.text

    def encode(self, doc: TextDoc, opts: MarkOptions) -> bytes:
        text = self._join(doc.text, _tdm_lines(doc.state or {}, doc.newline), doc.newline)
        return ((_BOM if doc.bom else "") + text).encode("utf-8")

    def bind(self, doc: TextDoc, encoded: bytes) -> Mapping[str, Any]:
        body = doc.text.replace(doc.notice, "", 1) if doc.notice else doc.text
        return {"binding": _binding(doc.text, body)}

    def write_metadata(self, data: bytes, label: Label, token: str) -> bytes:
        text = data.decode("utf-8")
        nl = _newline(text)
        content, fields = self._split(text)
        if label.training == Training.NOT_ALLOWED and "tdm-reservation" not in fields:
            fields["tdm-reservation"] = "1"
        trailer = _tdm_lines(fields, nl) + TRAILER_PREFIX + token + nl
        return self._join(content, trailer, nl).encode("utf-8")

    def inspect(self, inp: Input, limits: Limits, key: bytes | None) -> Findings:
        doc = self._decode(inp, limits)
        content, fields = self._split(doc.text)
        lines = content.splitlines()
        notice_seen = bool(lines) and (_looks_like_notice(lines[0]) or _looks_like_notice(lines[-1]))
        token = fields.get("kzlabel")
        return Findings(tokens=[("text trailer", token)] if token else [], warning_found=notice_seen, state=content)

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        content: str = findings.state
        line = notice_line(label)
        lines = content.splitlines(keepends=True)
        present = bool(lines) and (lines[0].rstrip("\r\n") == line or lines[-1].rstrip("\r\n") == line)
        body = content if not present else content.replace(line, "", 1)
        return _match(label, content, None if present else body, present)

    def read_training(self, inp: Input, limits: Limits) -> list[TrainingSignal]:
        return _tdm_signal(self._split(self._decode(inp, limits).text)[1], "text trailer tdm-reservation")

    def write_training(self, data: bytes, policy: Any, limits: Limits) -> bytes:
        doc = self._decode(Input(data), limits)
        content, fields = self._split(doc.text)
        fields = {k: v for k, v in fields.items() if k not in _TDM_KEYS} | _policy_fields(policy)
        trailer = _tdm_lines(fields, doc.newline)
        if "kzlabel" in fields:
            trailer += TRAILER_PREFIX + fields["kzlabel"] + doc.newline
        return ((_BOM if doc.bom else "") + self._join(content, trailer, doc.newline)).encode("utf-8")


# --- Markdown ------------------------------------------------------------------------------------------------------
_LABEL_KEYS = ("kzlabel", "ai_generated", "digital_source_type", "aigc")
_MD_FEATURES = re.compile(rb"(?m)^(?:#{1,6} |[*-] |\d+\. |```|> )|\]\([^)]+\)|\*\*[^*]+\*\*")


def _key_lines(keys: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"^(?:" + "|".join(map(re.escape, keys)) + r"):[^\n]*\n", re.MULTILINE)


_LABEL_LINES = _key_lines(_LABEL_KEYS)
_CARRIER_LINES = _key_lines(_LABEL_KEYS + _TDM_KEYS)
_TDM_FM_LINES = _key_lines(_TDM_KEYS)


def _front_matter(text: str) -> tuple[int, int] | None:
    """(start, end) of the YAML between the ``---`` fences, or None."""
    m = re.match(r"---[ \t]*\r?\n", text)
    if not m:
        return None
    close = re.compile(r"^(?:---|\.\.\.)[ \t]*\r?$", re.MULTILINE).search(text, m.end())
    if close is None:
        return None
    return m.end(), close.start()


def _after_fence(text: str, close: int) -> int:
    newline = text.find("\n", close)
    return len(text) if newline < 0 else newline + 1


def _body_start(text: str) -> int:
    fm = _front_matter(text)
    return 0 if fm is None else _after_fence(text, fm[1])


def _drop_keys(text: str, lines: re.Pattern[str]) -> str:
    """Remove kzlabel-owned key lines from the front matter; one left empty goes entirely, fences too."""
    fm = _front_matter(text)
    if fm is None:
        return text
    start, end = fm
    block = text[start:end]
    cleaned = lines.sub("", block.replace("\r\n", "\n"))
    if "\r\n" in block:
        cleaned = cleaned.replace("\n", "\r\n")
    if not cleaned.strip():
        return text[_after_fence(text, end) :]
    return text[:start] + cleaned + text[end:]


def _insert_front_matter(text: str, lines: list[str], nl: str) -> str:
    ours = "".join(line + nl for line in lines)
    fm = _front_matter(text)
    if fm is None:
        return "---" + nl + ours + "---" + nl + text
    return text[: fm[1]] + ours + text[fm[1] :]


class Markdown(_TextHandler):
    """The notice as the first paragraph; the label in YAML front matter, merged with any that exists."""

    id = "markdown"
    name = "Markdown"
    mime = "text/markdown"
    extensions = (".md", ".markdown", ".mdown")

    def score(self, header: bytes, name: str | None) -> int:
        if not _is_texty(header):
            return 0
        score = 0
        body = _strip_bom(header)
        if re.match(rb"---[ \t]*\r?\n", body) or _MD_FEATURES.search(body):
            score += 30
        if name and name.lower().endswith(self.extensions):
            score += 25
        return score

    def _yaml(self, text: str, source: str) -> dict[str, Any]:
        fm = _front_matter(text)
        if fm is None:
            return {}
        try:
            data = yaml.safe_load(text[fm[0] : fm[1]])
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0]
            raise CorruptInput(f"front matter is not valid YAML: {first}", source=source, format=self.id) from None
        return data if isinstance(data, dict) else {}

    def _content(self, text: str) -> str:
        """What the label's digests cover: the document without any kzlabel-owned front-matter keys."""
        return _drop_keys(text, _CARRIER_LINES)

    def load(self, inp: Input, limits: Limits) -> TextDoc:
        doc = self._decode(inp, limits)
        self._yaml(doc.text, inp.source)
        doc.text = _drop_keys(doc.text, _LABEL_LINES)  # keeps a rights-holder's TDMRep keys
        at = _body_start(doc.text)
        rest = doc.text[at:]
        first, _, after = rest.partition("\n")
        if _looks_like_notice(first):
            rest = after[1:] if after.startswith("\n") else after.removeprefix("\r\n")
            doc.text = doc.text[:at] + rest
        return doc

    def draw_warning(self, doc: TextDoc, label: Label, opts: MarkOptions) -> None:
        nl = doc.newline
        doc.notice = "> " + notice_line(label) + nl + nl
        at = _body_start(doc.text)
        doc.text = doc.text[:at] + doc.notice + doc.text[at:]

    def bind(self, doc: TextDoc, encoded: bytes) -> Mapping[str, Any]:
        content = self._content(doc.text)
        body = content.replace(doc.notice, "", 1) if doc.notice else content
        return {"binding": _binding(content, body)}

    def write_metadata(self, data: bytes, label: Label, token: str) -> bytes:
        text = data.decode("utf-8")
        bom = text.startswith(_BOM)
        text = text[1:] if bom else text
        lines = [
            f"kzlabel: {token}",
            "ai_generated: true",
            f"digital_source_type: {label.source_type}",
            "aigc: '" + label.aigc_json(token) + "'",
        ]
        if label.training == Training.NOT_ALLOWED and "tdm-reservation" not in self._yaml(text, "<md>"):
            lines.append("tdm-reservation: 1")
        return ((_BOM if bom else "") + _insert_front_matter(text, lines, _newline(text))).encode("utf-8")

    def inspect(self, inp: Input, limits: Limits, key: bytes | None) -> Findings:
        doc = self._decode(inp, limits)
        data = self._yaml(doc.text, inp.source)
        token = data.get("kzlabel")
        fields = {k: data[k] for k in ("digital_source_type", "aigc") if k in data}
        content = self._content(doc.text)
        first = content[_body_start(content) :].split("\n", 1)[0]
        return Findings(
            tokens=[("front matter", token)] if isinstance(token, str) else [],
            fields=fields,
            warning_found=_looks_like_notice(first),
            state=content,
        )

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        content: str = findings.state
        at = _body_start(content)
        first = content[at:].split("\n", 1)[0].rstrip("\r")
        present = first == "> " + notice_line(label)
        body = content
        if present:
            nl = _newline(content)
            body = content[:at] + content[at:].replace(first + nl + nl, "", 1)
        return _match(label, content, None if present else body, present)

    def read_training(self, inp: Input, limits: Limits) -> list[TrainingSignal]:
        doc = self._decode(inp, limits)
        return _tdm_signal(self._yaml(doc.text, inp.source), "front matter tdm-reservation")

    def write_training(self, data: bytes, policy: Any, limits: Limits) -> bytes:
        doc = self._decode(Input(data), limits)
        self._yaml(doc.text, "<markdown>")
        text = _drop_keys(doc.text, _TDM_FM_LINES)
        lines = [f"{k}: {v}" for k, v in _policy_fields(policy).items()]
        return ((_BOM if doc.bom else "") + _insert_front_matter(text, lines, doc.newline)).encode("utf-8")


# --- HTML ----------------------------------------------------------------------------------------------------------
_META_NAMES = ("ai-generated", "kzlabel", "digital-source-type", "aigc", "tdm-reservation", "tdm-policy")
_TDM_META = ("tdm-reservation", "tdm-policy")


class _Scanner(HTMLParser):
    """Finds where kzlabel's pieces go and which are there, by character offsets, with the stdlib's HTML parser."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=False)
        self.text = text
        self._line_starts = [0]
        for m in re.finditer("\n", text):
            self._line_starts.append(m.end())
        self.head_open: int | None = None  # offset just after <head ...>
        self.head_close: int | None = None  # offset of </head>
        self.body_open: int | None = None  # offset just after <body ...>
        self.html_open: int | None = None
        self.html_closed = False
        # (start, end, attrs, written by kzlabel?) of every <meta> whose name kzlabel reads
        self.metas: list[tuple[int, int, dict[str, str], bool]] = []
        self.banner: tuple[int, int] | None = None
        self._banner_start: int | None = None
        self._div_depth = 0

    def _offset(self) -> int:
        line, col = self.getpos()
        return self._line_starts[line - 1] + col

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        start = self._offset()
        raw = self.get_starttag_text() or ""
        end = start + len(raw)
        a = {k: (v or "") for k, v in attrs}
        if tag == "html" and self.html_open is None:
            self.html_open = end
        elif tag == "head" and self.head_open is None:
            self.head_open = end
        elif tag == "body" and self.body_open is None:
            self.body_open = end
        elif tag == "meta":
            a["name"] = a.get("name", "").lower()
            if a["name"] in _META_NAMES:
                self.metas.append((start, end, a, "data-kzlabel" in a))
        elif tag == "div":
            if self._banner_start is not None:
                self._div_depth += 1
            elif a.get("data-kzlabel") == "warning" and self.banner is None:
                self._banner_start, self._div_depth = start, 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "div" and self._banner_start is not None:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "head" and self.head_close is None:
            self.head_close = self._offset()
        elif tag == "html":
            self.html_closed = True
        elif tag == "div" and self._banner_start is not None:
            self._div_depth -= 1
            if self._div_depth == 0:
                end = self.text.index(">", self._offset()) + 1
                self.banner = (self._banner_start, end)
                self._banner_start = None


def _scan(text: str, source: str) -> _Scanner:
    s = _Scanner(text)
    s.feed(text)
    if re.match(r"\s*<[A-Za-z!/?]", s.rawdata):  # the parser holds back an unfinished tag or comment
        raise CorruptInput("HTML is truncated: it ends inside a tag or comment", source=source, format="html")
    if s.html_open is not None and not s.html_closed:
        raise CorruptInput("HTML is truncated: <html> is never closed", source=source, format="html")
    s.close()
    return s


def _remove_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """Remove [start, end) spans, each with the one line break kzlabel put before it."""
    out, pos = [], 0
    for start, end in sorted(spans):
        cut = start
        if text[cut - 2 : cut] == "\r\n":
            cut -= 2
        elif text[cut - 1 : cut] == "\n":
            cut -= 1
        out.append(text[pos:cut])
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _banner_html(label: Label) -> str:
    spans = " | ".join(f'<span lang="{html.escape(lang)}">{html.escape(text)}</span>' for lang, text in label.notices)
    style = (
        "display:block;margin:0;padding:.6em 1em;background:#fff3cd;color:#1a1a1a;border:2px solid #b58100;"
        "font:600 1rem/1.4 system-ui,sans-serif;text-align:center"
    )
    return f'<div data-kzlabel="warning" role="note" style="{style}">{WARNING_SIGN} {spans}</div>'


def _banner_text(banner: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", banner))


class Html(_TextHandler):
    """A visible banner right after <body>, and <meta> tags with the signed label and IPTC/AIGC/TDMRep fields."""

    id = "html"
    name = "HTML"
    mime = "text/html"
    extensions = (".html", ".htm", ".xhtml")

    def score(self, header: bytes, name: str | None) -> int:
        if not _is_texty(header):
            return 0
        head = _strip_bom(header).lstrip()[:1024].lower()
        while head.startswith(b"<!--") and b"-->" in head:
            head = head[head.index(b"-->") + 3 :].lstrip()
        if head.startswith((b"<!doctype html", b"<html")):
            return 80
        if re.search(rb"<(?:head|body)[\s>]", head):
            return 60
        return 0

    def load(self, inp: Input, limits: Limits) -> TextDoc:
        doc = self._decode(inp, limits)
        s = _scan(doc.text, inp.source)
        # re-marking replaces kzlabel's own elements; a rights-holder's TDMRep tags stay
        spans = [(a, b) for a, b, m, ours in s.metas if ours and m["name"] not in _TDM_META]
        spans += [s.banner] if s.banner else []
        if spans:
            doc.text = _remove_spans(doc.text, spans)
        return doc

    def draw_warning(self, doc: TextDoc, label: Label, opts: MarkOptions) -> None:
        s = _scan(doc.text, "<html>")
        banner = _banner_html(label)
        doc.notice = doc.newline + banner
        at = s.body_open if s.body_open is not None else (s.head_close if s.head_close is not None else s.html_open)
        if at is None:
            at = 0
            doc.notice = banner + doc.newline
        elif s.body_open is None and s.head_close is not None:
            at = doc.text.index(">", at) + 1
        doc.text = doc.text[:at] + doc.notice + doc.text[at:]

    def bind(self, doc: TextDoc, encoded: bytes) -> Mapping[str, Any]:
        content = self._content(doc.text)
        body = content.replace(doc.notice, "", 1) if doc.notice else content
        return {"binding": _binding(content, body)}

    @staticmethod
    def _content(text: str) -> str:
        """What the label's digests cover: the document without kzlabel's <meta> tags."""
        s = _scan(text, "<html>")
        return _remove_spans(text, [(a, b) for a, b, _, ours in s.metas if ours])

    @staticmethod
    def _insert_metas(text: str, metas: Mapping[str, str]) -> str:
        """kzlabel's <meta> tags, each on its own line, at the end of <head> (or wherever a head would be)."""
        bom = text.startswith(_BOM)
        text = text[1:] if bom else text
        nl = _newline(text)
        s = _scan(text, "<html>")
        block = "".join(
            f'{nl}<meta name="{k}" content="{html.escape(v, quote=True)}" data-kzlabel>' for k, v in metas.items()
        )
        at = next((p for p in (s.head_close, s.head_open, s.html_open) if p is not None), None)
        if at is None:
            at, block = 0, block[len(nl) :] + nl
        return (_BOM if bom else "") + text[:at] + block + text[at:]

    def write_metadata(self, data: bytes, label: Label, token: str) -> bytes:
        text = data.decode("utf-8")
        metas = {
            "ai-generated": "true",
            "kzlabel": token,
            "digital-source-type": label.source_type,
            "aigc": label.aigc_json(token),
        }
        present = {m["name"] for _, _, m, _ in _scan(text, "<html>").metas}
        if label.training == Training.NOT_ALLOWED and "tdm-reservation" not in present:
            metas["tdm-reservation"] = "1"
        return self._insert_metas(text, metas).encode("utf-8")

    def inspect(self, inp: Input, limits: Limits, key: bytes | None) -> Findings:
        doc = self._decode(inp, limits)
        s = _scan(doc.text, inp.source)
        tokens, fields = [], {}
        for _, _, m, ours in s.metas:
            if m["name"] == "kzlabel":
                if ours:
                    tokens.append(("html meta", m.get("content", "")))
            else:
                fields[m["name"]] = m.get("content", "")
        content = _remove_spans(doc.text, [(a, b) for a, b, _, ours in s.metas if ours])
        banner = doc.text[s.banner[0] : s.banner[1]] if s.banner else ""
        seen = bool(banner) and any(t in _banner_text(banner) for t in _known_notice_texts())
        return Findings(tokens=tokens, fields=fields, warning_found=seen, state=content)

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        content: str = findings.state
        banner = _banner_html(label)
        present = banner in content
        body = content
        if present:
            i = content.index(banner)
            body = _remove_spans(content, [(i, i + len(banner))])
        return _match(label, content, None if present else body, present)

    def read_training(self, inp: Input, limits: Limits) -> list[TrainingSignal]:
        s = _scan(self._decode(inp, limits).text, inp.source)
        fields = {m["name"]: m.get("content", "") for _, _, m, _ in s.metas if m["name"] in _TDM_META}
        return _tdm_signal(fields, "HTML meta tdm-reservation")

    def write_training(self, data: bytes, policy: Any, limits: Limits) -> bytes:
        doc = self._decode(Input(data), limits)
        s = _scan(doc.text, "<html>")
        text = _remove_spans(doc.text, [(a, b) for a, b, m, _ in s.metas if m["name"] in _TDM_META])
        return self._insert_metas(((_BOM if doc.bom else "") + text), _policy_fields(policy)).encode("utf-8")


# --- JSON ----------------------------------------------------------------------------------------------------------
JSON_FIELD = "ai_label"
JSON_LINES_REASON = (
    "JSON Lines (one JSON value per line): a label would have to add a record or change every record, which breaks "
    "what readers of the file get, so it is not labelled"
)
_JSON_LINES_PROBE = 8  # lines parsed to tell JSON Lines from a broken JSON document


def _json_value(raw: bytes | str) -> Any:
    """The JSON value of ``raw``, or None when it is not exactly one JSON value."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def _is_json_lines(text: str) -> bool:
    """Two or more non-blank lines, the first few each one complete JSON object or array (the JSON Lines shape)."""
    lines = [line for line in text.splitlines() if line.strip()]
    probe = lines[:_JSON_LINES_PROBE]
    return len(lines) > 1 and all(isinstance(_json_value(line), (dict, list)) for line in probe)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Json(_TextHandler):
    """A top-level ``ai_label`` field holding the notice and the signed label; the rest stays byte-identical."""

    id = "json"
    name = "JSON"
    mime = "application/json"
    extensions = (".json",)

    def score(self, header: bytes, name: str | None) -> int:
        """An object, or an array (one-line, pretty-printed, or JSON Lines of arrays): claimed here so that ``load``
        refuses what cannot carry the field, instead of plain text adding a notice line that breaks the JSON."""
        if not _is_texty(header):
            return 0
        body = _strip_bom(header).lstrip()
        if body.startswith(b"{"):
            return 70
        first = body.split(b"\n", 1)[0].strip()
        return 70 if first == b"[" or isinstance(_json_value(first), list) else 0

    def _parse(self, text: str, source: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data" and _is_json_lines(text):
                raise UnsupportedFormat(JSON_LINES_REASON, source=source, format=self.id) from None
            raise CorruptInput(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", source=source, format=self.id) from None
        except RecursionError:
            raise CorruptInput("JSON nested too deeply", source=source, format=self.id) from None
        if not isinstance(value, dict):
            raise UnsupportedFormat("JSON whose top level is not an object cannot carry a label field", source=source, format=self.id)
        return value

    def load(self, inp: Input, limits: Limits) -> TextDoc:
        doc = self._decode(inp, limits)
        obj = self._parse(doc.text, inp.source)
        if JSON_FIELD in obj:  # re-marking: drop the old field, re-serialise (formatting of a labelled file is ours)
            del obj[JSON_FIELD]
            doc.text = json.dumps(obj, ensure_ascii=False, indent=2) + doc.newline
        doc.state = {"obj": obj}
        return doc

    def draw_warning(self, doc: TextDoc, label: Label, opts: MarkOptions) -> None:
        doc.state["notice"] = {lang: text for lang, text in label.notices}

    def bind(self, doc: TextDoc, encoded: bytes) -> Mapping[str, Any]:
        obj = doc.state["obj"]
        notice = doc.state.get("notice")
        content = dict(obj, **{JSON_FIELD: {"notice": notice}}) if notice else obj
        return {"binding": {"alg": "sha256-json", "content": _sha(_canonical(content)), "body": _sha(_canonical(obj))}}

    def write_metadata(self, data: bytes, label: Label, token: str) -> bytes:
        text = data.decode("utf-8")
        bom = text.startswith(_BOM)
        text = text[1:] if bom else text
        field: dict[str, Any] = {}
        if self._has_notice_binding(label):
            field["notice"] = {lang: t for lang, t in label.notices}
        field.update(
            {
                "ai_generated": True,
                "digital_source_type": label.source_type,
                "AIGC": label.aigc(token),
                "kzlabel": token,
            }
        )
        brace = text.index("{")
        after = text[brace + 1 :]
        indent = re.match(r"(\r?\n)([ \t]*)", after)
        empty = after.lstrip().startswith("}")
        encoded = json.dumps(field, ensure_ascii=False, separators=(",", ":"))
        if indent and not empty:  # pretty-printed: our field on a line of its own, same indentation
            piece = f'{indent.group(1)}{indent.group(2)}"{JSON_FIELD}": {encoded},'
        else:
            piece = f'"{JSON_FIELD}":{encoded}' + ("" if empty else ",")
        text = text[: brace + 1] + piece + after
        return ((_BOM if bom else "") + text).encode("utf-8")

    @staticmethod
    def _has_notice_binding(label: Label) -> bool:
        b = label.binding or {}
        return b.get("content") != b.get("body")

    def inspect(self, inp: Input, limits: Limits, key: bytes | None) -> Findings:
        doc = self._decode(inp, limits)
        obj = self._parse(doc.text, inp.source)
        field = obj.get(JSON_FIELD)
        tokens, fields, notice = [], {}, None
        if isinstance(field, dict):
            if isinstance(field.get("kzlabel"), str):
                tokens.append((f"JSON field {JSON_FIELD}", field["kzlabel"]))
            for k in ("digital_source_type", "AIGC"):
                if k in field:
                    fields[k] = field[k]
            notice = field.get("notice")
        body = {k: v for k, v in obj.items() if k != JSON_FIELD}
        seen = isinstance(notice, dict) and any(t in _known_notice_texts() for t in notice.values() if isinstance(t, str))
        return Findings(tokens=tokens, fields=fields, warning_found=seen, state=(body, notice))

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        body, notice = findings.state
        binding = label.binding or {}
        if binding.get("alg") != "sha256-json":
            return LabelMatch(None, findings.warning_found, "label carries no JSON binding")
        expected = {lang: text for lang, text in label.notices}
        present = notice == expected
        content = dict(body, **{JSON_FIELD: {"notice": notice}}) if notice is not None else body
        if _sha(_canonical(content)) == binding.get("content"):
            return LabelMatch(True, present, "JSON matches the signed digest")
        if not present and _sha(_canonical(body)) == binding.get("body"):
            return LabelMatch(True, False, "JSON unchanged but the notice was removed or altered")
        return LabelMatch(False, present, "the JSON differs from the signed digest")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


for _handler in (Html(), Json(), Markdown(), PlainText()):
    register(_handler)
