"""PDF: stamp on the pages, XMP/Info fields readable by exiftool, C2PA, incremental updates, hostile files."""

from __future__ import annotations

import io
import json
import subprocess

import pypdf
import pytest
from pypdf.generic import DictionaryObject, NameObject, TextStringObject
from reportlab.pdfgen import canvas

from kzlabel import Labeler, Training, Verdict
from kzlabel.errors import CorruptInput, KzlabelError
from kzlabel.rights.actions import training_allowed, write_optout
from kzlabel.rights.vocab import TrainingPolicy


def make_pdf(pages=2, rotate_second=True, outline=False, javascript=False) -> bytes:
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(595, 842))
    for i in range(pages):
        if rotate_second and i == 1:
            c.setPageRotation(90)
        c.drawString(72, 720, f"Body text of page {i + 1}")
        c.showPage()
    c.save()
    if not (outline or javascript):
        return buf.getvalue()
    w = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(buf.getvalue())))
    if outline:
        w.add_outline_item(title="Chapter 1", page_number=0)
    if javascript:
        js = DictionaryObject(
            {NameObject("/S"): NameObject("/JavaScript"), NameObject("/JS"): TextStringObject("app.alert(1);")}
        )
        w._root_object[NameObject("/OpenAction")] = w._add_object(js)
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


@pytest.fixture
def lab(signer, trust):
    return Labeler(signer, owner="ТОО Құжат", system="DocGen", system_version="3", trust=trust)


def exif(path) -> dict:
    out = subprocess.run(["exiftool", "-j", "-a", "-G1", str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


def test_round_trip_all_layers_and_exiftool(lab, tmp_path):
    dst = tmp_path / "out.pdf"
    result = lab.mark(make_pdf(), dst, name="doc.pdf")
    assert set(result.layers) == {"visible", "metadata", "c2pa"}
    report = lab.verify(dst)
    assert report.verdict == Verdict.COMPLIANT, str(report)
    assert {e.layer: e.status.value for e in report.evidence} == {
        "c2pa": "trusted",
        "metadata": "trusted",
        "visible": "found",
    }
    tags = exif(dst)
    assert tags["XMP-iptcExt:DigitalSourceType"].endswith("/trainedAlgorithmicMedia")
    assert tags["XMP-iptcExt:AISystemUsed"] == "DocGen"
    assert json.loads(tags["PDF:AIGC"])["Label"] == "1"
    assert tags["PDF:KZLabel"] == result.token


def test_stamp_on_every_page_incl_rotated_with_kazakh_text(signer):
    lab = Labeler(signer, owner="O", system="S", layers=["visible"], languages=["kk", "en"])
    out = lab.mark(make_pdf(3), name="d.pdf").data
    reader = pypdf.PdfReader(io.BytesIO(out))
    for page in reader.pages:
        text = page.extract_text()
        assert "Бұл мазмұнды жасанды интеллект (ЖИ) жасаған" in text and "artificial intelligence (AI)" in text
    first = (
        Labeler(signer, owner="O", system="S", layers=["visible"], pages="first").mark(make_pdf(3), name="d.pdf").data
    )
    pages = pypdf.PdfReader(io.BytesIO(first)).pages
    assert "ЖИ" in pages[0].extract_text() and "ЖИ" not in pages[1].extract_text()


def stamp_glyphs(page, needle="ЖИ") -> list[list[float]]:
    """Where the stamp's text lands on the page: glyph positions inside the shared form, taken through the ``cm``
    that draws the form on this page (pypdf reports a form's text in the form's own space)."""
    placed, found = [], []

    def before(operator, operands, cm, tm):
        if operator == b"Do":
            placed.append(cm)

    def visitor(text, cm, tm, font, size):
        if needle in text and placed:
            found.append(pypdf.mult(pypdf.mult(tm, cm), placed[-1]))

    page.extract_text(visitor_operand_before=before, visitor_text=visitor)
    return found


def test_rotated_page_stamp_lands_inside_the_page(signer):
    out = Labeler(signer, owner="O", system="S", layers=["visible"]).mark(make_pdf(2), name="d.pdf").data
    page = pypdf.PdfReader(io.BytesIO(out)).pages[1]
    assert int(page.get("/Rotate", 0)) == 90
    glyphs = stamp_glyphs(page)
    xs, ys = [m[4] for m in glyphs], [m[5] for m in glyphs]
    width, height = float(page.mediabox.width), float(page.mediabox.height)
    assert xs and all(0 <= x <= width for x in xs) and all(0 <= y <= height for y in ys)
    # shown rotated 90° clockwise: the displayed bottom-left corner is the physical bottom-right one
    assert min(xs) > width / 2 and max(ys) < height / 2


def test_incremental_update_keeps_history_outline_and_javascript(signer):
    src = make_pdf(2, outline=True, javascript=True)
    lab = Labeler(signer, owner="O", system="S", layers=["visible", "metadata"])
    out = lab.mark(src, name="d.pdf").data
    assert out.startswith(src)  # the original revision is intact; kzlabel appended an update
    reader = pypdf.PdfReader(io.BytesIO(out))
    assert [o.title for o in reader.outline] == ["Chapter 1"]
    assert reader.trailer["/Root"]["/OpenAction"]["/S"] == "/JavaScript"  # kept, inert
    report = lab.verify(out, name="d.pdf")
    assert report.layer("metadata").data["fields"]["javascript_present"] is True


def test_signed_pdf_skips_embedded_manifest(lab, tmp_path):
    src = make_pdf(1).replace(b"/Type /Catalog", b"/Type /Catalog /AcroForm << /SigFlags 3 /Fields [] >>")
    result = lab.mark(src, name="signed.pdf")
    assert "c2pa" not in result.layers and "digital signature" in result.skipped["c2pa"]
    assert result.data.startswith(src)
    # nor a sidecar: the C2PA library hashes a PDF's sidecar as if it were embedded, so it would not validate
    result = lab.mark(src, tmp_path / "signed.pdf")
    assert result.c2pa_sidecar is None and not (tmp_path / "signed.pdf.c2pa").exists()


def test_stamp_removed_is_machine_readable_only(signer, trust):
    lab = Labeler(signer, owner="O", system="S", layers=["visible", "metadata"], trust=trust)
    src = make_pdf(1, rotate_second=False)
    out = lab.mark(src, name="d.pdf").data
    original_contents = pypdf.PdfReader(io.BytesIO(src)).pages[0]["/Contents"].get_object().get_data()
    w = pypdf.PdfWriter(io.BytesIO(out), incremental=True)
    # [q, the page's own stream (referenced where it was, not rewritten), the stamp block]: the stamp taken out
    streams = w.pages[0].raw_get("/Contents")
    assert len(streams) == 3 and streams[1].get_object().get_data() == original_contents
    w.pages[0][NameObject("/Contents")] = streams[1]
    buf = io.BytesIO()
    w.write(buf)
    report = lab.verify(buf.getvalue(), name="d.pdf")
    assert report.verdict == Verdict.MACHINE_READABLE_ONLY, str(report)


def edit_page_text(data: bytes, old: bytes, new: bytes) -> bytes:
    """An incremental update that changes ``old`` into ``new`` in the page content stream holding it."""
    w = pypdf.PdfWriter(io.BytesIO(data), incremental=True)
    edited = 0
    for page in w.pages:
        for ref in page.raw_get("/Contents"):
            stream = ref.get_object()
            data = stream.get_data()
            if old in data:
                stream[NameObject("/Filter")] = NameObject("/FlateDecode")  # re-encoded as an editor would
                stream.set_data(data.replace(old, new))
                edited += 1
    assert edited
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


def test_edit_after_signing_is_tampered(lab):
    out = lab.mark(make_pdf(2), name="d.pdf").data
    report = lab.verify(edit_page_text(out, b"Body text of page 2", b"Body text of page 9"), name="d.pdf")
    assert report.verdict == Verdict.TAMPERED, str(report)
    assert "page 2 changed since signing" in report.layer("metadata").detail


def test_encrypted_pdf_needs_password(signer, trust):
    w = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf(1))))
    w.encrypt(user_password="secret", owner_password="secret", algorithm="AES-256")
    buf = io.BytesIO()
    w.write(buf)
    lab = Labeler(signer, owner="O", system="S", layers=["visible", "metadata"], trust=trust)
    with pytest.raises(CorruptInput, match="password"):
        lab.mark(buf.getvalue(), name="e.pdf")
    with pytest.raises(CorruptInput, match="wrong password"):
        lab.mark(buf.getvalue(), name="e.pdf", password="nope")
    out = lab.mark(buf.getvalue(), name="e.pdf", password="secret").data
    assert pypdf.PdfReader(io.BytesIO(out)).is_encrypted  # protection is kept
    assert lab.verify(out, name="e.pdf", password="secret").verdict == Verdict.COMPLIANT


