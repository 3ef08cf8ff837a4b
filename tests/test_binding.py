"""A media label binds the content a person sees: a container edit keeps the verdict the other layers earn (the C2PA
line says its hard binding broke), an edit of the picture is tampered, also when the manifest was hidden first, and a
benign re-encode or resize of the same picture is not. A JPEG byte flip that visibly damages the picture is an edit
(kz-picture-2's cell grid); labels with the older kz-picture-1 thumbnail still verify as they did."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from kzlabel import Labeler, TrustStore, Verdict, formats
from kzlabel.containers import jpeg as jpeg_container
from kzlabel.containers import png as png_container
from kzlabel.formats.image import base as image_base
from kzlabel.formats.image.binding import picture_binding, picture_matches
from kzlabel.io import Input

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from picture_v1 import picture_binding_v1


def _photo(width: int = 640, height: int = 480) -> Image.Image:
    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.dstack([x * 255 // width, y * 255 // height, (x + 2 * y) % 256]) + rng.integers(0, 16, (height, width, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


@pytest.fixture(scope="module")
def labeler(signer, trust: TrustStore) -> Labeler:
    return Labeler(signer, owner="O", system="S", trust=trust)


@pytest.fixture(scope="module")
def marked_png(labeler: Labeler) -> bytes:
    return labeler.mark(_encode(_photo(), "PNG"), name="x.png").data


def _painted(data: bytes, fmt: str) -> bytes:
    """The same file with a 64×64 patch of the picture painted over, its metadata chunks kept as they are."""
    image = Image.open(io.BytesIO(data))
    image.load()
    patch = Image.new("RGB", (64, 64), (250, 20, 200))
    edited = image.copy()
    edited.paste(patch, (300, 120))
    out = _encode(edited, fmt)
    if fmt == "PNG":  # carry every ancillary chunk (XMP, C2PA) over, as an editor that keeps metadata would
        kept = b"".join(
            data[s:e] for kind, s, e in png_container.chunks(data) if kind not in (b"IHDR", b"IDAT", b"IEND")
        )
        at = out.index(b"IDAT") - 4
        out = out[:at] + kept + out[at:]
    return out


def _hide_c2pa_chunk(data: bytes) -> bytes:
    """The PNG with its C2PA chunk renamed (CRC repaired), so no reader finds the manifest."""
    at = data.index(b"caBX") - 4
    (length,) = struct.unpack(">I", data[at : at + 4])
    body = data[at + 8 : at + 8 + length]
    chunk = struct.pack(">I", length) + b"caBY" + body + struct.pack(">I", zlib.crc32(b"caBY" + body))
    return data[:at] + chunk + data[at + 12 + length :]


def test_a_marked_picture_is_bound_exactly(labeler: Labeler, marked_png: bytes) -> None:
    report = labeler.verify(marked_png, name="x.png")
    assert report.verdict == Verdict.COMPLIANT
    assert report.label is not None and report.label.binding["alg"] == "kz-picture-2"


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_exiftool_stripping_metadata_is_not_tampering(labeler: Labeler, fmt: str, tmp_path: Path) -> None:
    exiftool = shutil.which("exiftool")
    assert exiftool, "exiftool is installed by scripts/setup.sh"
    name = f"x.{fmt.lower()}"
    path = tmp_path / name
    labeler.mark(_encode(_photo(), fmt, **({"quality": 90} if fmt == "WEBP" else {})), path)
    subprocess.run([exiftool, "-q", "-overwrite_original", "-all=", str(path)], check=True, timeout=60)
    report = labeler.verify(path)
    assert report.verdict == Verdict.COMPLIANT, str(report)  # the label in the manifest still binds the picture
    assert report.layer("c2pa").status.value == "unbound"
    assert "hard binding no longer matches" in report.layer("c2pa").detail


def test_editing_the_picture_is_tampering(labeler: Labeler, marked_png: bytes) -> None:
    report = labeler.verify(_painted(marked_png, "PNG"), name="x.png")
    assert report.verdict == Verdict.TAMPERED
    assert report.layer("c2pa").status.value == "invalid"
    assert report.layer("metadata").status.value == "invalid"
    assert "picture changed" in report.layer("metadata").detail


def test_hiding_the_manifest_then_editing_is_still_tampering(labeler: Labeler, marked_png: bytes) -> None:
    hidden = _hide_c2pa_chunk(marked_png)
    untouched = labeler.verify(hidden, name="x.png")
    assert untouched.layer("c2pa").status.value == "absent" and untouched.verdict == Verdict.COMPLIANT
    report = labeler.verify(_painted(hidden, "PNG"), name="x.png")
    assert report.layer("c2pa").status.value == "absent"
    assert report.verdict == Verdict.TAMPERED


def test_a_benign_re_encode_is_not_tampering(labeler: Labeler, marked_png: bytes) -> None:
    image = Image.open(io.BytesIO(marked_png)).convert("RGB")
    reencoded = jpeg_container.put_xmp(_encode(image, "JPEG", quality=75), png_container.get_xmp(marked_png))
    report = labeler.verify(reencoded, name="x.jpg")
    assert report.verdict == Verdict.COMPLIANT, str(report)
    assert "re-encoded since signing, the same picture" in report.layer("metadata").data["content"]


def test_the_perceptual_check_takes_resizing_and_rejects_a_patch() -> None:
    photo = _photo()
    binding = picture_binding(photo)
    assert picture_matches(photo, binding) == (True, "pixels exactly as signed", True)
    assert picture_matches(photo.resize((320, 240), Image.Resampling.LANCZOS), binding)[0] is True
    edited = photo.copy()
    edited.paste(Image.new("RGB", (64, 64), (250, 20, 200)), (300, 120))
    assert picture_matches(edited, binding)[0] is False
    assert picture_matches(photo, None) == (None, "", None)


def test_a_labelled_picture_that_no_longer_decodes_is_tampered_not_an_input_error(
    labeler: Labeler, marked_png: bytes
) -> None:
    """A flipped byte in the pixel data, its chunk CRC repaired: the label is still there to read, so this is evidence
    against the file (tampered), not an unusable input."""
    kind, start, end = next(c for c in png_container.chunks(marked_png) if c[0] == b"IDAT")
    body = bytearray(marked_png[start + 8 : end - 4])
    body[len(body) // 2] ^= 0xFF
    chunk = marked_png[start : start + 8] + bytes(body) + struct.pack(">I", zlib.crc32(kind + bytes(body)))
    damaged = marked_png[:start] + chunk + marked_png[end:]
    report = labeler.verify(damaged, name="x.png")
    assert report.verdict == Verdict.TAMPERED
    assert "no longer decodes" in report.layer("metadata").detail


# --- kz-picture-2: what the cell grid tells apart -------------------------------------------------------------------
SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "samples"


def _text_page(width: int = 400, height: int = 260) -> Image.Image:
    """A small screenshot: lines of dark text on white, the case where a codec's ringing clips at 255."""
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=15)
    for row, y in enumerate(range(12, height - 20, 22)):
        draw.text((10, y), f"line {row}: the quick brown fox jumps over the lazy dog", fill=(20, 20, 20), font=font)
    return page


