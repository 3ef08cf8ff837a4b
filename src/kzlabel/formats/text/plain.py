"""Plain text: a notice line first (or last), and the label in trailer lines at the very end.

Plain text has no metadata slot, so the carrier is the file's last lines, each ``key: value`` with a key kzlabel
owns (``kzlabel: <JWS>``, and the TDMRep ``tdm-reservation``/``tdm-policy``). The end is where a reader minds an
addition least, and the digests exclude the trailer, so an opt-out added to a labelled text later keeps the label.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from ...io import Input, Limits
from ...label import Label, Training, TrainingSignal
from ..base import Findings, LabelMatch, MarkOptions
from .common import (
    TDM_KEYS,
    TextDoc,
    TextHandler,
    detect_newline,
    encode_text,
    is_texty,
    looks_like_notice,
    match_text,
    notice_line,
    policy_fields,
    tdm_signal,
)

TRAILER_PREFIX = "kzlabel: "
_TRAILER_LINE = re.compile(r"(kzlabel|tdm-reservation|tdm-policy): (\S+)[ \t]*")


def _tdm_lines(fields: Mapping[str, str], nl: str) -> str:
    return "".join(f"{k}: {fields[k]}{nl}" for k in TDM_KEYS if k in fields)


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


def _join(content: str, trailer: str, nl: str) -> str:
    sep = "" if not content or content.endswith(("\n", "\r")) else nl
    return content + sep + trailer if trailer else content


class PlainText(TextHandler):
    """A notice line first (or last) and trailer lines ``kzlabel: <JWS>`` (and TDMRep fields) at the very end."""

    id = "text"
    name = "plain text"
    mime = "text/plain"
    extensions = (".txt", ".text", ".log")

    def score(self, header: bytes, name: str | None) -> int:
        if not is_texty(header):
            return 0
        return 45 if name and name.lower().endswith(self.extensions) else 20

    def load(self, inp: Input, limits: Limits) -> TextDoc:
        doc = self.read_text(inp, limits)
        # re-marking replaces the old label, never stacks a second one; NFC: the C2PA manifest's hard binding covers
        # the NFC form (C2PA 2.4 A.8), so the label's digests do too
        text, fields = _split(unicodedata.normalize("NFC", doc.text))
        lines = text.splitlines(keepends=True)
        if lines and looks_like_notice(lines[0]):
            lines = lines[1:]
        if lines and looks_like_notice(lines[-1]):
            lines = lines[:-1]
        doc.text = "".join(lines)
        doc.state = {k: v for k, v in fields.items() if k in TDM_KEYS}  # a rights-holder's opt-out survives
        return doc

    def draw_warning(self, doc: TextDoc, label: Label, opts: MarkOptions) -> None:
        nl, line = doc.newline, notice_line(label)
        doc.notice = line
        if (opts.position or "start") == "end":
            doc.text = _join(doc.text, line + nl, nl)
        else:
            doc.text = line + nl + doc.text

    def render(self, doc: TextDoc) -> bytes:
        return encode_text(_join(doc.text, _tdm_lines(doc.state or {}, doc.newline), doc.newline), doc.bom)

    def labelled(self, data: bytes, label: Label, token: str) -> bytes:
        text = data.decode("utf-8")
        nl = detect_newline(text)
        content, fields = _split(text)
        if label.training == Training.NOT_ALLOWED and "tdm-reservation" not in fields:
            fields["tdm-reservation"] = "1"
        trailer = _tdm_lines(fields, nl) + TRAILER_PREFIX + token + nl
        return _join(content, trailer, nl).encode("utf-8")

    def inspect(self, inp: Input, limits: Limits, key: bytes | None, watermark: bool = True) -> Findings:
        doc = self.read_text(inp, limits)
        content, fields = _split(doc.text)
        lines = content.splitlines()
        notice_seen = bool(lines) and (looks_like_notice(lines[0]) or looks_like_notice(lines[-1]))
        token = fields.get("kzlabel")
        return Findings(tokens=[("text trailer", token)] if token else [], warning_found=notice_seen, state=content)

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        content: str = findings.state
        line = notice_line(label)
        lines = content.splitlines(keepends=True)
        present = bool(lines) and (lines[0].rstrip("\r\n") == line or lines[-1].rstrip("\r\n") == line)
        body = content if not present else content.replace(line, "", 1)
        return match_text(label, content, None if present else body, present)

    def read_training(self, inp: Input, limits: Limits) -> list[TrainingSignal]:
        return tdm_signal(_split(self.read_text(inp, limits).text)[1], "text trailer tdm-reservation")

    def write_training(self, data: bytes, policy: Any, limits: Limits) -> bytes:
        doc = self.read_text(Input(data), limits)
        content, fields = _split(doc.text)
        fields = {k: v for k, v in fields.items() if k not in TDM_KEYS} | policy_fields(policy)
        trailer = _tdm_lines(fields, doc.newline)
        if "kzlabel" in fields:
            trailer += TRAILER_PREFIX + fields["kzlabel"] + doc.newline
        return encode_text(_join(content, trailer, doc.newline), doc.bom)
