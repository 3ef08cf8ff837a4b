"""What the label and the C2PA manifest add to a file (issue 20): the manifest's copy of the label is its JWS's JSON
text, not the compact form again (docs/label-format.md#jws-envelope), a still's warning thumbnail is zlib + base64,
not hex, and an MP3's XMP no longer repeats the token its ID3 tag holds. Labels written before in the older forms
(fixtures/legacy/, and a hex thumbnail written here as before) verify as they did."""

from __future__ import annotations

import base64
import io
import json
import zlib
from pathlib import Path

import c2pa
import pytest
from mutagen.id3 import ID3
from PIL import Image, ImageDraw

from kzlabel import Labeler, Verdict, formats
from kzlabel.containers import riff
from kzlabel.formats.audio.tags import read_tags, write_tags
from kzlabel.io import Input
from kzlabel.label import token_claims, token_from_claims, verify_token
from kzlabel.layers import visible
from kzlabel.layers.metadata import xmp_values
from kzlabel.report import Status

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
# poster.webp (8.5 KB, 0.06 Mpx: the smallest bundled still) marked with a fixed content id (no watermark: below its
# floor, so the bytes vary only with the signer's certificate): the XMP and C2PA chunks measured 6,589 + 7,206 B with
# a key like the tests' (organization "Test Owner LLP"), 7,914 + 9,924 B on main before (the manifest repeating the
# compact token, the warning's thumbnail in hex); the margin covers another key's serial number and validity
CARRIERS_MAX = 14_200
CONTENT_ID = "5a17c0ffee2b9d41"


@pytest.fixture(scope="module")
def poster(signer, trust, tmp_path_factory) -> tuple[bytes, str]:
    lab = Labeler(signer, owner="Test Owner LLP", system="GenModel 2", trust=trust)
    dst = tmp_path_factory.mktemp("size") / "poster.webp"
    res = lab.mark(FIXTURES / "samples/poster.webp", dst, label=lab.new_label().replace(content_id=CONTENT_ID))
    assert {"metadata", "c2pa"} <= set(res.layers), res.skipped
    return dst.read_bytes(), res.token


def _assertion(data: bytes, mime: str) -> dict:
    with c2pa.Reader(mime, io.BytesIO(data)) as reader:
        store = json.loads(reader.json())
    manifest = store["manifests"][store["active_manifest"]]
    (found,) = [a["data"] for a in manifest["assertions"] if a["label"] == "kz.kzlabel.label"]
    return found


def test_the_manifest_carries_the_label_once_as_json_text_within_the_size_bound(poster):
    data, token = poster
    assert data.count(token.encode()) == 1  # in the XMP only
    claims = _assertion(data, "image/webp")
    assert set(claims) == {"header", "payload", "signature"}
    assert json.loads(claims["payload"])["content_id"] == CONTENT_ID
    assert token_from_claims(claims) == token
    sizes = {c.kind: c.size for c in riff.chunks(io.BytesIO(data))}
    assert sizes[b"XMP "] + sizes[b"C2PA"] <= CARRIERS_MAX, sizes


def test_the_manifest_copy_alone_names_the_same_trusted_signer(poster, trust):
    """XMP removed (a tool's strip keeps the C2PA chunk): the label is read from the manifest and checked as the XMP
    copy is, the same signer chaining to the same trust anchor."""
    data, _ = poster
    full = Labeler(trust=trust).verify(data, name="poster.webp")
    out = io.BytesIO()
    out.write(data[:12])
    for chunk in riff.chunks(io.BytesIO(data)):
        if chunk.kind != b"XMP ":
            out.write(data[chunk.start : chunk.start + 8 + chunk.size + chunk.size % 2])
    stripped = bytearray(out.getvalue())
    stripped[4:8] = (len(stripped) - 8).to_bytes(4, "little")
    stripped[20] &= ~0x04  # VP8X: no XMP chunk any more
    report = Labeler(trust=trust).verify(bytes(stripped), name="poster.webp")
    line = report.layer("metadata")
    assert line.status == Status.TRUSTED and line.data["carriers"] == ["c2pa:kz.kzlabel.label"], report.evidence
    assert line.data["signer"] == full.layer("metadata").data["signer"]
    assert report.verdict == full.verdict == Verdict.COMPLIANT, report.evidence


