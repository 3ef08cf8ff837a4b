"""PDF output size (issue 20): one font program and one stamp form for the whole file, whatever the page count,
pages placed as before, and the binding, the text and the encryption as they were."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pypdf
import pytest
from pypdf.generic import NameObject, RectangleObject
from reportlab.pdfgen import canvas

from kzlabel import Labeler, Verdict
from kzlabel.label import NOTICES

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "samples"
# the bound issue 20 sets: growth per file at most 5 % of the input + ~60 KB, whatever the page count
SLACK = 60_000


def text_pdf(pages: int, size: tuple[float, float] = (595, 842)) -> bytes:
    """Pages of body text, as a report or a generated document would have."""
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=size)
    for i in range(pages):
        for line in range(40):
            c.drawString(72, 780 - line * 18, f"Page {i + 1}, line {line}: the quarterly figures, {i * line} units")
        c.showPage()
    c.save()
    return buf.getvalue()


def hand_pdf(*objects: bytes) -> bytes:
    """A PDF written object by object (for structures reportlab does not make)."""
    out, at = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        at.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % a for a in at)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def stream(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n%s\nendstream" % (len(data), data)


def font_programs(data: bytes, password: str | None = None) -> set[int]:
    """The embedded font programs (FontFile, FontFile2, FontFile3 streams) reachable from any page, through forms."""
    reader = pypdf.PdfReader(io.BytesIO(data))
    if password:
        reader.decrypt(password)
    found: set[int] = set()

    def resolved(value):
        return value.get_object() if value is not None else {}

    def walk(resources, seen: set[int]) -> None:
        resources = resolved(resources)
        for font in resolved(resources.get("/Font")).values():
            font = font.get_object()
            for f in [font, *(d.get_object() for d in font.get("/DescendantFonts", []))]:
                descriptor = resolved(f.get("/FontDescriptor"))
                found.update(
                    descriptor.raw_get(k).idnum for k in ("/FontFile", "/FontFile2", "/FontFile3") if k in descriptor
                )
        for ref in resolved(resources.get("/XObject")).values():
            if ref.idnum not in seen:
                seen.add(ref.idnum)
                xobject = ref.get_object()
                if xobject.get("/Subtype") == "/Form":
                    walk(xobject.get("/Resources"), seen)

    for page in reader.pages:
        walk(page.get("/Resources"), set())
    return found


def stamp_forms(reader) -> set[int]:
    """The form XObjects that pages draw as kzlabel's stamp."""
    return {
        ref.idnum
        for page in reader.pages
        for name, ref in (page["/Resources"].get("/XObject") or {}).items()
        if name.startswith("/KZStamp")
    }


def warning_lines(languages=("kk", "ru", "en")) -> list[str]:
    return [NOTICES["generated"][lang] for lang in languages]


@pytest.fixture
def lab(signer, trust):
    return Labeler(signer, owner="O", system="S", trust=trust)


@pytest.fixture(scope="module")
def marked_36(signer, trust) -> tuple[bytes, bytes]:
    """A generated 36-page PDF (the page count of issue 20's report) and its marked output, all layers."""
    src = text_pdf(36)
    return src, Labeler(signer, owner="O", system="S", trust=trust).mark(src, name="d.pdf").data


def test_a_36_page_pdf_gets_one_font_program_one_form_and_bounded_growth(lab, marked_36):
    src, out = marked_36
    grown = len(out) - len(src)
    assert grown <= 0.05 * len(src) + SLACK, (len(src), len(out))
    assert len(font_programs(out)) == 1 and len(re.findall(rb"/FontFile[23]?\b", out)) == 1
    assert len(stamp_forms(pypdf.PdfReader(io.BytesIO(out)))) == 1
    # what a page adds is its page dictionary and a cross-reference entry, not a font (27.8 KB a page before)
    one = text_pdf(1)
    per_page = (grown - (len(lab.mark(one, name="d.pdf").data) - len(one))) / 35
    assert per_page < 400, per_page


def test_a_36_page_pdf_verifies_with_the_warning_read_on_every_page(lab, marked_36):
    report = lab.verify(marked_36[1], name="d.pdf")
    assert report.verdict == Verdict.COMPLIANT, str(report)
    # the verifier extracts every stamped page's text and finds every line of the warning in it
    assert report.layer("metadata").data["content"] == "page content exactly as signed; warning present on 36 page(s)"


