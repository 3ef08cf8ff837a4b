"""A media label binds the content a person sees: a container edit keeps the verdict the other layers earn (the C2PA
line says its hard binding broke), an edit of the picture is tampered, also when the manifest was hidden first, and a
benign re-encode of the same picture is not."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kzlabel import Labeler, TrustStore, Verdict
from kzlabel.containers import jpeg as jpeg_container
from kzlabel.containers import png as png_container
from kzlabel.formats.image.base import picture_binding, picture_matches


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
    assert report.label is not None and report.label.binding["alg"] == "kz-picture-1"


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
    assert "re-encoded or resized since signing" in report.layer("metadata").data["content"]


def test_the_perceptual_check_takes_resizing_and_rejects_a_patch() -> None:
    photo = _photo()
    binding = picture_binding(photo)
    assert picture_matches(photo, binding) == (True, "pixels exactly as signed")
    assert picture_matches(photo.resize((320, 240), Image.Resampling.LANCZOS), binding)[0] is True
    edited = photo.copy()
    edited.paste(Image.new("RGB", (64, 64), (250, 20, 200)), (300, 120))
    assert picture_matches(edited, binding)[0] is False
    assert picture_matches(photo, None) == (None, "")


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
