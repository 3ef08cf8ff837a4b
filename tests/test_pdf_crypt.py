"""Encrypted PDFs: the output is exactly as protected as the input (same algorithm, permissions and passwords), the
label reads back with the password, C2PA is skipped with the reason, and the password is never written anywhere."""

from __future__ import annotations

import io
import json
import subprocess

import pypdf
import pytest
from pypdf._encryption import Encryption, EncryptAlgorithm
from pypdf.constants import UserAccessPermissions as Perm
from pypdf.generic import BooleanObject, NameObject
from reportlab.pdfgen import canvas

from kzlabel import Labeler, Training, Verdict
from kzlabel.cli import main
from kzlabel.errors import CorruptInput, SigningError
from kzlabel.formats.pdf_crypt import describe
from kzlabel.layers import c2pa as c2pa_layer
from kzlabel.rights.actions import training_allowed, write_optout
from kzlabel.rights.vocab import TrainingPolicy

USER, OWNER = "Kz-user-s3cret", "Kz-owner-s3cret"
ALGORITHMS = ["AES-256", "AES-256-R5", "AES-128", "RC4-128", "RC4-40"]
# printing and modifying denied, everything else allowed
PERMISSIONS = Perm(0xFFFFFFFF) & ~Perm.PRINT & ~Perm.MODIFY & ~Perm.PRINT_TO_REPRESENTATION


def plain_pdf(pages: int = 2) -> bytes:
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(595, 842))
    for i in range(pages):
        c.drawString(72, 720, f"Body text of page {i + 1}")
        c.showPage()
    c.save()
    return buf.getvalue()


def encrypted_pdf(algorithm: str, user: str, owner: str, permissions: int = PERMISSIONS) -> bytes:
    w = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(plain_pdf())))
    w.encrypt(user_password=user, owner_password=owner, algorithm=algorithm, permissions_flag=permissions)
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


def raw(value):
    """A PDF value as its bytes (strings) or plain Python value, for exact comparison."""
    value = value.get_object()
    if hasattr(value, "original_bytes"):
        return bytes(value.original_bytes)
    if isinstance(value, dict):
        return {str(k): raw(v) for k, v in value.items()}
    return value


def encrypt_entry(data: bytes) -> dict:
    """The encryption dictionary and the first file identifier (which RC4 and AES-128 keys derive from)."""
    trailer = pypdf.PdfReader(io.BytesIO(data)).trailer
    return {"entry": raw(trailer["/Encrypt"]), "id0": raw(trailer["/ID"][0])}


@pytest.fixture
def lab(signer, trust):
    return Labeler(signer, owner="O", system="S", trust=trust)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("user", [USER, ""], ids=["user+owner", "owner-only"])
