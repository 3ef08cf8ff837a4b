"""A mark whose keyed pilot is unmistakable but whose payload no longer decodes (a second mark written over it, or
damage past the error correction) is reported as present with its payload unreadable, not as absent: the pilot's
p-value alone is a calibrated bound, so the claim is one kzlabel has checked."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kzlabel import Labeler, Verdict
from kzlabel.report import Evidence, Status
from kzlabel.survival.render import cell
from kzlabel.watermark import detect_image, embed_image
from kzlabel.watermark.core import P_THRESHOLD

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "samples" / "photo.jpg"


@pytest.fixture(scope="module")
def overwritten() -> np.ndarray:
    """A photo marked twice with the same key and different payloads: both pilots add up, the payloads collide."""
    photo = np.asarray(Image.open(SAMPLE).convert("RGB"))
    return embed_image(embed_image(photo, b"\x01" * 8), b"\xfe" * 8)


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def test_detector_reports_a_present_mark_whose_payload_is_unreadable(overwritten):
    result = detect_image(overwritten)
    assert not result.found and result.payload is None
    assert result.unreadable and result.present and result.p_value < P_THRESHOLD


def test_unmarked_and_other_key_are_not_present(overwritten):
    photo = np.asarray(Image.open(SAMPLE).convert("RGB"))
    for result in (detect_image(photo), detect_image(overwritten, key=b"another verifier's key")):
        assert not result.found and not result.unreadable and not result.present


def test_verify_reads_it_as_a_stripped_label_with_no_payload(signer, trust, overwritten):
    report = Labeler(signer, owner="ТОО Сурет", system="ImgGen", trust=trust).verify(png(overwritten))
    line = report.layer("watermark")
    assert line is not None and line.status == Status.FOUND
    assert line.data["payload"] is None and line.data["p_value"] < P_THRESHOLD
    assert "payload unreadable" in line.detail
    assert report.verdict == Verdict.STRIPPED and not report.recovered
    assert cell(line, reference="0101010101010101").startswith("unreadable")


def test_an_unreadable_mark_names_no_survival_reference(signer, trust, overwritten):
    from kzlabel.survival.runner import holds

    report = Labeler(signer, owner="ТОО Сурет", system="ImgGen", trust=trust).verify(png(overwritten))
    assert not holds(report, "watermark", "None")  # not the string of a missing payload
    assert cell(Evidence("watermark", Status.FOUND, "", {"payload": "ab", "p_value": 1e-9}), "cd") == "other payload ab"


def test_an_animation_counts_every_plane_it_searched(signer, trust, overwritten, monkeypatch):
    """An APNG whose frames carry the overwritten mark reads as present; a pilot that passes the threshold only on
    one plane of the two searched (first frame, mean of frames) is not enough once both are counted."""
    second = overwritten.copy()
    second[:8, :8] = 0  # a frame of its own (Pillow merges identical APNG frames)
    frames = [Image.fromarray(overwritten), Image.fromarray(second)]
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:], duration=100, loop=0)
    lab = Labeler(signer, owner="ТОО Сурет", system="ImgGen", trust=trust)
    line = lab.verify(buf.getvalue()).layer("watermark")
    assert line is not None and line.status == Status.FOUND and line.data["payload"] is None

    from kzlabel import watermark
    from kzlabel.watermark.core import WatermarkResult

    weak = WatermarkResult(False, None, None, 0.8 * P_THRESHOLD, unreadable=True)  # passes alone, not over two
    monkeypatch.setattr(watermark, "detect_image", lambda *a, **k: weak)
    line = lab.verify(buf.getvalue()).layer("watermark")
    assert line is not None and line.status == Status.ABSENT and line.data["p_value"] == pytest.approx(1.6e-6)


@pytest.mark.parametrize(("per_view", "present"), [(1e-12, True), (0.8 * P_THRESHOLD, False)])
def test_a_video_counts_every_picture_it_searched(per_view, present, monkeypatch):
    from kzlabel import watermark
    from kzlabel.formats.video import codec
    from kzlabel.io import Input, Limits
    from kzlabel.watermark.core import WatermarkResult

    calls: list[int] = []

    def fake(*args, **kwargs):
        calls.append(1)
        return WatermarkResult(False, None, None, per_view, unreadable=per_view < P_THRESHOLD)

    monkeypatch.setattr(watermark, "detect_image", fake)
    inp = Input(path=SAMPLE.with_name("clip.mp4"))
    result = codec.detect_watermark(inp, codec.probe(inp, Limits(), "mp4"), None)
    assert len(calls) > 1 and result.p_value == pytest.approx(min(1.0, per_view * len(calls)))
    assert result.unreadable is present and not result.found