def test_a_changed_manifest_copy_does_not_verify(poster):
    data, token = poster
    claims = token_claims(token)
    assert verify_token(token_from_claims(claims)).status == "valid"
    payload = json.loads(claims["payload"])
    changed = dict(claims, payload=json.dumps(payload | {"owner": "Someone Else"}, sort_keys=True))
    assert verify_token(token_from_claims(changed)).status == "invalid"
    header = json.loads(claims["header"])
    assert verify_token(token_from_claims(dict(claims, header=json.dumps(header | {"x5c": []})))).status == "invalid"
    assert token_from_claims({"payload": claims["payload"]}) is None


@pytest.mark.parametrize("name", ["kz-animation-1.gif", "kz-video-1.mp4"])
def test_a_manifest_holding_the_compact_token_verifies_as_before(name):
    """Manifests written before 2026-12-06 hold ``{"token": <compact JWS>}``: still read, and it checks."""
    data = (FIXTURES / "legacy" / name).read_bytes()
    assert set(_assertion(data, "image/gif" if name.endswith(".gif") else "video/mp4")) == {"token"}
    report = Labeler().verify(data, name=name)
    line = report.layer("metadata")
    assert line.status == Status.VALID and "c2pa:kz.kzlabel.label" in line.data["carriers"], report.evidence
    assert report.verdict == Verdict.COMPLIANT, report.evidence


def test_an_mp3_xmp_packet_leaves_the_token_to_its_txxx_frame():
    """The XMP in the ID3 tag keeps the fields exiftool names (DigitalSourceType, AIGC) but not the token, which
    TXXX:kzlabel of the same tag holds; an MP3 labelled before (its XMP repeating the token) loses the stale copy when
    it is labelled again."""
    old = (FIXTURES / "legacy/kz-audio-1.mp3").read_bytes()

    def xmp(data: bytes) -> dict[str, str]:
        (frame,) = ID3(io.BytesIO(data)).getall("PRIV:XMP")
        return xmp_values(bytes(frame.data))

    assert "kzlabel:Label" in xmp(old)
    values = {("Iptc4xmpExt", "DigitalSourceType"): "uri", ("kzlabel", "Label"): "new.tok.en"}
    again = write_tags(old, {"kzlabel": "new.tok.en"}, values)
    assert read_tags(again)["kzlabel"] == "new.tok.en"
    assert xmp(again).get("Iptc4xmpExt:DigitalSourceType") == "uri" and "kzlabel:Label" not in xmp(again)


@pytest.mark.parametrize("form", ["thumb_z", "thumb"])
def test_the_warning_thumbnail_in_either_form_finds_the_warning_and_not_its_painted_over_copy(
    form, signer, trust, monkeypatch
):
    """A still's warning record holds its thumbnail as ``thumb_z`` (zlib, base64); labels written before 2026-12-06
    hold ``thumb`` (hex, twice the bytes). Both find the warning and miss it once it is painted over."""
    packed = visible.fingerprint
    if form == "thumb":
        raw = lambda image, box: zlib.decompress(base64.b64decode(packed(image, box)["thumb_z"]))  # noqa: E731
        monkeypatch.setattr(visible, "fingerprint", lambda image, box: {"thumb": raw(image, box).hex()})
    lab = Labeler(signer, owner="Test Owner LLP", system="GenModel 2", trust=trust)
    marked = lab.mark(FIXTURES / "samples/poster.webp", label=lab.new_label().replace(content_id=CONTENT_ID)).data
    monkeypatch.undo()
    report = Labeler(trust=trust).verify(marked, name="poster.webp")
    assert report.label is not None and set(report.label.warning) & {"thumb", "thumb_z"} == {form}
    assert report.verdict == Verdict.COMPLIANT and report.layer("visible").status == Status.FOUND, report.evidence
    with Image.open(io.BytesIO(marked)) as im:
        picture = im.convert("RGB")
    fx, fy, fw, fh = report.label.warning["box"]
    w, h = picture.size
    ImageDraw.Draw(picture).rectangle((fx * w, fy * h, (fx + fw) * w, (fy + fh) * h), fill=(120, 130, 110))
    buf = io.BytesIO()
    picture.save(buf, "PNG")
    handler = formats.detect(Input(marked))
    painted = formats.detect(Input(buf.getvalue())).put_xmp(buf.getvalue(), handler.get_xmp(marked))
    assert Labeler(trust=trust).verify(painted, name="p.png").layer("visible").status != Status.FOUND
