"""The C2PA layer: sign PNG/JPEG, read back valid / trusted / untrusted / invalid, ingredients, assertions, exiftool."""

from __future__ import annotations

import io
import struct
import subprocess
import threading
from pathlib import Path

import pytest
from PIL import Image

from kzlabel.errors import SigningError, UnsupportedFormat
from kzlabel.keys import Signer, TrustStore, generate
from kzlabel.layers import c2pa as layer

TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJ4IjoxfQ.c2ln"
COMPOSITE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"


def _image(fmt: str, size=(48, 32)) -> bytes:
    im = Image.new("RGB", size)
    im.putdata([((x * 5) % 256, (y * 7) % 256, (x * y) % 256) for y in range(size[1]) for x in range(size[0])])
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def png() -> bytes:
    return _image("PNG")


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    return _image("JPEG")


@pytest.fixture(scope="module")
def signed_png(png: bytes, signer: Signer) -> bytes:
    return layer.sign(png, "image/png", signer, label_claims={"token": TOKEN}, title="out.png")


@pytest.fixture(scope="module")
def signed_jpeg(jpeg: bytes, signer: Signer) -> bytes:
    return layer.sign(
        jpeg,
        "image/jpeg",
        signer,
        label_claims={"token": TOKEN},
        soft_binding={"alg": "kz.kzlabel.wm.1", "value": "0123456789abcdef"},
        training="notAllowed",
    )


def test_supported_mime_types() -> None:
    types = layer.supported_mime_types()
    assert {"image/jpeg", "image/png"} <= types
    assert layer.supported_mime_types() is types  # cached


def test_absent(png: bytes) -> None:
    rep = layer.read(png, "image/png")
    assert not rep.present and rep.state == "absent" and rep.manifest is None


def test_sign_png_valid_untrusted_without_anchors(signed_png: bytes) -> None:
    rep = layer.read(signed_png, "image/png")
    assert rep.present and rep.state == "valid", rep.codes
    assert "signingCredential.untrusted" in rep.codes
    assert rep.label_token == TOKEN
    assert rep.actions[0] == "c2pa.created"
    assert rep.source_type == layer.TRAINED_ALGORITHMIC_MEDIA_URI
    gen = rep.manifest["claim_generator_info"][0]
    assert gen["name"] == "kzlabel" and gen["version"]
    assert rep.manifest.get("title") == "out.png"
    assert "thumbnail" not in rep.manifest  # thumbnails are off by default


def test_trusted_with_own_ca(signed_png: bytes, signed_jpeg: bytes, trust: TrustStore) -> None:
    for data, mime in ((signed_png, "image/png"), (signed_jpeg, "image/jpeg")):
        rep = layer.read(data, mime, trust)
        assert rep.state == "trusted", rep.codes
        assert "signingCredential.trusted" in rep.codes


def test_other_ca_is_valid_not_trusted(signed_png: bytes, other_trust: TrustStore, trust: TrustStore) -> None:
    rep = layer.read(signed_png, "image/png", other_trust)
    assert rep.state == "valid" and "signingCredential.untrusted" in rep.codes
    # no leakage between calls: the trusted store works again right after, and the other one still does not
    assert layer.read(signed_png, "image/png", trust).state == "trusted"
    assert layer.read(signed_png, "image/png", other_trust).state == "valid"
    assert layer.read(signed_png, "image/png").state == "valid"