def _poster(width: int = 340, height: int = 300) -> Image.Image:
    """A small flat poster: saturated shapes with sharp coloured edges (where 4:2:0 chroma smears)."""
    rng = np.random.default_rng(9)
    poster = Image.new("RGB", (width, height), (240, 240, 240))
    draw = ImageDraw.Draw(poster)
    for _ in range(14):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        colour = ((230, 30, 40), (20, 60, 200), (250, 210, 0), (0, 160, 70))[int(rng.integers(4))]
        draw.rectangle((x, y, x + int(rng.integers(30, 150)), y + int(rng.integers(20, 120))), fill=colour)
    return poster


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def _benign(image: Image.Image) -> dict[str, Image.Image]:
    """What platforms do to an upload: lossy re-encodes (4:2:0 chroma), conversion, downscales."""
    w, h = image.size
    return {
        "jpeg50": _decoded(_encode(image, "JPEG", quality=50)),
        "jpeg75 twice": _decoded(_encode(_decoded(_encode(image, "JPEG", quality=75)), "JPEG", quality=75)),
        "webp75": _decoded(_encode(image, "WEBP", quality=75)),
        "resize 0.75": _decoded(_encode(image.resize((w * 3 // 4, h * 3 // 4), Image.Resampling.LANCZOS), "JPEG")),
        "resize 0.5": _decoded(_encode(image.resize((w // 2, h // 2), Image.Resampling.BICUBIC), "JPEG", quality=85)),
    }


@pytest.mark.parametrize("make", [_photo, _text_page, _poster], ids=["photo", "text", "poster"])
def test_benign_re_encodes_and_resizes_are_the_same_picture(make) -> None:
    image = make()
    binding = picture_binding(image)
    for name, processed in _benign(image).items():
        same, detail, exact = picture_matches(processed, binding)
        assert exact is False
        assert same is True, f"{name}: {detail}"
        assert ("resized" if processed.size != image.size else "re-encoded") in detail


@pytest.mark.parametrize("make", [_photo, _text_page, _poster], ids=["photo", "text", "poster"])
def test_a_patch_of_one_percent_is_a_changed_picture(make) -> None:
    """A patch covering 1% of the picture, in a colour taken from elsewhere in it (not a conspicuous one), saved as a
    high-quality JPEG: the size is kept, so the fine grid compares."""
    image = make()
    binding = picture_binding(image)
    w, h = image.size
    side = int((0.01 * w * h) ** 0.5)
    edited = image.copy()
    edited.paste(image.getpixel((w - 3, h - 3)), (w // 3, h // 3, w // 3 + side, h // 3 + side))
    if edited.tobytes() == image.tobytes():
        edited.paste(image.getpixel((2, 2)), (w // 3, h // 3, w // 3 + side, h // 3 + side))
    same, detail, _ = picture_matches(_decoded(_encode(edited, "JPEG", quality=95)), binding)
    assert same is False and "picture changed since signing" in detail


def _flip_damage(marked: bytes, box: list[float], count: int, seed: int) -> list[tuple[bytes, float, bool]]:
    """``count`` copies of a JPEG with one random byte of its entropy-coded data changed (seeded), each with the share
    of the picture's pixels outside the warning ``box`` that moved by more than 16 levels in some channel (copies that
    no longer decode: 1.0), and whether any pixel changed. Damage inside the box is the warning's check, not the
    picture's."""
    rng = np.random.default_rng(seed)
    start = marked.index(b"\xff\xda")
    start += 2 + int.from_bytes(marked[start + 2 : start + 4], "big")
    end = marked.rindex(b"\xff\xd9")
    base = np.asarray(_decoded(marked), np.int16)
    h, w = base.shape[:2]
    body = np.ones((h, w), bool)
    fx, fy, fw, fh = box
    body[int(fy * h) - 1 : int((fy + fh) * h) + 2, int(fx * w) - 1 : int((fx + fw) * w) + 2] = False
    out: list[tuple[bytes, float, bool]] = []
    while len(out) < count:
        at = start + int(rng.integers(0, end - start))
        if 0xFF in (marked[at], marked[at - 1]):  # a marker or a stuffed byte: not entropy-coded data
            continue
        damaged = bytearray(marked)
        damaged[at] ^= int(rng.integers(1, 256))
        try:
            got = np.asarray(_decoded(bytes(damaged)), np.int16)
        except OSError:
            out.append((bytes(damaged), 1.0, True))
            continue
        if got.shape != base.shape:
            out.append((bytes(damaged), 1.0, True))
            continue
        moved = np.abs(got - base).max(axis=-1)
        out.append((bytes(damaged), float((moved > 16)[body].mean()), bool(moved.any())))
    return out


@pytest.mark.slow
def test_byte_flips_that_visibly_damage_a_jpeg_are_tampered(labeler: Labeler) -> None:
    """The gap kz-picture-1 left (22 of 40 flips in photo.jpg's entropy data kept `compliant`, three of them damaging
    1.8–15% of the pixels): every flip that moves ≥ 0.5% of the pixels by more than 16 levels is now a changed
    picture, judged by the damage measured on each copy, not by positions. A smaller change reads as a re-encode to
    the grid, but not with the C2PA manifest still embedded (a re-encoder drops it): tampered too."""
    fixed = labeler.new_label().replace(content_id="0123456789abcdef")  # the same watermark, the same flips each run
    marked = labeler.mark(SAMPLES / "photo.jpg", name="photo.jpg", label=fixed)
    assert marked.label.binding["alg"] == "kz-picture-2"
    record = marked.label.warning or {}
    box = list(record["box"])
    flips = _flip_damage(marked.data, box, 40, seed=16)
    damaging = [data for data, share, _ in flips if share >= 0.005]
    assert len(damaging) >= 10, "the seeded flips should include damaging ones"
    for data in damaging:
        try:
            picture = _decoded(data)
        except OSError:
            continue  # no longer decodes: verify says so (test_a_labelled_picture_that_no_longer_decodes…)
        same, detail, _ = picture_matches(picture, marked.label.binding, box)
        assert same is False, detail
    report = labeler.verify(damaging[0], name="photo.jpg")
    assert report.verdict == Verdict.TAMPERED, str(report)
    slight = next(data for data, share, changed in flips if changed and share < 0.005)
    assert picture_matches(_decoded(slight), marked.label.binding, box)[:1] == (True,)
    report = labeler.verify(slight, name="photo.jpg")
    assert report.verdict == Verdict.TAMPERED and "changed in place" in report.layer("c2pa").detail, str(report)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_a_local_edit_is_tampered_in_every_format(labeler: Labeler, fmt: str) -> None:
    """Text added over 2% of a marked picture, saved again in its own format with its metadata (XMP, C2PA) carried
    over as an editor keeps them: tampered, with the grid naming where."""
    name = f"x.{fmt.lower()}"
    source = _encode(_photo(), fmt, **({"quality": 90} if fmt != "PNG" else {}))
    marked = labeler.mark(source, name=name).data
    edited = _decoded(marked)
    draw = ImageDraw.Draw(edited)
    draw.text((300, 150), "FAKE", fill=(255, 255, 255), font=ImageFont.load_default(size=48))
    out = _encode(edited, fmt, **({"quality": 90} if fmt != "PNG" else {}))
    out = _with_metadata_of(marked, out)
    report = labeler.verify(out, name=name)
    assert report.verdict == Verdict.TAMPERED, str(report)
    assert "picture changed since signing" in report.layer("metadata").detail


def _with_metadata_of(marked: bytes, edited: bytes) -> bytes:
    """``edited`` carrying the marked file's XMP packet (its label), as an editor or a platform that keeps it would."""
    packet = formats.detect(Input(marked)).get_xmp(marked)
    assert packet is not None
    return formats.detect(Input(edited)).put_xmp(edited, packet)


def test_a_kz_picture_1_label_still_verifies(labeler: Labeler, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file marked before kz-picture-2 (its label carries the 16×16 thumbnail): exact, re-encoded and edited copies
    get the verdicts they got then."""
    monkeypatch.setattr(image_base, "picture_binding", picture_binding_v1)
    marked = labeler.mark(_encode(_photo(), "PNG"), name="x.png").data
    monkeypatch.undo()
    exact = labeler.verify(marked, name="x.png")
    assert exact.verdict == Verdict.COMPLIANT and exact.label is not None
    assert exact.label.binding["alg"] == "kz-picture-1"
    assert exact.layer("metadata").data["content"].startswith("pixels exactly as signed")
    reencoded = jpeg_container.put_xmp(_encode(_decoded(marked), "JPEG", quality=75), png_container.get_xmp(marked))
    report = labeler.verify(reencoded, name="x.jpg")
    assert report.verdict == Verdict.COMPLIANT, str(report)
    assert "re-encoded or resized since signing" in report.layer("metadata").data["content"]
    assert labeler.verify(_painted(marked, "PNG"), name="x.png").verdict == Verdict.TAMPERED


def test_a_malformed_grid_is_a_changed_picture_not_a_crash() -> None:
    photo = _photo()
    binding = picture_binding(photo)
    moved = _decoded(_encode(photo, "JPEG", quality=90))
    for broken in ({**binding, "cells": "!!"}, {**binding, "grid": [3, 3]}, {**binding, "size": "x"}):
        assert picture_matches(moved, broken)[:2] == (False, "the signed picture binding is malformed")


def test_a_small_picture_halved_is_compliant_and_its_warning_painted_over_is_not(labeler: Labeler) -> None:
    """A 0.1-MP screenshot halved (its warning then 60 px wide, under the 96 px its thumbnail needs to line up):
    kz-picture-1 called it tampered (a thumbnail cell moved 42 levels) and the warning "changed"; now the picture is
    the same and the warning is found by its layout — and still missed once painted over."""
    marked = labeler.mark(_encode(_text_page(), "PNG"), name="x.png")
    halved = _decoded(marked.data).resize((200, 130), Image.Resampling.LANCZOS)
    report = labeler.verify(_with_metadata_of(marked.data, _encode(halved, "JPEG", quality=85)), name="x.jpg")
    assert report.verdict == Verdict.COMPLIANT, str(report)
    assert "resized since signing" in report.layer("metadata").data["content"]
    fx, fy, fw, fh = (marked.label.warning or {})["box"]
    halved.paste((255, 255, 255), (int(fx * 200), int(fy * 130), int((fx + fw) * 200) + 1, int((fy + fh) * 130) + 1))
    covered = labeler.verify(_with_metadata_of(marked.data, _encode(halved, "JPEG", quality=85)), name="x.jpg")
    assert covered.verdict == Verdict.MACHINE_READABLE_ONLY, str(covered)


def test_a_resize_that_rounds_the_sides_keeps_the_warning(labeler: Labeler) -> None:
    """photo.jpg (960×640) to 512 px on its long side is 512×341: the warning region's aspect moves, and its
    thumbnail was compared at another height (23 rows, not 24), so the warning read as gone."""
    marked = labeler.mark(SAMPLES / "photo.jpg", name="photo.jpg").data
    small = _decoded(marked).resize((512, 341), Image.Resampling.LANCZOS)
    report = labeler.verify(_with_metadata_of(marked, _encode(small, "JPEG", quality=85)), name="x.jpg")
    assert report.verdict == Verdict.COMPLIANT, str(report)
    assert report.layer("visible").status.value == "found"
