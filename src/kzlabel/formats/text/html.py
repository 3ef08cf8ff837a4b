"""HTML: a visible banner right after ``<body>``, and the label in ``<meta>`` tags at the end of ``<head>``.

``<meta name=… content=…>`` is HTML's own slot for machine-readable page data that browsers do not show; kzlabel's
tags (``kzlabel``, ``ai-generated``, ``digital-source-type``, ``aigc``, TDMRep's ``tdm-reservation``/``tdm-policy``)
carry a ``data-kzlabel`` attribute so re-marking replaces only its own, never a rights-holder's. The banner is a
``<div data-kzlabel="warning">`` so it renders in any browser without CSS or script from elsewhere. Offsets come
from ``htmlscan`` (the stdlib HTMLParser's tokenisation in linear time), so every edit is a splice into the original
text, which otherwise stays byte-identical.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from ...io import Input, Limits
from ...label import Label, Training, TrainingSignal
from ..base import Findings, LabelMatch, MarkOptions
from .common import (
    BOM,
    TDM_KEYS,
    WARNING_SIGN,
    TextDoc,
    TextHandler,
    detect_newline,
    drop_enclosing,
    is_texty,
    known_notice_texts,
    match_text,
    policy_fields,
    stray_labels,
    strip_bom,
    tdm_signal,
)
from .htmlscan import HtmlScan, meta_content, scan_html

_META_NAMES = ("ai-generated", "kzlabel", "digital-source-type", "aigc", *TDM_KEYS)


def _scan(text: str, source: str) -> HtmlScan:
    return scan_html(text, source, _META_NAMES)


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


def _insert_metas(text: str, metas: Mapping[str, str], s: HtmlScan | None = None) -> str:
    """kzlabel's <meta> tags, each on its own line, at the end of <head> (or wherever a head would be); ``s`` is
    the scan of ``text`` without its BOM when the caller has one."""
    bom = text.startswith(BOM)
    text = text[1:] if bom else text
    nl = detect_newline(text)
    s = s or _scan(text, "<html>")
    block = "".join(
        f'{nl}<meta name="{k}" content="{html.escape(v, quote=True)}" data-kzlabel>' for k, v in metas.items()
    )
    at = next((p for p in (s.head_close, s.head_open, s.html_open) if p is not None), None)
    if at is None:
        at, block = 0, block[len(nl) :] + nl
    return (BOM if bom else "") + text[:at] + block + text[at:]


class Html(TextHandler):
    """A visible banner right after <body>, and <meta> tags with the signed label and IPTC/AIGC/TDMRep fields."""

    id = "html"
    name = "HTML"
    mime = "text/html"
    extensions = (".html", ".htm", ".xhtml")

    def score(self, header: bytes, name: str | None) -> int:
        if not is_texty(header):
            return 0
        head = strip_bom(header).lstrip()[:1024].lower()
        while head.startswith(b"<!--") and b"-->" in head:
            head = head[head.index(b"-->") + 3 :].lstrip()
        if head.startswith((b"<!doctype html", b"<html")):
            return 80
        if re.search(rb"<(?:head|body)[\s>]", head):
            return 60
        return 0

    def load(self, inp: Input, limits: Limits) -> TextDoc:
        doc = self.read_text(inp, limits)
        s = _scan(doc.text, inp.source)
        # re-marking replaces kzlabel's own elements; a rights-holder's TDMRep tags stay
        spans = [(a, b) for a, b, m, ours in s.metas if ours and m["name"] not in TDM_KEYS]
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

    def covered_text(self, text: str) -> str:
        """The document without kzlabel's <meta> tags."""
        s = _scan(text, "<html>")
        return _remove_spans(text, [(a, b) for a, b, _, ours in s.metas if ours])

    def labelled(self, data: bytes, label: Label, token: str) -> bytes:
        text = data.decode("utf-8")
        metas = {
            "ai-generated": "true",
            "kzlabel": token,
            "digital-source-type": label.source_type,
            "aigc": label.aigc_json(token),
        }
        s = _scan(text[1:] if text.startswith(BOM) else text, "<html>")
        present = {m["name"] for _, _, m, _ in s.metas}
        if label.training == Training.NOT_ALLOWED and "tdm-reservation" not in present:
            metas["tdm-reservation"] = "1"
        return _insert_metas(text, metas, s).encode("utf-8")

    def inspect(self, inp: Input, limits: Limits, key: bytes | None, watermark: bool = True) -> Findings:
        doc = self.read_text(inp, limits)
        s = _scan(doc.text, inp.source)
        tokens, fields = [], {}
        for _, _, m, ours in s.metas:
            if m["name"] == "kzlabel":
                if ours:
                    tokens.append(("html meta", m.get("content", "")))
            else:
                fields[m["name"]] = m.get("content", "")
        content = _remove_spans(doc.text, [(a, b) for a, b, _, ours in s.metas if ours])
        for stray in stray_labels(content, [t for _, t in tokens]):
            # the label in a <meta> under another name: still checked, that element left out of the text as
            # kzlabel's own are; a token in the page's text is quoted content, not a label
            kept = drop_enclosing(content, stray, "<", ">")
            at = content.find(stray)
            if meta_content(content, content.rfind("<", 0, at)) == stray:
                tokens.append(("html meta (not kzlabel's name)", stray))
                content = kept
        banner = doc.text[s.banner[0] : s.banner[1]] if s.banner else ""
        seen = bool(banner) and any(t in _banner_text(banner) for t in known_notice_texts())
        return Findings(tokens=tokens, fields=fields, warning_found=seen, state=content)

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        content: str = findings.state
        banner = _banner_html(label)
        present = banner in content
        body = content
        if present:
            i = content.index(banner)
            body = _remove_spans(content, [(i, i + len(banner))])
        return match_text(label, content, None if present else body, present)

    def read_training(self, inp: Input, limits: Limits) -> list[TrainingSignal]:
        s = _scan(self.read_text(inp, limits).text, inp.source)
        fields = {m["name"]: m.get("content", "") for _, _, m, _ in s.metas if m["name"] in TDM_KEYS}
        return tdm_signal(fields, "HTML meta tdm-reservation")

    def write_training(self, data: bytes, policy: Any, limits: Limits) -> bytes:
        doc = self.read_text(Input(data), limits)
        s = _scan(doc.text, "<html>")
        text = _remove_spans(doc.text, [(a, b) for a, b, m, _ in s.metas if m["name"] in TDM_KEYS])
        return _insert_metas((BOM if doc.bom else "") + text, policy_fields(policy)).encode("utf-8")