def test_concurrent_reads_with_different_trust(signed_png: bytes, trust: TrustStore, other_trust: TrustStore) -> None:
    results: dict[int, list[str]] = {}

    def work(i: int) -> None:
        store = trust if i % 2 == 0 else other_trust
        results[i] = [layer.read(signed_png, "image/png", store).state for _ in range(5)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, states in results.items():
        assert set(states) == ({"trusted"} if i % 2 == 0 else {"valid"})


def _png_chunks(data: bytes):
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        yield pos, data[pos + 4 : pos + 8], length
        pos += 12 + length


def test_pixel_edit_is_invalid_with_hash_mismatch(signed_png: bytes, trust: TrustStore) -> None:
    pos, _, length = next(c for c in _png_chunks(signed_png) if c[1] == b"IDAT")
    i = pos + 8 + length // 2
    tampered = bytearray(signed_png)
    tampered[i] ^= 0x01  # flip a bit inside the compressed image data; CRC left as is
    rep = layer.read(bytes(tampered), "image/png", trust)
    assert rep.present and rep.state == "invalid"
    assert any("dataHash.mismatch" in c for c in rep.codes), rep.codes


def test_jpeg_soft_binding_and_training(signed_jpeg: bytes) -> None:
    rep = layer.read(signed_jpeg, "image/jpeg")
    assert rep.state == "valid"
    assert rep.actions == ["c2pa.created", "c2pa.watermarked"]
    assert rep.soft_binding["alg"] == "kz.kzlabel.wm.1"
    assert rep.soft_binding["blocks"] == [{"scope": {}, "value": "0123456789abcdef"}]
    assert rep.soft_binding["value"] == "0123456789abcdef"
    assert rep.training == {
        "cawg.ai_generative_training": {"use": "notAllowed"},
        "cawg.ai_training": {"use": "notAllowed"},
        "cawg.ai_inference": {"use": "notAllowed"},
        "cawg.data_mining": {"use": "notAllowed"},
    }
    labels = [a["label"] for a in rep.manifest["assertions"]]
    assert {"c2pa.soft-binding", "cawg.training-mining", "kz.kzlabel.label"} <= set(labels)


def test_resign_keeps_old_manifest_as_ingredient(signed_jpeg: bytes, other_keydir: Path, trust: TrustStore) -> None:
    other = Signer.load(other_keydir)
    again = layer.sign(signed_jpeg, "image/jpeg", other, label_claims={"token": "second"}, title="edit.jpg")
    rep = layer.read(again, "image/jpeg", TrustStore.load([other_keydir]))
    assert rep.state == "trusted", rep.codes
    assert rep.actions[:2] == ["c2pa.opened", "c2pa.edited"]
    assert rep.source_type == COMPOSITE
    assert rep.label_token == "second"
    parents = [i for i in rep.ingredients if i.get("relationship") == "parentOf"]
    assert len(parents) == 1
    old = layer.read(signed_jpeg, "image/jpeg")
    assert parents[0].get("active_manifest") == _active_label(signed_jpeg)
    assert old.manifest is not None
    # the old manifest is still in the store
    import c2pa

    with c2pa.Reader("image/jpeg", io.BytesIO(again)) as r:
        import json

        store = json.loads(r.json())
    assert _active_label(signed_jpeg) in store["manifests"]


def _active_label(data: bytes) -> str:
    import json

    import c2pa

    with c2pa.Reader("image/jpeg", io.BytesIO(data)) as r:
        return json.loads(r.json())["active_manifest"]


def test_broken_manifest_reads_invalid_and_resigns(signed_jpeg: bytes, signer: Signer) -> None:
    # corrupt one byte inside the APP11 (JUMBF) segment: the old manifest can no longer be read
    i = signed_jpeg.index(b"\xff\xeb")
    j = signed_jpeg.index(b"c2pa.actions", i) + 4
    broken = bytearray(signed_jpeg)
    broken[j] ^= 0x20
    rep = layer.read(bytes(broken), "image/jpeg")
    assert rep.present and rep.state == "invalid" and rep.codes
    out = layer.sign(bytes(broken), "image/jpeg", signer, label_claims={"token": "new"})
    rep = layer.read(out, "image/jpeg")
    assert rep.state == "valid" and rep.label_token == "new"
    assert rep.actions[0] == "c2pa.opened"
    parent = [i for i in rep.ingredients if i.get("relationship") == "parentOf"]
    assert len(parent) == 1 and "damaged" in parent[0].get("description", "")


def test_thumbnail_option(png: bytes, signer: Signer) -> None:
    out = layer.sign(png, "image/png", signer, label_claims={"token": TOKEN}, thumbnail=True)
    rep = layer.read(out, "image/png")
    assert rep.state == "valid" and "thumbnail" in rep.manifest


def test_es256_signer(png: bytes, tmp_path: Path) -> None:
    generate(tmp_path, alg="es256")
    s = Signer.load(tmp_path)
    out = layer.sign(png, "image/png", s, label_claims={"token": TOKEN})
    rep = layer.read(out, "image/png", TrustStore.load(tmp_path))
    assert rep.state == "trusted", rep.codes
    assert rep.manifest["signature_info"]["alg"].upper() == "ES256"


def test_errors_are_kzlabel_errors(png: bytes, signer: Signer) -> None:
    with pytest.raises(UnsupportedFormat):
        layer.sign(b"hello", "text/x-nothing", signer, label_claims={})
    with pytest.raises(UnsupportedFormat):
        layer.read(b"hello", "text/x-nothing")
    with pytest.raises(SigningError):
        layer.sign(png, "image/png", signer, label_claims={}, training="maybe")
    with pytest.raises(SigningError):
        layer.sign(b"\x89PNG\r\n\x1a\nnot really a png", "image/png", signer, label_claims={})
    rep = layer.read(b"\x89PNG\r\n\x1a\nnot really a png", "image/png")
    assert rep.state == "absent" and not rep.present and rep.detail


def test_exiftool_sees_jumbf(signed_jpeg: bytes, tmp_path: Path) -> None:
    f = tmp_path / "signed.jpg"
    f.write_bytes(signed_jpeg)
    out = subprocess.run(["exiftool", "-a", "-G1", str(f)], capture_output=True, text=True, timeout=60).stdout
    assert "JUMBF" in out
    assert "c2pa" in out.lower()


# --- sidecar manifests: types the C2PA library cannot embed into (Ogg, WebM, MKV) ---------------------------------
def _ogg(tmp_path: Path) -> Path:
    path = tmp_path / "in.ogg"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "anoisesrc=d=4:c=pink:a=0.2", "-ac", "2",
                    "-c:a", "libopus", "-b:a", "64k", str(path)], check=True)
    return path


