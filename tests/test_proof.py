"""Proof before claim: mark reports a layer as applied only when the written output reads it back with verify's own
code; anything else is skipped with what the read-back saw, and the C2PA manifest does not claim an unproven mark."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kzlabel import Labeler, Registry, formats
from kzlabel.cli import main
from kzlabel.layers import c2pa as c2pa_layer


def _picture(width: int = 560, height: int = 400) -> Image.Image:  # above the watermark's 0.2 Mpx floor
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.dstack([x % 256, y % 256, (x * 3 + y) % 256]) + rng.integers(0, 24, (height, width, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def _png() -> bytes:
    buf = io.BytesIO()
    _picture().save(buf, format="PNG")
    return buf.getvalue()


def _noop(*args: object, **kwargs: object) -> None:
    """A layer step that silently does nothing: the claim it would have made must not survive the read-back."""


@pytest.fixture
def png_handler() -> type:
    return type(formats.get("png"))


def test_all_layers_proven_on_an_ordinary_image(signer) -> None:
    result = Labeler(signer, owner="O", system="S").mark(_png(), name="x.png")
    assert set(result.layers) == {"visible", "watermark", "metadata", "c2pa"}
    assert not result.skipped


def test_a_watermark_that_does_not_read_back_is_skipped_and_not_claimed(
    signer, png_handler, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(png_handler, "embed_watermark", _noop)
    registry = Registry.open(tmp_path / "reg.sqlite")
    result = Labeler(signer, owner="O", system="S", registry=registry).mark(_png(), tmp_path / "out.png")
    assert "watermark" not in result.layers
    assert result.skipped["watermark"].startswith("not proven on the written output: absent")
    assert "c2pa" in result.layers  # signed again, without the watermark claim
    rep = c2pa_layer.read((tmp_path / "out.png").read_bytes(), "image/png")
    assert rep.state == "valid" and rep.soft_binding is None and "c2pa.watermarked" not in rep.actions
    assert registry.lookup(result.label.content_id) is None  # nothing to recover a label from


def test_a_warning_or_label_that_does_not_read_back_is_skipped(signer, png_handler, monkeypatch) -> None:
    monkeypatch.setattr(png_handler, "draw_warning", _noop)
    result = Labeler(signer, owner="O", system="S", layers=["visible", "metadata"]).mark(_png(), name="x.png")
    assert result.layers == ("metadata",)
    assert "not proven" in result.skipped["visible"]
    monkeypatch.setattr(png_handler, "write_metadata", _noop)
    result = Labeler(signer, owner="O", system="S", layers=["metadata"]).mark(_png(), name="x.png")
    assert result.layers == ()
    assert "not proven" in result.skipped["metadata"]


def test_cli_fails_when_an_asked_layer_is_not_proven(keydir, png_handler, monkeypatch, tmp_path, capsys) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(_png())
    args = ["mark", str(src), "--key", str(keydir), "--system", "S", "--owner", "O"]
    assert main([*args, "-o", str(tmp_path / "a.png"), "--layers", "watermark,metadata"]) == 0
    monkeypatch.setattr(png_handler, "embed_watermark", _noop)
    assert main([*args, "-o", str(tmp_path / "b.png"), "--layers", "watermark,metadata"]) == 1
    assert "not applied: watermark" in capsys.readouterr().err
    assert main([*args, "-o", str(tmp_path / "c.png")]) == 0  # not asked for by name: reported, not failed
    assert "skipped watermark: not proven" in capsys.readouterr().out


def _jpeg() -> bytes:
    buf = io.BytesIO()
    _picture(1024, 768).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("make", [_png, _jpeg], ids=["png", "jpeg"])
def test_re_marking_keeps_a_readable_mark_and_one_source_type(signer, trust, make) -> None:
    from kzlabel import IPTC_COMPOSITE

    name = "x.png" if make is _png else "x.jpg"
    lab = Labeler(signer, owner="O", system="S", trust=trust)
    # two content ids whose marks garble each other when the second is embedded over the first (measured)
    first = lab.mark(make(), name=name, label=lab.new_label().replace(content_id="0123456789abcdef"))
    assert first.label.source_type != IPTC_COMPOSITE  # made by AI from nothing
    again = lab.new_label().replace(content_id="fedcba9876543210")
    second = lab.mark(first.data, name=name, label=again)  # an AI edit of content that already has a history
    report = lab.verify(second.data, name=name)
    assert second.label.source_type == IPTC_COMPOSITE
    assert report.layer("c2pa").data["digital_source_type"] == IPTC_COMPOSITE
    assert report.label is not None and report.label.source_type == IPTC_COMPOSITE
    assert report.layer("metadata").data["fields"]["Iptc4xmpExt:DigitalSourceType"] == IPTC_COMPOSITE
    # the two marks would garble each other: the content keeps its id and the new label takes it over
    assert "watermark" in second.layers and second.label.content_id == first.label.content_id
    assert report.layer("watermark").data["payload"] == second.label.content_id
    assert report.verdict.value == "compliant"


def test_a_label_only_inside_the_manifest_does_not_prove_the_metadata_layer(signer, png_handler, monkeypatch) -> None:
    monkeypatch.setattr(png_handler, "write_metadata", _noop)  # the XMP label is never written
    result = Labeler(signer, owner="O", system="S", layers=["metadata", "c2pa"]).mark(_png(), name="x.png")
    assert result.layers == ("c2pa",)
    assert "read only from the C2PA manifest" in result.skipped["metadata"]


SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "samples"


def _after_colour_jpeg75(data: bytes) -> str | None:
    """The payload the detector reads after an ordinary colour JPEG of quality 75 (Pillow, 4:2:0), or None."""
    from kzlabel.watermark import detect_image

    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buf, format="JPEG", quality=75)
    found = detect_image(np.asarray(Image.open(buf).convert("RGB")))
    return found.payload.hex() if found.found and found.payload is not None else None


def _text_page() -> bytes:
    """A 640×400 screenshot-like page of text on white: marked (one-sided, on the white), but not robust to JPEG 75."""
    sys.path.insert(0, str(SAMPLES.parent))
    from image_signals import text_page

    buf = io.BytesIO()
    Image.fromarray(text_page(640, 400, 1)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name,survives", [("photo.jpg", True), ("picture.avif", True), ("page.png", False)])
def test_the_jpeg75_robustness_claim_is_what_a_real_colour_jpeg_shows(signer, name: str, survives: bool) -> None:
    """mark tries JPEG 75 on the written picture (a greyscale round trip of the luma, the plane the detector reads) and
    says what it found; a full colour JPEG of the output, made independently here, must agree either way."""
    src = SAMPLES / name if name != "page.png" else _text_page()
    result = Labeler(signer, owner="O", system="S").mark(src, name=name)
    line = result.robustness["watermark"]
    assert line.startswith("survives JPEG quality 75" if survives else "not found after JPEG quality 75"), line
    assert (_after_colour_jpeg75(result.data) == result.label.content_id) is survives


@pytest.mark.parametrize("name", ["scan.tiff", "sticker.gif"])
def test_pictures_under_the_floor_skip_the_watermark_and_claim_no_robustness(signer, name: str) -> None:
    """384×256 and 320×256 are under the 0.2 Mpx still-image floor: no mark is claimed (it would not survive JPEG 75),
    the other layers still label the file."""
    result = Labeler(signer, owner="O", system="S").mark(SAMPLES / name)
    assert "watermark" not in result.layers and result.robustness == {}
    assert "too small to carry the 64-bit watermark reliably" in result.skipped["watermark"]
    assert {"visible", "metadata"} <= set(result.layers)


def _small_picture() -> bytes:
    """A 500×420 picture (0.21 Mpx): over the still-image floor, under FULL_PIXELS."""
    sys.path.insert(0, str(SAMPLES.parent))
    from image_signals import natural_like

    buf = io.BytesIO()
    Image.fromarray(natural_like(420, 500, 3)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name", ["photo.jpg", "picture.avif", "small.png"])
def test_mark_states_the_survival_class_the_picture_size_measured(signer, name: str) -> None:
    """Between the floor and FULL_PIXELS the mark is written but the report says which edits may remove it (and the
    class is in the result); from FULL_PIXELS up the class is full and the JPEG 75 line stands alone."""
    from kzlabel.watermark.image import FULL_PIXELS, MIN_PIXELS

    src = SAMPLES / name if name != "small.png" else _small_picture()
    width, height = Image.open(src if isinstance(src, Path) else io.BytesIO(src)).size
    assert width * height >= MIN_PIXELS
    reduced = width * height < FULL_PIXELS
    assert reduced is (name == "small.png")  # both classes are exercised
    result = Labeler(signer, owner="O", system="S").mark(src, name=name)
    assert "watermark" in result.layers
    assert result.survival_class == {"watermark": "reduced" if reduced else "full"}
    line = result.robustness["watermark"]
    assert line.startswith("survives JPEG quality 75"), line
    assert ("size class reduced" in line) is reduced and ("halving followed by JPEG 75" in line) is reduced


def test_no_survival_class_without_a_mark(signer) -> None:
    result = Labeler(signer, owner="O", system="S").mark(SAMPLES / "scan.tiff")  # under the floor: skipped
    assert "watermark" in result.skipped and result.survival_class == {}


def test_the_cli_json_carries_the_survival_class(keydir, tmp_path: Path, capsys) -> None:
    import json

    src, out = tmp_path / "small.png", tmp_path / "small-marked.png"
    src.write_bytes(_small_picture())
    args = ["mark", str(src), "-o", str(out), "--key", str(keydir), "--system", "S"]
    assert main([*args, "--owner", "O", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["survival_class"] == {"watermark": "reduced"}
    assert "size class reduced" in body["robustness"]["watermark"]


def test_no_robustness_claim_without_a_proven_watermark(signer, png_handler, monkeypatch) -> None:
    assert (
        Labeler(signer, owner="O", system="S", layers=["metadata", "c2pa"]).mark(_png(), name="x.png").robustness == {}
    )
    monkeypatch.setattr(png_handler, "embed_watermark", _noop)
    result = Labeler(signer, owner="O", system="S").mark(_png(), name="x.png")
    assert "watermark" in result.skipped and result.robustness == {}


def test_the_cli_prints_the_robustness_line(keydir, tmp_path: Path, capsys) -> None:
    out = tmp_path / "photo.jpg"
    assert (
        main(
            ["mark", str(SAMPLES / "photo.jpg"), "-o", str(out), "--key", str(keydir), "--system", "S", "--owner", "O"]
        )
        == 0
    )
    assert "  watermark survives JPEG quality 75 (p = " in capsys.readouterr().out
