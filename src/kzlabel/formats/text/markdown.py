"""Markdown: the notice as the first paragraph (a ``> ⚠ …`` quote), the label in YAML front matter.

Front matter is where Markdown tools (static site generators, editors) already keep a document's metadata and do not
render it, so the label goes there as keys kzlabel owns (``kzlabel``, ``ai_generated``, ``digital_source_type``,
``aigc``, and TDMRep's ``tdm-reservation``/``tdm-policy``), merged into any front matter the file has. The digests
exclude those keys, so an opt-out added later keeps the label.
"""

from __future__ import annotations

import re
from typing import Any

from ...errors import CorruptInput
from ...io import Input, Limits
from ...label import Label, Training, TrainingSignal
from ..base import Findings, LabelMatch, MarkOptions
from .common import (
    BOM,
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
    stray_labels,
    strip_bom,
    tdm_signal,
)

_LABEL_KEYS = ("kzlabel", "ai_generated", "digital_source_type", "aigc")
_MD_FEATURES = re.compile(rb"(?m)^(?:#{1,6} |[*-] |\d+\. |```|> )|\]\([^)]+\)|\*\*[^*]+\*\*")


def _key_lines(keys: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"^(?:" + "|".join(map(re.escape, keys)) + r"):[^\n]*\n", re.MULTILINE)


_LABEL_LINES = _key_lines(_LABEL_KEYS)
_CARRIER_LINES = _key_lines(_LABEL_KEYS + TDM_KEYS)
_TDM_FM_LINES = _key_lines(TDM_KEYS)


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


class Markdown(TextHandler):
    """The notice as the first paragraph; the label in YAML front matter, merged with any that exists."""

    id = "markdown"
    name = "Markdown"
    mime = "text/markdown"
    extensions = (".md", ".markdown", ".mdown")

    def score(self, header: bytes, name: str | None) -> int:
        if not is_texty(header):
            return 0
        score = 0
        body = strip_bom(header)
        if re.match(rb"---[ \t]*\r?\n", body) or _MD_FEATURES.search(body):
            score += 30
        if name and name.lower().endswith(self.extensions):
            score += 25
        return score

    def _yaml(self, text: str, source: str) -> dict[str, Any]:
        fm = _front_matter(text)
        if fm is None:
            return {}
        import yaml  # heavy-ish (~20 ms): loaded by the first front matter, not by every kzlabel command

        try:
            data = yaml.safe_load(text[fm[0] : fm[1]])
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0]
            raise CorruptInput(f"front matter is not valid YAML: {first}", source=source, format=self.id) from None
        return data if isinstance(data, dict) else {}

    def covered_text(self, text: str) -> str:
        """The document without any kzlabel-owned front-matter keys."""
        return _drop_keys(text, _CARRIER_LINES)

    def load(self, inp: Input, limits: Limits) -> TextDoc:
        doc = self.read_text(inp, limits)
        self._yaml(doc.text, inp.source)
        doc.text = _drop_keys(doc.text, _LABEL_LINES)  # keeps a rights-holder's TDMRep keys
        at = _body_start(doc.text)
        rest = doc.text[at:]
        first, _, after = rest.partition("\n")
        if looks_like_notice(first):
            rest = after[1:] if after.startswith("\n") else after.removeprefix("\r\n")
            doc.text = doc.text[:at] + rest
        return doc

    def draw_warning(self, doc: TextDoc, label: Label, opts: MarkOptions) -> None:
        nl = doc.newline
        doc.notice = "> " + notice_line(label) + nl + nl
        at = _body_start(doc.text)
        doc.text = doc.text[:at] + doc.notice + doc.text[at:]

    def labelled(self, data: bytes, label: Label, token: str) -> bytes:
        text = data.decode("utf-8")
        bom = text.startswith(BOM)
        text = text[1:] if bom else text
        lines = [
            f"kzlabel: {token}",
            "ai_generated: true",
            f"digital_source_type: {label.source_type}",
            "aigc: '" + label.aigc_json(token) + "'",
        ]
        if label.training == Training.NOT_ALLOWED and "tdm-reservation" not in self._yaml(text, "<md>"):
            lines.append("tdm-reservation: 1")
        return encode_text(_insert_front_matter(text, lines, detect_newline(text)), bom)

    def inspect(self, inp: Input, limits: Limits, key: bytes | None, watermark: bool = True) -> Findings:
        doc = self.read_text(inp, limits)
        data = self._yaml(doc.text, inp.source)
        token = data.get("kzlabel")
        fields: dict[str, Any] = {k: data[k] for k in ("digital_source_type", "aigc") if k in data}
        content = self.covered_text(doc.text)
        tokens = [("front matter", token)] if isinstance(token, str) else []
        fm = _front_matter(content)
        for stray in stray_labels(content[fm[0] : fm[1]] if fm else "", [t for _, t in tokens]):
            # the label under another key: still checked, its line left out of the text as the kzlabel key is
            at = content.find(stray)
            start, end = content.rfind("\n", 0, at) + 1, content.find("\n", at)
            name = content[start:at].split(":", 1)[0].strip()
            tokens.append((f"front matter key {name!r} (not kzlabel's)", stray))
            content = _drop_keys(content, _key_lines((name,))) if name else content[:start] + content[end + 1 :]
        first = content[_body_start(content) :].split("\n", 1)[0]
        return Findings(
            tokens=tokens,
            fields=fields,
            warning_found=looks_like_notice(first),
            state=content,
        )

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        content: str = findings.state
        at = _body_start(content)
        first = content[at:].split("\n", 1)[0].rstrip("\r")
        present = first == "> " + notice_line(label)
        body = content
        if present:
            nl = detect_newline(content)
            body = content[:at] + content[at:].replace(first + nl + nl, "", 1)
        return match_text(label, content, None if present else body, present)

    def read_training(self, inp: Input, limits: Limits) -> list[TrainingSignal]:
        doc = self.read_text(inp, limits)
        return tdm_signal(self._yaml(doc.text, inp.source), "front matter tdm-reservation")

    def write_training(self, data: bytes, policy: Any, limits: Limits) -> bytes:
        doc = self.read_text(Input(data), limits)
        self._yaml(doc.text, "<markdown>")
        text = _drop_keys(doc.text, _TDM_FM_LINES)
        lines = [f"{k}: {v}" for k, v in policy_fields(policy).items()]
        return encode_text(_insert_front_matter(text, lines, doc.newline), doc.bom)