def test_sidecar_written_read_and_bound_to_the_file(tmp_path: Path, signer: Signer, trust: TrustStore) -> None:
    import c2pa

    import kzlabel

    src = _ogg(tmp_path)
    dst = tmp_path / "out.ogg"
    res = kzlabel.Labeler(signer, owner="O", system="S", trust=trust).mark(src, dst)
    side = tmp_path / "out.ogg.c2pa"
    assert "c2pa" in res.layers and "c2pa" not in res.skipped and side.read_bytes() == res.c2pa_sidecar
    # the reference reader validates the sidecar against the file's bytes (hard binding over the whole file)
    reader = c2pa.Reader.try_create("audio/ogg", io.BytesIO(dst.read_bytes()), side.read_bytes())
    assert reader is not None and reader.get_validation_state().lower() in ("valid", "trusted")
    reader.close()
    ev = {e.layer: e for e in kzlabel.verify(dst, trust=trust).evidence}
    assert ev["c2pa"].status == kzlabel.Status.TRUSTED and ev["c2pa"].data["sidecar"] == side.name

    data = bytearray(dst.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of audio changed after signing
    bad = tmp_path / "bad.ogg"
    bad.write_bytes(bytes(data))
    (tmp_path / "bad.ogg.c2pa").write_bytes(side.read_bytes())
    rep = kzlabel.verify(bad, trust=trust)
    assert rep.layer("c2pa").status == kzlabel.Status.INVALID and "dataHash.mismatch" in rep.layer("c2pa").detail

    side.unlink()  # without its sidecar the file still carries its own labels, but no manifest
    rep = kzlabel.verify(dst, trust=trust)
    assert rep.layer("c2pa").status == kzlabel.Status.ABSENT and rep.verdict == kzlabel.Verdict.COMPLIANT


def test_sidecar_without_a_destination_path_is_returned_not_claimed(tmp_path: Path, signer: Signer) -> None:
    import kzlabel

    res = kzlabel.Labeler(signer, owner="O", system="S").mark(_ogg(tmp_path).read_bytes())
    assert "c2pa" not in res.layers and "sidecar" in res.skipped["c2pa"]
    assert res.c2pa_sidecar and b"c2pa" in res.c2pa_sidecar
    assert not list(tmp_path.glob("*.c2pa"))