def test_output_keeps_the_inputs_encryption_and_the_label_reads_back(lab, tmp_path, algorithm, user):
    src = encrypted_pdf(algorithm, user, OWNER)
    given = user or None  # an owner-only PDF opens with the empty user password: no password needed
    dst = tmp_path / "out.pdf"
    result = lab.mark(src, dst, name="e.pdf", password=given)
    out = dst.read_bytes()

    assert out.startswith(src)  # an incremental update: the original revision is intact
    # the same encryption dictionary (/Filter, /V, /R, /Length, /P, /O, /U, /OE, /UE, /Perms, /CF…) and file ID
    assert encrypt_entry(out) == encrypt_entry(src)
    before, after = pypdf.PdfReader(io.BytesIO(src)), pypdf.PdfReader(io.BytesIO(out))
    assert describe(after) == describe(before) and describe(after)["algorithm"] == algorithm
    assert describe(after)["P"] == describe(before)["P"]
    # the same passwords open it, with the same permissions
    assert after.decrypt(user) == pypdf.PasswordType.USER_PASSWORD
    assert after.user_access_permissions == before.user_access_permissions
    assert not after.user_access_permissions & Perm.PRINT and not after.user_access_permissions & Perm.MODIFY
    owner_reader = pypdf.PdfReader(io.BytesIO(out))
    assert owner_reader.decrypt(OWNER) == pypdf.PasswordType.OWNER_PASSWORD
    assert pypdf.PdfReader(io.BytesIO(out)).decrypt("not the password") == pypdf.PasswordType.NOT_DECRYPTED
    assert "ЖИ" in after.pages[1].extract_text()  # the stamp, inside the encrypted content

    # C2PA skipped with the reason; the other layers proven on the written (encrypted) output
    assert set(result.layers) == {"visible", "metadata"}
    assert "cannot embed a manifest into an encrypted PDF" in result.skipped["c2pa"]
    assert result.c2pa_sidecar is None and not (tmp_path / "out.pdf.c2pa").exists()
    report = lab.verify(dst, password=given)
    assert report.verdict == Verdict.COMPLIANT, str(report)
    lines = {e.layer: e.status.value for e in report.evidence}
    assert lines == {"c2pa": "absent", "metadata": "trusted", "visible": "found"}
    assert "page content exactly as signed" in report.layer("metadata").data["content"]
    if user:
        assert lab.verify(dst, password=OWNER).verdict == Verdict.COMPLIANT

    # the passwords are nowhere: not in the file, the label, the token or the report
    for secret in (USER, OWNER):
        assert secret.encode() not in out
        assert secret not in result.token and secret not in json.dumps(result.label.to_dict(), ensure_ascii=False)
        assert secret not in str(report) and secret not in json.dumps(report.to_dict(), ensure_ascii=False)


def test_exiftool_reads_the_label_of_the_encrypted_output_with_the_password(lab, tmp_path):
    dst = tmp_path / "out.pdf"
    lab.mark(encrypted_pdf("AES-128", USER, OWNER), dst, password=USER)

    def exif(*args: str) -> dict:
        proc = subprocess.run(["exiftool", "-j", "-G1", *args, str(dst)], capture_output=True, text=True, check=True)
        return json.loads(proc.stdout)[0]

    tags = exif("-Password", USER)
    assert tags["PDF:Encryption"].startswith("Standard V4.4 (128-bit)")
    assert "Print" not in tags["PDF:UserAccess"].replace("Print high-res", "")
    assert tags["XMP-iptcExt:DigitalSourceType"].endswith("/trainedAlgorithmicMedia")
    assert "XMP-iptcExt:DigitalSourceType" not in exif()  # nothing readable without it


def test_cleartext_metadata_stays_clear(lab):
    """/EncryptMetadata false (V 4/5): the XMP written by kzlabel is left unencrypted, as the file declares."""
    w = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(plain_pdf())))
    w.generate_file_identifiers()
    encryption = Encryption.make(EncryptAlgorithm.AES_128, -1, w._ID[0])
    encryption.EncryptMetadata = False
    entry = encryption.write_entry(USER, OWNER)
    entry[NameObject("/EncryptMetadata")] = BooleanObject(False)
    w._encryption, w._encrypt_entry = encryption, entry
    w._add_object(entry)
    buf = io.BytesIO()
    w.write(buf)
    out = lab.mark(buf.getvalue(), name="e.pdf", password=USER).data
    assert encrypt_entry(out) == encrypt_entry(buf.getvalue())
    assert b"trainedAlgorithmicMedia" in out  # XMP in the clear
    assert b"Body text" not in out  # the pages are not
    assert lab.verify(out, name="e.pdf", password=USER).verdict == Verdict.COMPLIANT


@pytest.mark.parametrize("algorithm", ["AES-256", "RC4-128"])
def test_missing_or_wrong_password_is_a_clear_error(lab, algorithm):
    src = encrypted_pdf(algorithm, USER, OWNER)
    for password, words in ((None, "give its password"), ("wrong", "wrong password")):
        with pytest.raises(CorruptInput, match=words) as mark_error:
            lab.mark(src, name="e.pdf", password=password)
        with pytest.raises(CorruptInput, match="nothing in it can be read or checked") as verify_error:
            lab.verify(src, name="e.pdf", password=password)
        for exc in (mark_error.value, verify_error.value):
            assert "wrong" not in str(exc).replace("wrong password", "")  # the given password is not echoed


