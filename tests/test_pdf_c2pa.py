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


# --- a digitally signed PDF: why it still gets no C2PA manifest -----------------------------------------------------
def _pdf_signed_with_pyhanko(tmp_path: Path) -> tuple[bytes, Path]:
    """report.pdf signed by pyHanko (an approval signature, no DocMDP) with a self-signed RSA certificate."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Document Signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem, cert_pem = tmp_path / "doc-key.pem", tmp_path / "doc-cert.pem"
    key_pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out = io.BytesIO()
    signer = signers.SimpleSigner.load(str(key_pem), str(cert_pem))
    meta = signers.PdfSignatureMetadata(field_name="Signature1")
    signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(SAMPLE.read_bytes())), meta, signer=signer, output=out)
    return out.getvalue(), cert_pem


def _pyhanko_status(data: bytes, cert_pem: Path):
    from pyhanko.keys import load_cert_from_pemder
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    context = ValidationContext(trust_roots=[load_cert_from_pemder(str(cert_pem))])
    (signature,) = PdfFileReader(io.BytesIO(data)).embedded_signatures
    return validate_pdf_signature(signature, context)


def test_a_signed_pdf_gets_no_manifest_because_validators_reject_the_catalog_change(signer, trust, tmp_path) -> None:
    """kzlabel's C2PA update appends, so the earlier signature stays intact and valid over its revision (pyHanko's
    validator) — but the manifest must be named in the catalog's /AF, and pyHanko's difference analysis calls that
    change to the signed catalog a modification of level OTHER (its bottom line: not OK), as it does the stamp on the
    pages. A label-only update (XMP, Info) is one it accepts. So the C2PA skip for signed PDFs stays, with that
    reason, and kzlabel's mark (stamp, label) keeps the signature intact over its revision."""
    from pyhanko.sign.diff_analysis import ModificationLevel
    from pyhanko.sign.validation.status import SignatureCoverageLevel

    from kzlabel import formats
    from kzlabel.io import Input
    from kzlabel.layers import c2pa_embed

    signed, cert_pem = _pdf_signed_with_pyhanko(tmp_path)
    assert _pyhanko_status(signed, cert_pem).bottom_line
    src, c2pa_only = tmp_path / "signed.pdf", tmp_path / "c2pa-only.pdf"
    src.write_bytes(signed)
    handler = formats.detect(Input(path=src))
    c2pa_embed.sign(src, c2pa_only, handler.c2pa_reserve, signer, label_claims=None, mime=handler.mime)
    status = _pyhanko_status(c2pa_only.read_bytes(), cert_pem)
    assert status.intact and status.valid and status.coverage == SignatureCoverageLevel.ENTIRE_REVISION
    assert status.modification_level == ModificationLevel.OTHER and not status.bottom_line

    labelled = Labeler(signer, owner="O LLP", system="Gen", layers=["metadata"]).mark(signed).data
    assert _pyhanko_status(labelled, cert_pem).bottom_line  # the label alone: accepted
    res = Labeler(signer, owner="O LLP", system="Gen", trust=trust).mark(signed)
    assert "c2pa" not in res.layers and "digital signature" in res.skipped["c2pa"]
    assert "pyHanko" in res.skipped["c2pa"]
    status = _pyhanko_status(res.data, cert_pem)
    assert status.intact and status.valid and status.coverage == SignatureCoverageLevel.ENTIRE_REVISION


def test_the_marked_pdf_validates_in_independent_readers(marked, trust, tmp_path) -> None:
    """The whole mark's output: the c2pa Reader and encypher-c2pa validate the manifest (trusted, hash match, no
    failure), pypdf reads it strictly, exiftool reads the label with no warning."""
    import json
    import subprocess

    import encypher_c2pa

    from kzlabel.layers import c2pa as c2pa_layer

    lib = c2pa_layer.read(io.BytesIO(marked), "application/pdf", trust)
    assert lib.state == "trusted" and "assertion.dataHash.match" in lib.codes and lib.label_token
    enc = dict(
        encypher_c2pa.verify(marked, "application/pdf", trust_pem=trust.pem(), no_default_trust=True, telemetry=False)
    )
    assert (enc["signature"], enc["hard_binding"], enc["validation_state"]) == ("valid", "match", "Trusted")
    assert not enc["validation_results"]["failure"]
    assert len(pypdf.PdfReader(io.BytesIO(marked), strict=True).pages) == 2
    out = tmp_path / "marked.pdf"
    out.write_bytes(marked)
    ran = subprocess.run(["exiftool", "-j", "-a", "-G1", str(out)], capture_output=True, text=True, check=True)
    tags = json.loads(ran.stdout)[0]
    assert not any(k.endswith(":Warning") or k.endswith(":Error") for k in tags), tags
    assert any(k.endswith(":KZLabel") or k.endswith(":Label") for k in tags), sorted(tags)


@pytest.mark.parametrize("how", ["incremental", "rewritten"])
def test_a_page_turned_or_resized_by_another_writer_is_tampered(marked, trust, how) -> None:
    """A page's /Rotate or /MediaBox changed by a PDF writer (an appended update, or the file written anew): the C2PA
    hash broke as by any writer's edit (not in place), the operations are as signed, but the label binds each page's
    geometry (media box, crop box, rotation, user unit), so the page shown is not the one signed. Before, compliant."""
    from pypdf.generic import NameObject, NumberObject, RectangleObject

    if how == "incremental":
        writer = pypdf.PdfWriter(io.BytesIO(marked), incremental=True)
        writer.pages[0][NameObject("/Rotate")] = NumberObject(90)
    else:
        writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(marked)))
        writer.pages[1][NameObject("/MediaBox")] = RectangleObject([0, 0, 595, 421])
    buf = io.BytesIO()
    writer.write(buf)
    report = _verify(buf.getvalue(), trust)
    codes = report.layer("c2pa").data["codes"]
    assert "assertion.dataHash.mismatch" in codes and CHANGED_IN_PLACE not in codes, str(report)  # a writer's edit
    assert "size, crop box, rotation or user unit changed" in report.layer("metadata").detail
    assert report.verdict == Verdict.TAMPERED