def test_the_bundled_pdf_grows_within_the_bound(lab):
    src = (SAMPLES / "report.pdf").read_bytes()
    result = lab.mark(src, name="report.pdf")
    assert set(result.layers) == {"visible", "metadata", "c2pa"}
    assert len(result.data) - len(src) <= 0.05 * len(src) + SLACK
    assert len(font_programs(result.data)) == 1
    assert lab.verify(result.data, name="report.pdf").verdict == Verdict.COMPLIANT


def mixed_pdf() -> bytes:
    """Pages of every rotation and three sizes, one with a crop box off the media box's origin."""
    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    for size, rotation in [((595, 842), 0), ((595, 842), 90), ((842, 595), 180), ((612, 792), 270), ((300, 200), 0)]:
        c.setPageSize(size)
        c.setPageRotation(rotation)
        c.drawString(20, 20, f"page {size} {rotation}")
        c.showPage()
    c.save()
    w = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(buf.getvalue())))
    w.pages[0].cropbox = RectangleObject((50, 100, 545, 742))
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


def displayed_plate(page) -> tuple[float, float, float, float, float]:
    """(scale, left, bottom, right, top) of the stamp on the page as displayed (crop box origin, /Rotate turning the
    page clockwise), from the ``cm`` that draws the form and the form's bounding box."""
    ops = pypdf.generic.ContentStream(page.get_contents(), page.pdf).operations
    q, (matrix, cm), (name, do), end = ops[-4:]
    assert (q[1], cm, do, end[1]) == (b"q", b"cm", b"Do", b"Q")
    a, b, c, d, e, f = (float(v) for v in matrix)
    box = [float(v) for v in page["/Resources"]["/XObject"][name[0]]["/BBox"]]
    crop = page.cropbox
    x0, y0, w, h = float(crop.left), float(crop.bottom), float(crop.width), float(crop.height)
    rotation = int(page.get("/Rotate", 0)) % 360
    shown = []
    for x, y in [(box[0], box[1]), (box[2], box[3]), (box[0], box[3]), (box[2], box[1])]:
        px, py = a * x + c * y + e - x0, b * x + d * y + f - y0
        shown.append({0: (px, py), 90: (py, w - px), 180: (w - px, h - py), 270: (h - py, px)}[rotation])
    xs, ys = [p[0] for p in shown], [p[1] for p in shown]
    return (a * a + b * b) ** 0.5, min(xs), min(ys), max(xs), max(ys)


@pytest.mark.parametrize("corner", ["bottom-left", "bottom-right", "top-left", "top-right"])
def test_pages_of_any_size_and_rotation_share_one_form_placed_in_the_corner(signer, corner):
    lab = Labeler(signer, owner="O", system="S", layers=["visible"], position=corner)
    out = lab.mark(mixed_pdf(), name="d.pdf").data
    reader = pypdf.PdfReader(io.BytesIO(out))
    assert len(stamp_forms(reader)) == 1 and len(font_programs(out)) == 1
    scales = []
    for page in reader.pages:
        crop = page.cropbox
        width, height = float(crop.width), float(crop.height)
        if int(page.get("/Rotate", 0)) % 180:
            width, height = height, width
        scale, left, bottom, right, top = displayed_plate(page)
        scales.append(scale)
        assert 0 < left < right < width and 0 < bottom < top < height, (corner, left, bottom, right, top)
        gap_x = left if "left" in corner else width - right
        gap_y = bottom if "bottom" in corner else height - top
        assert gap_x < 0.05 * width and gap_y < 0.05 * height, (corner, gap_x, gap_y)
        text = re.sub(r"\s+", " ", page.extract_text())
        assert all(line in text for line in warning_lines())
    # the plate is sized to each page (2.2 % of its shorter side), by scaling the one form
    assert scales[-1] < scales[0] and len({round(s, 3) for s in scales}) >= 3