def test_cli_mark_and_verify_encrypted_pdf(keydir, tmp_path, capsys):
    src, dst = tmp_path / "e.pdf", tmp_path / "out.pdf"
    src.write_bytes(encrypted_pdf("AES-256", USER, OWNER))
    mark = ["mark", str(src), "-o", str(dst), "--key", str(keydir), "--system", "S", "--owner", "O", "--json"]
    # no password, a wrong one: exit 2, one line naming the problem, no traceback, the password not echoed
    assert main(mark) == 2
    assert main([*mark, "--password", "Kz-wrong-guess"]) == 2
    err = capsys.readouterr()
    assert "give its password" in err.err and "wrong password" in err.err and "Kz-wrong-guess" not in err.err + err.out
    assert "internal" not in err.err and "Traceback" not in err.err and not dst.exists()

    assert main([*mark, "--password", USER]) == 0
    done = capsys.readouterr()
    body = json.loads(done.out)
    assert body["layers"] == ["visible", "metadata"] and "encrypted PDF" in body["skipped"]["c2pa"]
    assert encrypt_entry(dst.read_bytes()) == encrypt_entry(src.read_bytes())

    verify = ["verify", str(dst), "--trust", str(keydir), "--json"]
    assert main([*verify, "--password", USER]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "compliant"
    assert main(verify) == 2  # what cannot be checked without it, said in one line
    err = capsys.readouterr()
    assert "nothing in it can be read or checked" in err.err and "Traceback" not in err.err
    for text in (done.out, done.err, err.out, err.err):
        assert USER not in text and OWNER not in text


def test_optout_on_owner_only_pdf_keeps_its_encryption(tmp_path):
    path = tmp_path / "w.pdf"
    src = encrypted_pdf("AES-128", "", OWNER)
    path.write_bytes(src)
    write_optout(path, policy=TrainingPolicy.from_lists(deny=["ai-training"]), in_place=True)
    assert encrypt_entry(path.read_bytes()) == encrypt_entry(src)
    assert training_allowed(path).status == Training.NOT_ALLOWED and path.read_bytes().startswith(src)
    locked = tmp_path / "locked.pdf"
    locked.write_bytes(encrypted_pdf("AES-128", USER, OWNER))
    with pytest.raises(CorruptInput, match="give its password"):  # no password option: refused, not decrypted
        write_optout(locked, policy=TrainingPolicy.from_lists(deny=["ai-training"]), in_place=True)


def test_the_c2pa_library_cannot_embed_into_an_encrypted_pdf(signer):
    """Why C2PA is skipped (if a later c2pa-python can do it, this fails: then sign instead of skipping)."""
    with pytest.raises(SigningError, match="embedding error"):
        c2pa_layer.sign(encrypted_pdf("AES-256", USER, OWNER), "application/pdf", signer, label_claims=None)
    # an owner-only PDF is signed, but written out decrypted: less protected than its input
    out = c2pa_layer.sign(encrypted_pdf("AES-256", "", OWNER), "application/pdf", signer, label_claims=None)
    assert not pypdf.PdfReader(io.BytesIO(out)).is_encrypted


@pytest.mark.parametrize("algorithm", ["AES-256", "AES-128", "RC4-40"])
def test_full_copy_keeps_the_encryption(algorithm):
    """The fallback for a file that takes no incremental update: a full copy under the same dictionary, ID and key."""
    from kzlabel.formats.pdf_crypt import keep_encryption

    src = encrypted_pdf(algorithm, USER, OWNER)
    reader = pypdf.PdfReader(io.BytesIO(src))
    reader.decrypt(USER)
    writer = pypdf.PdfWriter(clone_from=reader)
    keep_encryption(writer, reader)
    buf = io.BytesIO()
    writer.write(buf)
    assert encrypt_entry(buf.getvalue()) == encrypt_entry(src) and not buf.getvalue().startswith(src)
    copy = pypdf.PdfReader(io.BytesIO(buf.getvalue()))
    assert copy.decrypt(OWNER) == pypdf.PasswordType.OWNER_PASSWORD
    assert "Body text of page 2" in copy.pages[1].extract_text()