@pytest.mark.parametrize("damage", ["truncate", "xref", "garbage", "nopages"])
def test_hostile_pdfs_give_typed_errors_or_valid_output(lab, damage):
    src = make_pdf(2)
    bad = {
        "truncate": src[: len(src) // 2],
        "xref": src.replace(b"xref", b"xrfe"),
        "garbage": b"%PDF-1.7\n" + bytes(range(256)) * 40,
        "nopages": b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
    }[damage]
    try:
        out = lab.mark(bad, name="bad.pdf").data
    except KzlabelError:
        return
    assert lab.verify(out, name="bad.pdf").verdict == Verdict.COMPLIANT


def test_optout_writes_xmp_plus_and_tdmrep(tmp_path):
    path = tmp_path / "w.pdf"
    path.write_bytes(make_pdf(1))
    write_optout(path, policy=TrainingPolicy.from_lists(deny=["ai-training"]), in_place=True)
    check = training_allowed(path)
    assert check.status == Training.NOT_ALLOWED
    assert {s.carrier for s in check.signals} == {"XMP plus:DataMining", "XMP tdm:reservation"}
    tags = exif(path)
    assert tags["XMP-plus:DataMining"].endswith("AIMLTRAINING") or "AI/ML" in tags["XMP-plus:DataMining"]


def test_decompression_bomb_page_is_refused(lab):
    import zlib

    from kzlabel.errors import LimitExceeded

    w = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf(1))))
    bomb = pypdf.generic.StreamObject()
    bomb[NameObject("/Filter")] = NameObject("/FlateDecode")
    bomb._data = zlib.compress(b" " * 120_000_000, 9)
    w.pages[0][NameObject("/Contents")] = w._add_object(bomb)
    buf = io.BytesIO()
    w.write(buf)
    assert len(buf.getvalue()) < 1_000_000
    with pytest.raises(LimitExceeded):
        lab.mark(buf.getvalue(), name="bomb.pdf")