def test_inherited_resources_and_split_content_streams(signer, trust):
    src = hand_pdf(
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R 4 0 R] /Count 2 /MediaBox [0 0 400 300]"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Type /Page /Parent 2 0 R /Contents 6 0 R >>",
        b"<< /Type /Page /Parent 2 0 R /Contents [7 0 R 8 0 R] >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        stream(b"BT /F1 12 Tf 20 200 Td (Body text of page 1) Tj ET"),
        stream(b"BT /F1 12 Tf 20 200 Td (Body text"),
        stream(b" of page 2) Tj ET"),
    )
    lab = Labeler(signer, owner="O", system="S", layers=["visible", "metadata"], trust=trust)
    out = lab.mark(src, name="d.pdf").data
    assert out.startswith(src)
    reader = pypdf.PdfReader(io.BytesIO(out))
    for number, page in enumerate(reader.pages, 1):
        assert page["/Resources"]["/Font"]["/F1"]["/BaseFont"] == "/Helvetica"  # the inherited font still there
        text = re.sub(r"\s+", " ", page.extract_text())
        assert f"Body text of page {number}" in text
        assert all(line in text for line in warning_lines())
    # the page's own streams referenced where they were: [q, 7 0 R, 8 0 R, the stamp block]
    assert [ref.idnum for ref in reader.pages[1].raw_get("/Contents")][1:3] == [7, 8]
    assert lab.verify(out, name="d.pdf").verdict == Verdict.COMPLIANT
    # an edit of the second page's own stream is a page change, not a stamp change
    w = pypdf.PdfWriter(io.BytesIO(out), incremental=True)
    own = w.pages[1].raw_get("/Contents")[2].get_object()
    own.set_data(b" of page 9) Tj ET")
    buf = io.BytesIO()
    w.write(buf)
    report = lab.verify(buf.getvalue(), name="d.pdf")
    assert report.verdict == Verdict.TAMPERED and "page 2 changed since signing" in report.layer("metadata").detail


def test_marking_a_stamped_pdf_again_keeps_the_first_stamp_drawing_its_own_form(signer):
    lab = Labeler(signer, owner="O", system="S", layers=["visible"])
    once = lab.mark(text_pdf(2), name="d.pdf").data
    twice = lab.mark(once, name="d.pdf").data
    reader = pypdf.PdfReader(io.BytesIO(twice))
    for page in reader.pages:
        xobjects = page["/Resources"]["/XObject"]
        assert set(xobjects) == {"/KZStamp", "/KZStamp1"}
        assert xobjects.raw_get("/KZStamp").idnum != xobjects.raw_get("/KZStamp1").idnum
        names = [
            ops[0] for ops, op in pypdf.generic.ContentStream(page.get_contents(), reader).operations if op == b"Do"
        ]
        assert names == ["/KZStamp", "/KZStamp1"]
    assert len(font_programs(twice)) == 2  # one per mark, not per page


def test_an_encrypted_pdf_keeps_its_encryption_with_one_font_program(lab):
    plain = text_pdf(17)
    w = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(plain)))
    w.encrypt(user_password="u-s3cret", owner_password="o-s3cret", algorithm="AES-256")
    buf = io.BytesIO()
    w.write(buf)
    src = buf.getvalue()
    out = lab.mark(src, name="e.pdf", password="u-s3cret").data
    assert out.startswith(src)  # appended, the encrypted original kept
    assert len(out) - len(src) <= 0.05 * len(src) + SLACK
    reader = pypdf.PdfReader(io.BytesIO(out))
    assert reader.is_encrypted and reader.decrypt("u-s3cret")
    assert len(font_programs(out, "u-s3cret")) == 1 and len(stamp_forms(reader)) == 1
    assert lab.verify(out, name="e.pdf", password="u-s3cret").verdict == Verdict.COMPLIANT


def test_a_page_without_content_gets_the_stamp(signer):
    src = hand_pdf(
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    )
    out = Labeler(signer, owner="O", system="S", layers=["visible"]).mark(src, name="d.pdf").data
    page = pypdf.PdfReader(io.BytesIO(out)).pages[0]
    assert all(line in re.sub(r"\s+", " ", page.extract_text()) for line in warning_lines())
    assert page["/Resources"][NameObject("/XObject")]


def test_an_update_never_takes_the_number_of_the_previous_updates_xref_stream(signer, trust):
    # the stamp is one update, the metadata the next: pypdf numbered the next update's first object (the XMP packet)
    # with the stamp update's xref stream number, and then read the catalogue's /Metadata as that xref stream
    lab = Labeler(signer, owner="O", system="S", layers=["visible", "metadata"], trust=trust)
    out = lab.mark(text_pdf(2), name="d.pdf").data
    reader = pypdf.PdfReader(io.BytesIO(out))
    assert reader.trailer["/Root"]["/Metadata"]["/Type"] == "/Metadata"
    assert b"kzlabel:Label" in reader.xmp_metadata.stream.get_data()
    revisions = out.split(b"%%EOF")[1:3]  # the stamp's update, then the metadata's
    xref_number = int(re.findall(rb"(\d+) 0 obj\s*<<\s*/Type /XRef", revisions[0])[-1])
    assert xref_number not in {int(n) for n in re.findall(rb"(\d+) 0 obj", revisions[1])}
