"""Output size against input size (issue 20): what labelling adds to a file.

PDF section: the bundled report.pdf and generated PDFs of 1, 17, 36 and 100 pages (each A4 page: 40 lines of text
and a 400x300 JPEG photo-like picture, about 7.5 KB a page, the density of the 36-page, 263 KB file of the issue),
marked with every layer (stamp on every page, XMP/Info, C2PA). Each row: size in and out, growth in KB and as a
ratio, the issue's bound (5 % of the input + 60 KB), the embedded font programs in the output, the mark's wall time,
and verify's verdict on the output (the figures only count when it is compliant).

Run ``python benchmarks/bench_sizes.py`` (``--quick``: the bundled PDF and the 1- and 17-page ones). To compare with
another checkout, point ``PYTHONPATH`` at its ``src``. Other formats' sections are to come (issue 20, items 2-4).
"""

from __future__ import annotations

import argparse
import io
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pypdf
from PIL import Image

import kzlabel
from kzlabel.keys import Signer, generate

ROOT = Path(__file__).resolve().parents[1]

BOUND_RATIO, BOUND_SLACK = 0.05, 60_000


def picture(seed: int) -> bytes:
    """A 400x300 JPEG with smooth shapes and grain, compressing like a photo (~5 KB)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:300, 0:400] / 100.0
    base = np.stack([np.sin(x * (c + 1) + rng.uniform(0, 6)) * np.cos(y * (2 - c * 0.5)) for c in range(3)], axis=-1)
    pixels = np.clip((base + 1) * 110 + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=35)
    return buf.getvalue()


def document(pages: int) -> bytes:
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(595, 842))
    for i in range(pages):
        c.drawImage(ImageReader(io.BytesIO(picture(i))), 97, 470, 400, 300)
        for line in range(20):
            c.drawString(72, 440 - line * 18, f"Page {i + 1}, line {line}: quarterly figures, {i * line} units sold")
        c.showPage()
    c.save()
    return buf.getvalue()


def pdf_rows(lab: kzlabel.Labeler, tmp: Path, quick: bool) -> None:
    sources = {"report.pdf (bundled)": (ROOT / "fixtures/samples/report.pdf").read_bytes()}
    for pages in (1, 17) if quick else (1, 17, 36, 100):
        sources[f"generated, {pages} page(s)"] = document(pages)
    print("| PDF | pages | in KB | out KB | growth KB | out/in | bound KB | within | font programs | mark s | verify |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, src in sources.items():
        dst = tmp / "out.pdf"
        started = time.perf_counter()
        lab.mark(src, dst, name="doc.pdf")
        seconds = time.perf_counter() - started
        out = dst.read_bytes()
        verdict = lab.verify(dst).verdict.value
        pages = len(pypdf.PdfReader(io.BytesIO(src)).pages)
        grown, bound = len(out) - len(src), BOUND_RATIO * len(src) + BOUND_SLACK
        fonts = len(re.findall(rb"/FontFile[23]?\b", out))
        print(
            f"| {name} | {pages} | {len(src) / 1000:.1f} | {len(out) / 1000:.1f} | {grown / 1000:+.1f} "
            f"| {len(out) / len(src):.2f} | {bound / 1000:.1f} | {'yes' if grown <= bound else 'NO'} | {fonts} "
            f"| {seconds:.2f} | {verdict} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the bundled PDF and the 1- and 17-page ones")
    quick = parser.parse_args().quick
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        generate(tmp / "keys", organization="Bench")
        trust = kzlabel.TrustStore.load([tmp / "keys"])
        lab = kzlabel.Labeler(Signer.load(tmp / "keys"), owner="O", system="S", trust=trust)
        print(f"kzlabel from {Path(kzlabel.__file__).parent}", file=sys.stderr)
        pdf_rows(lab, tmp, quick)


if __name__ == "__main__":
    main()
