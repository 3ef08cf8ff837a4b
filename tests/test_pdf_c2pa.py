"""PDF C2PA placed by kzlabel (formats/pdf_c2pa): the hard binding covers every byte but the manifest store's, and PDF
writers append updates or write a new file, so a broken hash tells an appended update or a re-laid-out file
(container edits: the page binding decides) from bytes changed in place (tampered, whatever the page binding says:
fonts, page dictionaries, superseded revisions). docs/label-format.md, "What a changed byte can leave unchanged"."""

from __future__ import annotations

import io
from pathlib import Path

import pypdf
import pytest

from kzlabel import Labeler, Status, Verdict
from kzlabel.layers.c2pa_embed import CHANGED_IN_PLACE

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "samples" / "report.pdf"


@pytest.fixture(scope="module")
def marked(signer, trust) -> bytes:
    res = Labeler(signer, owner="O LLP", system="Gen", trust=trust).mark(SAMPLE)
    assert "c2pa" in res.layers
    return res.data


def _flip(data: bytes, at: int, xor: int = 0x01) -> bytes:
    out = bytearray(data)
    out[at] ^= xor
    return bytes(out)


def _verify(data: bytes, trust):
    return Labeler(trust=trust).verify(data, name="report.pdf")


def _append_update(data: bytes) -> bytes:
    writer = pypdf.PdfWriter(io.BytesIO(data), incremental=True)
    writer.add_metadata({"/Title": "renamed by another tool"})
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def test_the_manifest_update_follows_the_stamped_file_unchanged(signer, trust, tmp_path) -> None:
    """The manifest is an incremental update after the stamp and metadata updates, which are after the original."""
    res = Labeler(signer, owner="O LLP", system="Gen", layers=["visible", "metadata"]).mark(SAMPLE)
    full = Labeler(signer, owner="O LLP", system="Gen").mark(SAMPLE).data
    original = SAMPLE.read_bytes()
    assert res.data.startswith(original) and full.startswith(original)
    tail = full[full.rfind(b"%%EOF", 0, len(full) - 8) :]
    assert b"/Type/EmbeddedFile/Subtype/application#2Fc2pa" in tail and b"/AFRelationship/C2PA_Manifest" in tail
    assert _verify(full, trust).verdict == Verdict.COMPLIANT


@pytest.mark.parametrize("where", ["font program", "media box", "superseded page"])
def test_a_byte_changed_in_place_is_tampered(marked, trust, where) -> None:
    """A byte the page binding does not cover (an embedded font's program, a page's /MediaBox) or that no reader sees
    (the unstamped page of the original revision) changed in place: the C2PA hash broke with the manifest where it
    was signed and no update appended, so it is no container edit. Before, each read as compliant (C2PA unbound)."""
    if where == "font program":
        at = marked.find(b"/Length1") + 400  # well inside the first font stream's data
    elif where == "media box":
        at = marked.rfind(b"/MediaBox") + len(b"/MediaBox [ 0 0 5")  # a digit of the newest page 1
    else:
        at = marked.find(b"/MediaBox") + len(b"/MediaBox [ 0 0 5")  # the original revision's page, superseded
    report = _verify(_flip(marked, at), trust)
    c2pa = report.layer("c2pa")
    assert c2pa is not None and c2pa.status == Status.INVALID and CHANGED_IN_PLACE in c2pa.data["codes"], str(report)
    assert "bytes were changed in place" in c2pa.detail
    assert report.verdict == Verdict.TAMPERED


def test_an_appended_update_is_a_container_edit(marked, trust) -> None:
    """Another tool's incremental update after the signed bytes: the hash no longer covers the file, the signed
    bytes are intact, the pages as signed: C2PA unbound, compliant. The same update after a byte changed in place
    is still tampered."""
    report = _verify(_append_update(marked), trust)
    assert report.layer("c2pa").status == Status.UNBOUND and report.verdict == Verdict.COMPLIANT, str(report)
    damaged = _append_update(_flip(marked, marked.find(b"/Length1") + 400))
    assert _verify(damaged, trust).verdict == Verdict.TAMPERED


def test_a_file_rewritten_by_another_writer_is_a_container_edit(marked, trust) -> None:
    """pypdf writing the document anew (objects renumbered, the manifest moved): unbound, the pages decide."""
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(marked)))
    buf = io.BytesIO()
    writer.write(buf)
    report = _verify(buf.getvalue(), trust)
    assert report.layer("c2pa").status == Status.UNBOUND and report.verdict == Verdict.COMPLIANT, str(report)


@pytest.mark.parametrize("target", [b"/AFRelationship/C2PA_Manifest", b"/Index["])
def test_a_manifest_the_structure_no_longer_leads_to_is_found_by_its_bytes(marked, trust, target) -> None:
    """A flip in the manifest's file specification hides it from the catalog; one in the last cross-reference
    stream's /Index makes pypdf read the earlier revisions' catalog and pages (the stamp gone). The manifest stream,
    written in kzlabel's layout, is found by its bytes, where it was signed: changed in place, tampered (before:
    compliant with no manifest, and machine_readable_only)."""
    at = marked.rfind(target) + 3
    report = _verify(_flip(marked, at), trust)
    assert report.layer("c2pa").status == Status.INVALID, str(report)
    assert report.verdict == Verdict.TAMPERED
