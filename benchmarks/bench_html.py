"""HTML mark and verify speed (MB/s of CPU time) beside the stdlib html.parser's raw scan of the same page.

Run ``python benchmarks/bench_html.py`` (``--quick`` for one repetition). Pages are generated: a flat 16 MB page
(headings and paragraphs with links, inline tags and entities), an 11 MB page of divs nested about 300,000 deep, and
a normal 100 kB page. The peer is a bare ``HTMLParser`` subclass that does nothing, fed the whole page and closed;
ratios are kzlabel's MB/s over the peer's. Verify is timed on a fresh scan (the scanner's small cache of recent
scans is cleared first), mark from the unmarked page. Targets (issue 21): verify >= 20 MB/s, mark >= 10 MB/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import kzlabel  # noqa: E402
from kzlabel.formats.text import htmlscan  # noqa: E402
from kzlabel.keys import Signer, generate  # noqa: E402

HEAD = '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Generated</title>\n</head>\n<body>\n'
TAIL = "</body>\n</html>\n"


def flat(size: int) -> bytes:
    parts, n, i = [HEAD], len(HEAD), 0
    while n < size:
        p = (f'<h2 id="s{i}">Section {i}</h2>\n<p class="t">Paragraph {i} with <a href="/x/{i}">a link</a>, '
             f"<b>bold</b> &amp; <i>italic</i> text — Қазақша мәтін {i}.</p>\n")
        parts.append(p)
        n += len(p.encode())
        i += 1
    parts.append(TAIL)
    return "".join(parts).encode()


def nested(size: int) -> bytes:
    parts, n, i = [HEAD], len(HEAD), 0
    while n < size:
        o = f'<div class="d{i % 7}"><span>item {i}</span>\n'
        parts.append(o)
        n += len(o) + 7
        i += 1
    parts.extend(["</div>\n"] * i)
    parts.append(TAIL)
    return "".join(parts).encode()


class _Bare(HTMLParser):
    pass


def raw_scan(data: bytes) -> None:
    p = _Bare(convert_charrefs=False)
    p.feed(data.decode("utf-8"))
    p.close()


def timed(fn: Any, reps: int, before: Any = None) -> float:
    runs = []
    for _ in range(reps):
        if before:
            before()
        c0 = time.process_time()
        fn()
        runs.append(time.process_time() - c0)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    reps = 1 if parser.parse_args().quick else 3
    pages = {"flat 16 MB": flat(16 * 2**20), "nested 11 MB": nested(11 * 2**20), "normal 100 kB": flat(100 * 2**10)}
    with tempfile.TemporaryDirectory() as d:
        generate(Path(d) / "keys", organization="Bench")
        lab = kzlabel.Labeler(Signer.load(Path(d) / "keys"), owner="O", system="S")
        lab.mark(pages["normal 100 kB"], name="w.html")  # imports and compiled expressions, outside the timings
        print("| page | stdlib raw scan MB/s | mark MB/s | mark / raw | verify MB/s | verify / raw |")
        print("|---|---|---|---|---|---|")
        for name, data in pages.items():
            mb = len(data) / 2**20
            raw = mb / timed(lambda: raw_scan(data), reps)
            mark = mb / timed(lambda: lab.mark(data, name="x.html"), reps, htmlscan.clear_cache)
            marked = lab.mark(data, name="x.html").data
            report = lab.verify(marked, name="x.html")
            assert report.verdict == kzlabel.Verdict.COMPLIANT, str(report)
            verify = mb / timed(lambda: lab.verify(marked, name="x.html"), reps, htmlscan.clear_cache)
            print(f"| {name} | {raw:.1f} | {mark:.1f} | ×{mark / raw:.1f} | {verify:.1f} | ×{verify / raw:.1f} |")


if __name__ == "__main__":
    main()
