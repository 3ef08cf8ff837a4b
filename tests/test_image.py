"""Images end to end: every format and colour mode, exiftool and the c2pa Reader as independent readers,
stripping, tampering, the visible warning, and bad input."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from kzlabel import Labeler, Registry, Report, Training, Verdict
from kzlabel.errors import CorruptInput, KzlabelError, LimitExceeded, UnsupportedFormat
from kzlabel.formats.image import estimate_jpeg_quality
from kzlabel.layers import visible
from kzlabel.rights.actions import training_allowed, write_optout
from kzlabel.rights.vocab import TrainingPolicy


def natural(h=600, w=800, seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.random((h, w, 3)) * 255, (4, 4, 0))
    edges = (np.indices((h, w)).sum(axis=0) // 37 % 2 * 40)[..., None]
    return np.clip(base + edges + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)


def encode(arr: np.ndarray, fmt: str, mode: str = "RGB", **params) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, fmt, **params)
    return buf.getvalue()


def exif_tags(data: bytes, tmp_path, suffix: str) -> dict:
    path = tmp_path / f"probe{suffix}"
    path.write_bytes(data)
    out = subprocess.run(["exiftool", "-j", "-a", "-G1", "-struct", str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


@pytest.fixture
def lab(signer, trust):
    return Labeler(signer, owner="ТОО Сурет", system="ImgGen", system_version="4.1", trust=trust)


CASES = [("PNG", "RGB", ".png"), ("PNG", "RGBA", ".png"), ("PNG", "L", ".png"), ("PNG", "P", ".png"),
         ("JPEG", "RGB", ".jpg"), ("JPEG", "L", ".jpg"), ("JPEG", "CMYK", ".jpg"), ("WEBP", "RGB", ".webp"),
         ("TIFF", "RGB", ".tif"), ("GIF", "P", ".gif")]


@pytest.mark.parametrize("fmt,mode,suffix", CASES, ids=[f"{f}-{m}" for f, m, _ in CASES])
def test_round_trip_all_layers_with_independent_readers(lab, tmp_path, fmt, mode, suffix):
    src = encode(natural(), fmt, mode)
    result = lab.mark(src, name="in" + suffix)
    assert set(result.layers) == {"visible", "watermark", "metadata", "c2pa"}, result.skipped
    out = Image.open(io.BytesIO(result.data))
    assert out.mode == Image.open(io.BytesIO(src)).mode and out.size == (800, 600)
    report = lab.verify(result.data, name="out" + suffix)
    assert report.verdict == Verdict.COMPLIANT, str(report)
    assert {e.layer: e.status.value for e in report.evidence} == {
        "c2pa": "trusted", "metadata": "trusted", "watermark": "found", "visible": "found"}
    tags = exif_tags(result.data, tmp_path, suffix)
    assert tags["XMP-iptcExt:DigitalSourceType"] == "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    assert tags["XMP-iptcExt:AISystemUsed"] == "ImgGen" and str(tags["XMP-iptcExt:AISystemVersionUsed"]) == "4.1"
    assert json.loads(tags["XMP-TC260:Aigc"])["ProduceID"] == result.label.content_id
    if fmt in ("JPEG", "PNG"):  # exiftool 12.x parses JUMBF in JPEG APP11 and PNG caBX (not yet WebP/TIFF/GIF)
        assert any(k.startswith("JUMBF:") for k in tags), "exiftool sees the C2PA JUMBF store"


def test_jpeg_keeps_quality_subsampling_icc_exif_and_writes_user_comment(lab, tmp_path):
    import piexif

    exif = piexif.dump({"0th": {piexif.ImageIFD.Make: b"Cam", piexif.ImageIFD.Orientation: 1}, "Exif": {}})
    icc = Image.core.__dict__.get("ImageCms") and None
    src = encode(natural(), "JPEG", quality=83, subsampling=1, exif=exif)
    data = lab.mark(src, name="x.jpg").data
    im = Image.open(io.BytesIO(data))
    assert estimate_jpeg_quality(im.quantization) == 83
    from PIL import JpegImagePlugin

    assert JpegImagePlugin.get_sampling(im) == 1
    assert piexif.load(data)["0th"][piexif.ImageIFD.Make] == b"Cam"
    tags = exif_tags(data, tmp_path, ".jpg")
    assert json.loads(tags["ExifIFD:UserComment"])["AIGC"]["Label"] == "1"
    assert icc is None


# a source's own XMP packet (a title) that marking must keep
SUNSET_XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title><rdf:Alt>'
              b'<rdf:li xml:lang="x-default">Sunset</rdf:li></rdf:Alt></dc:title></rdf:Description></rdf:RDF></x:xmpmeta>')


def _remark_keeps_xmp(lab, once: bytes, name: str, tmp_path) -> tuple[bytes, Report]:
    """Mark ``once`` (already marked, from a SUNSET_XMP source) again: the title survives, the label's XMP property
    is not duplicated, and the result verifies compliant. Returns the twice-marked bytes and their report."""
    twice = lab.mark(once, name=name).data
    tags = exif_tags(twice, tmp_path, Path(name).suffix)
    assert tags["XMP-dc:Title"] == "Sunset"
    assert twice.count(b"DigitalSourceType>") == 2  # one open + one close tag: a single property
    report = lab.verify(twice, name=name)
    assert report.verdict == Verdict.COMPLIANT
    return twice, report


def test_existing_xmp_is_merged_and_marking_twice_does_not_duplicate(lab, tmp_path):
    once = lab.mark(encode(natural(), "JPEG", xmp=SUNSET_XMP), name="x.jpg").data
    _, report = _remark_keeps_xmp(lab, once, "x.jpg", tmp_path)
    assert "c2pa.opened" in report.layer("c2pa").data["actions"]  # the earlier manifest is kept as ingredient


def test_exiftool_strip_leaves_watermark_and_registry_recovers(signer, trust, tmp_path):
    if shutil.which("exiftool") is None:
        pytest.fail("exiftool is required (installed by scripts/setup.sh)")
    reg = Registry.open(tmp_path / "r.sqlite")
    lab = Labeler(signer, owner="ТОО Сурет", system="ImgGen", trust=trust, registry=reg)
    result = lab.mark(encode(natural(), "JPEG", quality=90), tmp_path / "m.jpg")
    subprocess.run(["exiftool", "-q", "-all=", "-overwrite_original", str(tmp_path / "m.jpg")], check=True)
    report = lab.verify(tmp_path / "m.jpg")
    assert report.layer("c2pa").status.value == "absent" and report.layer("metadata").status.value == "absent"
    assert report.verdict == Verdict.STRIPPED
    assert report.recovered and report.label.owner == "ТОО Сурет"
    assert report.label.content_id == result.label.content_id


def test_pixel_edit_after_signing_is_tampered(lab):
    data = lab.mark(encode(natural(), "PNG"), name="x.png").data
    im = Image.open(io.BytesIO(data))
    im.load()
    ImageDraw.Draw(im).rectangle([300, 100, 340, 140], fill=(255, 0, 0))
    # re-insert the original metadata and manifest bytes around edited pixels: keep every chunk but the IDAT data
    edited = io.BytesIO()
    im.save(edited, "PNG")
    from kzlabel.containers import png

    chunks = png.chunks(data)
    new_idat = b"".join(edited.getvalue()[s:e] for c, s, e in png.chunks(edited.getvalue()) if c == b"IDAT")
    out, placed = [data[:8]], False
    for c, s, e in chunks:
        if c == b"IDAT":
            if not placed:
                out.append(new_idat)
                placed = True
            continue
        out.append(data[s:e])
    report = lab.verify(b"".join(out), name="x.png")
    assert report.layer("c2pa").status.value == "invalid"
    assert report.verdict == Verdict.TAMPERED


def test_painted_over_warning_is_absent(signer, trust):
    lab = Labeler(signer, owner="O", system="S", trust=trust, layers=["visible", "metadata"])
    data = lab.mark(encode(natural(), "PNG"), name="x.png").data
    im = Image.open(io.BytesIO(data)).convert("RGB")
    box = json.loads(lab.verify(data, name="x.png").to_json())["label"]["warning"]["box"]
    x, y, w, h = box[0] * 800, box[1] * 600, box[2] * 800, box[3] * 600
    patch = Image.fromarray(natural(seed=7)).crop((int(x), int(y), int(x + w), int(y + h)))
    im.paste(patch, (int(x), int(y)))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    from kzlabel.containers import png
    from kzlabel.formats.image import Png
    from kzlabel.layers.metadata import merge_xmp

    repainted = Png().put_xmp(buf.getvalue(), merge_xmp(png.get_xmp(data), {}, ()))
    report = lab.verify(repainted, name="x.png")
    assert report.layer("visible").status.value == "absent"
    assert report.verdict == Verdict.MACHINE_READABLE_ONLY


def test_warning_survives_recompression_and_resize(signer, trust):
    lab = Labeler(signer, owner="O", system="S", trust=trust, layers=["visible", "metadata"])
    data = lab.mark(encode(natural(), "PNG"), name="x.png").data
    from kzlabel.containers import png
    from kzlabel.layers.metadata import merge_xmp

    small = Image.open(io.BytesIO(data)).convert("RGB").resize((400, 300), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, "PNG")
    from kzlabel.formats.image import Png

    resized = Png().put_xmp(buf.getvalue(), merge_xmp(png.get_xmp(data), {}, ()))
    assert lab.verify(resized, name="x.png").layer("visible").status.value == "found"


def test_warning_height_and_kazakh_glyphs():
    from PIL import ImageFont

    from kzlabel import Label

    label = Label.create(owner="O", system="S")
    for w, h in [(64, 64), (1920, 1080), (300, 1200)]:
        _, place = visible.render(label, w, h)
        assert place.text_height >= 0.05 * min(w, h)
        x, y, bw, bh = place.box
        assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h
    font = ImageFont.truetype(str(visible.FONT_PATH), 40)

    def glyph(ch: str) -> np.ndarray:
        img = Image.new("L", (64, 64))
        ImageDraw.Draw(img).text((8, 4), ch, font=font, fill=255)
        return np.asarray(img)

    missing = glyph("\U0010fffd")
    alphabet = "АӘБВГҒДЕЁЖЗИЙКҚЛМНҢОӨПРСТУҰҮФХҺЦЧШЩЪЫІЬЭЮЯ"
    for ch in alphabet + alphabet.lower():
        g = glyph(ch)
        assert g.any() and not np.array_equal(g, missing), f"{ch!r} renders as the missing glyph"


def test_exif_orientation_warning_drawn_in_displayed_corner(signer, trust):
    import piexif

    arr = np.full((400, 600, 3), 200, np.uint8)
    exif = piexif.dump({"0th": {piexif.ImageIFD.Orientation: 6}})  # displayed rotated 90° clockwise
    src = encode(arr, "JPEG", exif=exif, quality=95)
    data = Labeler(signer, owner="O", system="S", layers=["visible"]).mark(src, name="x.jpg").data
    from PIL import ImageOps

    shown = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("L"), dtype=np.int16)
    h, w = shown.shape  # 600 × 400 as displayed
    assert (h, w) == (600, 400)
    assert shown[int(h * 0.9):, : w // 3].mean() < 150  # the dark plate sits bottom-left of the displayed image
    assert shown[: h // 4, w // 2 :].mean() > 190


def test_icon_style_top_right(signer):
    data = Labeler(signer, owner="O", system="S", layers=["visible"], style="icon").mark(
        encode(np.full((300, 400, 3), 230, np.uint8), "PNG"), name="x.png").data
    grey = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.int16)
    assert grey[:60, -60:].mean() < 150 and grey[-60:, :60].mean() > 220


def test_tiny_images_and_capacity(lab):
    result = lab.mark(encode(natural(64, 64), "PNG"), name="t.png")
    assert "visible" in result.layers and "too small" in result.skipped["watermark"]
    assert lab.verify(result.data, name="t.png").verdict == Verdict.COMPLIANT
    one = lab.mark(encode(natural(1, 1), "PNG"), name="one.png")
    assert "visible" not in one.layers and "metadata" in one.layers


def test_bad_inputs(lab, tmp_path):
    png = encode(natural(), "PNG")
    with pytest.raises(CorruptInput):
        lab.mark(png[: len(png) // 2], name="x.png")
    with pytest.raises(CorruptInput):
        lab.mark(b"", name="x.png")
    # a PNG header claiming 30000×30000: refused from the header, before any pixel is decoded
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")
    with pytest.raises(LimitExceeded):
        lab.mark(bomb, name="big.png")
    frames = [Image.fromarray(natural(64, 64, s)) for s in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedFormat, match="animated"):  # pages, not frames: refused, never flattened
        lab.mark(buf.getvalue(), name="a.tiff")
    # wrong extension: content decides
    assert lab.mark(png, name="photo.jpg").format == "png"
    dst = tmp_path / "out.png"
    with pytest.raises(KzlabelError):
        lab.mark(png[:100], dst)
    assert not dst.exists()


def test_corrupt_existing_xmp_is_replaced_not_fatal(lab):
    from kzlabel.containers import jpeg

    src = jpeg.put_xmp(encode(natural(), "JPEG"), b"<x:xmpmeta><broken")
    assert lab.verify(lab.mark(src, name="x.jpg").data, name="x.jpg").verdict == Verdict.COMPLIANT


def test_optout_on_image(tmp_path):
    path = tmp_path / "w.png"
    path.write_bytes(encode(natural(), "PNG"))
    write_optout(path, policy=TrainingPolicy.from_lists(deny=["generative-training"]), in_place=True)
    check = training_allowed(path, use="ai_generative_training")
    assert check.status == Training.NOT_ALLOWED
    assert training_allowed(path, use="data_mining").status == Training.NOT_ALLOWED  # TDMRep reserves all TDM
    tags = exif_tags(path.read_bytes(), tmp_path, ".png")
    assert tags["XMP-plus:DataMining"]


def test_sixteen_bit_png_stays_sixteen_bit(lab, tmp_path):
    deep = (natural()[..., 0].astype(np.uint16) * 257 + np.arange(800, dtype=np.uint16)[None, :] % 200)
    buf = io.BytesIO()
    Image.fromarray(deep).save(buf, "PNG")
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I")
    result = lab.mark(buf.getvalue(), name="deep.png")
    out = Image.open(io.BytesIO(result.data))
    assert out.mode == Image.open(io.BytesIO(buf.getvalue())).mode
    arr = np.asarray(out).astype(np.int64)
    assert arr.max() > 255 and len(np.unique(arr[:100, -200:] % 257)) > 8  # still 16 significant bits
    report = lab.verify(result.data, name="deep.png")
    assert report.verdict == Verdict.COMPLIANT and report.layer("watermark").status.value == "found"
    assert exif_tags(result.data, tmp_path, ".png")["XMP-iptcExt:DigitalSourceType"].endswith("trainedAlgorithmicMedia")


def test_damaged_manifest_is_reported_and_kept_as_parent_on_remark(lab):
    data = lab.mark(encode(natural(), "JPEG"), name="x.jpg").data
    bad = bytearray(data)
    bad[data.find(b"c2pa.claim") + 200] ^= 0xFF  # break the claim inside the JUMBF store
    report = lab.verify(bytes(bad), name="x.jpg")
    assert report.layer("c2pa").status.value == "invalid" and report.verdict == Verdict.TAMPERED
    again = lab.mark(bytes(bad), name="x.jpg")  # re-labelling never drops the old (damaged) manifest silently
    report = lab.verify(again.data, name="x.jpg")
    assert report.verdict == Verdict.COMPLIANT
    assert report.layer("c2pa").data["actions"][0] == "c2pa.opened"


# --- AVIF and HEIF/HEIC ----------------------------------------------------------------------------------------------
def heic(arr: np.ndarray, **params) -> bytes:
    """A HEIC made by pillow-heif (the optional `heif` extra: the only HEVC encoder available to Python)."""
    from kzlabel.formats.image import heif_codec_available

    assert heif_codec_available(), "pillow-heif is required for the HEIF tests (pip install 'kzlabel[heif]')"
    return encode(arr, "HEIF", **params)


def c2pa_reader_state(data: bytes, mime: str) -> tuple[str, list[str]]:
    """validation_state and the active manifest's actions, straight from c2pa-python's Reader."""
    import c2pa

    with c2pa.Reader(mime, io.BytesIO(data)) as r:
        store = json.loads(r.json())
    active = store["manifests"][store["active_manifest"]]
    actions = [a["action"] for s in active["assertions"] if s["label"].startswith("c2pa.actions")
               for a in s["data"]["actions"]]
    return store.get("validation_state", ""), actions


HEIF_CASES = [("avif", ".avif", "image/avif"), ("heif", ".heic", "image/heic")]


@pytest.mark.slow
@pytest.mark.parametrize("fmt,suffix,mime", HEIF_CASES, ids=[c[0] for c in HEIF_CASES])
def test_avif_heif_round_trip_all_layers_with_independent_readers(lab, tmp_path, fmt, suffix, mime):
    src = encode(natural(), "AVIF", quality=80) if fmt == "avif" else heic(natural(), quality=80)
    result = lab.mark(src, name="in" + suffix)
    assert result.format == fmt
    assert set(result.layers) == {"visible", "watermark", "metadata", "c2pa"}, result.skipped
    out = Image.open(io.BytesIO(result.data))
    assert out.mode == "RGB" and out.size == (800, 600)
    report = lab.verify(result.data, name="out.bin")  # found by content, not by name
    assert report.verdict == Verdict.COMPLIANT, str(report)
    assert {e.layer: e.status.value for e in report.evidence} == {
        "c2pa": "trusted", "metadata": "trusted", "watermark": "found", "visible": "found"}
    # lossy re-encode at HEIF_FAMILY_QUALITY keeps the watermark far below the 1e-6 detection threshold
    assert report.layer("watermark").data["p_value"] < 1e-10
    tags = exif_tags(result.data, tmp_path, suffix)
    assert tags["XMP-iptcExt:DigitalSourceType"] == "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    assert json.loads(tags["XMP-TC260:Aigc"])["ProduceID"] == result.label.content_id
    state, actions = c2pa_reader_state(result.data, mime)
    assert state == "Valid" and actions[0] == "c2pa.created" and "c2pa.watermarked" in actions


def test_heif_family_xmp_item_added_then_replaced_without_touching_the_image(tmp_path):
    from kzlabel.containers import bmff

    exif = Image.Exif()
    exif[0x010F] = "Cam"
    exif[0x0112] = 6  # stored by AVIF as an irot property
    src = encode(natural(300, 400), "AVIF", exif=exif.tobytes())
    assert bmff.get_xmp(src) is None
    packet = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">' \
             b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title><rdf:Alt>' \
             b'<rdf:li xml:lang="x-default">First</rdf:li></rdf:Alt></dc:title></rdf:Description></rdf:RDF></x:xmpmeta>'
    once = bmff.put_xmp(src, packet)
    twice = bmff.put_xmp(once, packet.replace(b"First", b"Second"))
    meta = bmff.read_meta(twice)
    assert sorted(t for t, _ in meta.items.values()) == [b"Exif", b"av01", b"mime"]  # one XMP item, not two
    assert bmff.get_xmp(twice).count(b"Second") == 1 and b"First" not in twice
    pixels = np.asarray(Image.open(io.BytesIO(src)))
    for data in (once, twice):
        im = Image.open(io.BytesIO(data))
        assert np.array_equal(np.asarray(im), pixels)  # the coded image is copied, never re-encoded
        assert im.getexif()[0x010F] == "Cam" and im.getexif()[0x0112] == 6
    tags = exif_tags(twice, tmp_path, ".avif")
    assert tags["XMP-dc:Title"] == "Second" and tags["IFD0:Make"] == "Cam"


@pytest.mark.slow
def test_avif_keeps_alpha_subsampling_and_merges_xmp_on_remark(lab, tmp_path):
    from kzlabel.containers.bmff import av1_subsampling

    rgba = np.dstack([natural(), np.full((600, 800), 200, np.uint8)])
    src = encode(rgba, "AVIF", mode="RGBA", subsampling="4:4:4", xmp=SUNSET_XMP)
    once = lab.mark(src, name="x.avif").data
    out = Image.open(io.BytesIO(once))
    assert out.mode == "RGBA" and np.abs(np.asarray(out)[:300, :, 3].astype(int) - 200).max() <= 2  # away from the plate
    assert av1_subsampling(src) == av1_subsampling(once) == "4:4:4"
    twice, _ = _remark_keeps_xmp(lab, once, "x.avif", tmp_path)
    assert c2pa_reader_state(twice, "image/avif")[1][0] == "c2pa.opened"  # the first manifest is the parent


@pytest.mark.parametrize("mode,sub", [("L", "4:0:0"), ("RGB", "4:2:2")])
def test_avif_grey_and_422_keep_mode_and_subsampling(lab, mode, sub):
    from kzlabel.containers.bmff import av1_subsampling

    src = encode(natural(300, 400), "AVIF", mode=mode, subsampling=sub)
    data = lab.mark(src, name="x.avif").data
    assert Image.open(io.BytesIO(data)).mode == mode and av1_subsampling(data) == sub
    assert lab.verify(data, name="x.avif").verdict == Verdict.COMPLIANT


@pytest.mark.slow
def test_heif_is_read_only_without_pillow_heif(lab, tmp_path, monkeypatch):
    import kzlabel.formats.image.heif as image_mod

    result = lab.mark(heic(natural(), quality=80), name="x.heic")
    marked = result.data
    plain = heic(natural(300, 400))
    monkeypatch.setattr(image_mod, "heif_codec_available", lambda: False)
    with pytest.raises(UnsupportedFormat, match="read-only.*kzlabel\\[heif\\]"):
        lab.mark(marked, tmp_path / "never.heic")
    assert not (tmp_path / "never.heic").exists()
    report = lab.verify(marked, name="x.heic")
    status = {e.layer: e.status.value for e in report.evidence}
    assert status == {"c2pa": "trusted", "metadata": "trusted", "watermark": "unavailable", "visible": "unavailable"}
    assert report.label.content_id == result.label.content_id
    assert report.verdict == Verdict.MACHINE_READABLE_ONLY  # the warning cannot be checked without decoding
    # training opt-outs are XMP only: written and read back from the container without decoding a pixel
    path = tmp_path / "w.heic"
    path.write_bytes(plain)
    write_optout(path, policy=TrainingPolicy.from_lists(deny=["ai-training"]), in_place=True)
    assert training_allowed(path, use="ai_training").status == Training.NOT_ALLOWED
    assert exif_tags(path.read_bytes(), tmp_path, ".heic")["XMP-plus:DataMining"]


def test_avif_heif_detection_and_bad_input(lab, tmp_path):
    from kzlabel.formats import detect
    from kzlabel.io import Input

    avif = encode(natural(300, 400), "AVIF")
    assert detect(Input(avif, "clip.mp4")).id == "avif"  # the ftyp brand decides, not the name nor the MP4 handler
    # a generic major brand with avif among the compatible brands (what some encoders write)
    generic = avif[:8] + b"mif1" + avif[12:16] + b"avif" + avif[20:]
    assert detect(Input(generic)).id == "avif"
    assert detect(Input(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic")).id == "heif"
    assert lab.mark(encode(natural(300, 400), "PNG"), name="photo.avif").format == "png"
    for cut in (len(avif) // 2, len(avif) - 7, 200, 40):
        with pytest.raises(CorruptInput):
            lab.mark(avif[:cut], tmp_path / "t.avif")
        with pytest.raises(CorruptInput):
            lab.verify(avif[:cut], name="t.avif")
    assert not (tmp_path / "t.avif").exists()
    frames = [Image.fromarray(natural(64, 64, s)) for s in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "AVIF", save_all=True, append_images=frames[1:])
    assert buf.getvalue()[8:12] == b"avis"
    # a sequence is an animation now (tests/test_animated.py); too small for a watermark, the rest still applies
    res = lab.mark(buf.getvalue(), name="a.avif")
    assert "metadata" in res.layers and "watermark" in res.skipped
    assert Image.open(io.BytesIO(res.data)).n_frames == 3
