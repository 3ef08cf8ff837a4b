"""The stress report for people: a rich table for the terminal, one self-contained HTML page (previews inline as
``data:`` URIs, no script, no request to anywhere) for those who would rather look than read.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from ..report import Evidence, Status, Verdict
from .runner import StressReport, Version

__all__ = ["cell", "columns", "html_page", "print_table", "summary", "table"]

_GOOD = {Status.TRUSTED, Status.VALID, Status.FOUND}
_WARN = {Status.UNTRUSTED, Status.UNBOUND}
_VERDICT_STYLE = {
    Verdict.COMPLIANT: "green",
    Verdict.MACHINE_READABLE_ONLY: "yellow",
    Verdict.WARNING_ONLY: "yellow",
    Verdict.STRIPPED: "yellow",
    Verdict.TAMPERED: "red",
    Verdict.UNLABELLED: "red",
}
_HEADERS = {"metadata": "label"}  # the metadata layer is where the signed label travels


def _kind(e: Evidence, reference: str | None) -> str:
    """good / warn / bad / none: how a layer's status reads in the report."""
    if e.layer.startswith("watermark") and e.status == Status.FOUND and e.data.get("payload", "") is None:
        return "warn"  # a mark is there, its payload unreadable
    if e.layer == "watermark" and e.status == Status.FOUND and reference:
        return "good" if e.data.get("payload") == reference else "bad"
    if e.status in _GOOD:
        return "good"
    if e.status in _WARN:
        return "warn"
    return "none" if e.status == Status.UNAVAILABLE else "bad"


def cell(e: Evidence | None, reference: str | None = None) -> str:
    """A layer's status in a few characters; a watermark's with its p-value, or the payload it found instead."""
    if e is None:
        return "—"
    p = e.data.get("p_value")
    if e.layer.startswith("watermark") and e.status == Status.FOUND:
        if e.data.get("payload", "") is None:
            return f"unreadable p={p:.0e}" if isinstance(p, float) else "unreadable"
        if e.layer == "watermark" and reference and e.data.get("payload") != reference:
            return f"other payload {e.data.get('payload')}"
        return f"found p={p:.0e}" if isinstance(p, float) else "found"
    return e.status.value


def summary(report: StressReport) -> str:
    """One line: what had to survive, how many transformations it survived, which it did not."""
    what = "watermark" if report.criterion == "watermark" else "signed label"
    applied = report.applied
    skipped = len(report.versions) - len(applied)
    kept = sum(1 for v in applied if v.survived)
    line = f"{what} survived {kept} of {len(applied)} transformations"
    if skipped:
        line += f" ({skipped} not applied to this file)"
    why = report.why_not
    return line + (f"; {why}" if why else "")


def columns(report: StressReport) -> list[str]:
    layers = [e.layer for e in report.original.report.evidence] if report.original.report is not None else []
    for v in report.versions:  # a version may show a layer the original did not list
        for e in v.report.evidence if v.report is not None else []:
            if e.layer not in layers:
                layers.append(e.layer)
    return layers


def table(report: StressReport) -> Any:
    """The report as a rich Table: one row per version, one column per layer."""
    from rich.table import Table
    from rich.text import Text

    styles = {"good": "green", "warn": "yellow", "bad": "red", "none": "dim"}
    layers = columns(report)
    t = Table(
        title=f"{report.source} ({report.format})",
        caption=summary(report),
        title_justify="left",
        caption_justify="left",
    )
    t.add_column("transformation")
    t.add_column("output", max_width=30)
    t.add_column("verdict")
    for layer in layers:
        t.add_column(_HEADERS.get(layer, layer))
    t.add_column(f"{report.criterion} kept")
    for v in [report.original, *report.versions]:
        if v.report is None:
            t.add_row(v.name, Text(f"not applied: {v.skipped}", style="dim"), *[""] * (len(layers) + 2))
            continue
        verdict = v.report.verdict
        cells = []
        for layer in layers:
            e = v.report.layer(layer)
            cells.append(Text(cell(e, report.reference), style=styles[_kind(e, report.reference)] if e else "dim"))
        kept = "—" if v.survived is None else ("yes" if v.survived else "NO")
        kept_style = "dim" if v.survived is None else ("green" if v.survived else "bold red")
        out = f"{v.output.format} {v.output.shape}" if v.output is not None else ""
        t.add_row(v.name, out, Text(verdict.value, style=_VERDICT_STYLE[verdict]), *cells, Text(kept, style=kept_style))
    return t


def print_table(report: StressReport) -> None:
    """The table on stdout: coloured on a terminal; piped, plain and 160 columns wide rather than 80, so every column
    keeps its room."""
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
    console.print(table(report))


# ------------------------------------------------------------------------------------------------------ HTML
_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:1.5em;color:#1a1a1a;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .3em}
.summary{padding:.5em .8em;border-radius:6px;display:inline-block}
.pass{background:#e3f5e1;border:1px solid #57a64a}.fail{background:#fde7e7;border:1px solid #c94040}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:1em;margin-top:1em}
.version{background:#fff;border:1px solid #ddd;border-radius:8px;padding:.8em}
.version h2{font-size:1em;margin:0}.version .title{color:#555;margin:.1em 0 .5em;font-size:.9em}
.version img{max-width:100%;display:block;margin:0 auto .5em;border:1px solid #eee}
.version pre{white-space:pre-wrap;font-size:.75em;max-height:12em;overflow:auto;background:#f4f4f4;padding:.4em}
.layers{list-style:none;padding:0;margin:.4em 0}.layers li{margin:.15em 0;font-size:.9em}
.badge{display:inline-block;min-width:6.5em;padding:0 .4em;border-radius:4px;margin-right:.4em;font-weight:600}
.good{background:#cdeccb}.warn{background:#fbeab5}.none{background:#eee;color:#777}.bad{background:#f6c9c9}
.kept{font-weight:700}.meta{color:#666;font-size:.8em;margin:.3em 0 0}.skipped{color:#777}
"""


def _preview_html(v: Version) -> str:
    p = v.preview
    if p is None:
        return ""
    if p.mime.startswith("image/"):
        uri = f"data:{p.mime};base64,{base64.b64encode(p.data).decode('ascii')}"
        return f'<img src="{uri}" alt="{html.escape(v.name)}">'
    return f"<pre>{html.escape(p.data.decode('utf-8', errors='replace'))}</pre>"


def _version_html(v: Version, report: StressReport) -> str:
    head = f'<h2>{html.escape(v.name)}</h2><p class="title">{html.escape(v.title)}</p>'
    if v.report is None:
        return (
            f'<section class="version skipped" id="v-{html.escape(v.name)}">{head}'
            f"<p>not applied: {html.escape(v.skipped or '')}</p></section>"
        )
    items = []
    for e in v.report.evidence:
        kind = _kind(e, report.reference)
        name = _HEADERS.get(e.layer, e.layer)
        items.append(
            f'<li title="{html.escape(e.detail)}"><span class="badge {kind}">{html.escape(cell(e, report.reference))}'
            f"</span>{html.escape(name)}</li>"
        )
    kept = ""
    if v.survived is not None:
        word = f"{report.criterion} kept" if v.survived else f"{report.criterion} LOST"
        kept = f'<p class="kept {"good" if v.survived else "bad"}">{word}</p>'
    meta = ""
    if v.output is not None:
        size = f"{v.output.bytes / 1024:.0f} KB" if v.output.bytes >= 1024 else f"{v.output.bytes} bytes"
        meta = f'<p class="meta">{html.escape(v.output.format)} · {size} · {html.escape(v.output.shape)}</p>'
    return (
        f'<section class="version" id="v-{html.escape(v.name)}">{head}{_preview_html(v)}'
        f"<p>verdict <b>{html.escape(v.report.verdict.value)}</b></p>"
        f'<ul class="layers">{"".join(items)}</ul>{kept}{meta}</section>'
    )


def html_page(report: StressReport) -> str:
    """The whole report as one HTML page with nothing to fetch."""
    title = f"kzlabel stress: {report.source}"
    ok = "pass" if report.survived else "fail"
    sections = "\n".join(_version_html(v, report) for v in [report.original, *report.versions])
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)} ({html.escape(report.format)})</h1>\n"
        f'<p class="summary {ok}">{html.escape(summary(report))}</p>\n'
        f'<div class="grid">\n{sections}\n</div>\n</body>\n</html>\n'
    )
