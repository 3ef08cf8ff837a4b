"""Video after what platforms do to it: rescaled to a shorter side of 240-480 px, re-encoded at CRF 28-32, tags
dropped. The frame mark must still be read (verdict ``stripped``) and the burned-in warning still seen without the
label; unmarked videos must not read as marked or warned."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from kzlabel import Labeler, Verdict
from kzlabel.formats.video import codec
from kzlabel.watermark import detect_image
from kzlabel.watermark.core import P_THRESHOLD

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "samples"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-nostdin", *args], check=True, timeout=120)


def _clip(path: Path, size: str, seconds: float = 2.6, rate: int = 10) -> Path:
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={rate}",
        "-t",
        str(seconds),
        "-vf",
        "noise=alls=6:allf=t",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        str(path),
    )
    return path


def _scene(h: int, w: int, seed: int) -> np.ndarray:
    """A grey frame with smooth shading, edges and fine texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 120 + 50 * np.sin(xx / 53) * np.cos(yy / 71) + cv2.GaussianBlur(rng.normal(0, 25, (h, w)), (0, 0), 1.5)
    img[h // 3 : h // 2, w // 4 : w // 2] += 60
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_vertical_video_scaled_to_270x480_at_crf28_reads_stripped_with_the_warning(signer, trust, tmp_path):
    """Issue 17: 720×1280 through ``ffmpeg -crf 28 -vf scale=-2:480 -map_metadata -1`` (270×480) was unlabelled,
    and the warning burned into its frames was reported unavailable."""
    lab = Labeler(signer, owner="O", system="S", trust=trust)
    marked = tmp_path / "m.mp4"
    result = lab.mark(_clip(tmp_path / "v.mp4", "720x1280"), marked)
    assert {"visible", "watermark"} <= set(result.layers)
    attacked = tmp_path / "a.mp4"
    ffmpeg("-i", str(marked), "-crf", "28", "-vf", "scale=-2:480", "-map_metadata", "-1", str(attacked))
    start = time.perf_counter()
    report = lab.verify(attacked)
    assert time.perf_counter() - start < 10
    assert report.layer("metadata").status.value == "absent"
    mark = report.layer("watermark")
    assert mark.status.value == "found" and mark.data["payload"] == result.label.content_id, str(report)
    assert mark.data["p_value"] < P_THRESHOLD
    seen = report.layer("visible")
    assert seen.status.value == "found", str(report)
    assert "bottom-left" in seen.detail and "match" in seen.detail  # where it was found, and how well
    assert report.verdict == Verdict.STRIPPED


def test_unmarked_video_reads_neither_mark_nor_warning(signer, trust, tmp_path):
    """An unmarked clip re-encoded small (240 px, CRF 32): no watermark, no warning claimed."""
    lab = Labeler(signer, owner="O", system="S", trust=trust)
    small = tmp_path / "small.mp4"
    ffmpeg("-i", str(SAMPLES / "clip.mp4"), "-t", "1", "-an", "-crf", "32", "-vf", "scale=-2:240", str(small))
    report = lab.verify(small)
    assert report.layer("watermark").status.value == "absent", str(report)
    assert report.layer("visible").status.value == "unavailable", str(report)
    assert "no built-in kzlabel warning" in report.layer("visible").detail
    assert report.verdict == Verdict.UNLABELLED


@pytest.mark.slow
@pytest.mark.parametrize("name", ["clip.mp4", "scene.mov", "trailer.mkv", "loop.webm"])
def test_unmarked_samples_read_neither_mark_nor_warning(signer, trust, name):
    report = Labeler(signer, owner="O", system="S", trust=trust).verify(SAMPLES / name)
    assert report.layer("watermark").status.value == "absent", str(report)
    assert report.layer("visible").status.value == "unavailable", str(report)
    assert report.verdict == Verdict.UNLABELLED


def test_frame_mark_survives_scaling_to_240_px_and_crops():
    """The chip grid on its own: a 1280×720 frame marked, shrunk to 426×240 (and cropped) and noised, is read from
    its mosaic (or, cropped, from the padded view) with the right payload, and not from the frame as it is (its
    tile spans half the frame, beyond the image detector's search)."""
    payload = bytes.fromhex("0123456789abcdef")
    frame = _scene(720, 1280, seed=3)
    marked = codec.embed_frame(frame, payload, None)
    assert 10 * np.log10(255**2 / np.mean((marked.astype(float) - frame) ** 2)) > 38  # PSNR, dB
    noise = np.random.default_rng(1).normal(0, 2.0, (240, 426))

    def shrunk(a: np.ndarray) -> np.ndarray:
        return np.clip(cv2.resize(a, (426, 240), interpolation=cv2.INTER_AREA) + noise, 0, 255).astype(np.uint8)

    found = detect_image(codec.mosaic_view(shrunk(marked)))
    assert found.payload == payload and found.p_value < P_THRESHOLD
    cropped = shrunk(marked)[12:-12, 21:-21]  # 10% cut from each dimension
    assert detect_image(codec.padded_view(cropped)).payload == payload
    assert detect_image(shrunk(marked)).payload is None


def _x264_key_frame(y: np.ndarray, crf: int) -> np.ndarray:
    """``y`` coded by x264 (preset medium) as a clip's one key frame, decoded again (luma)."""
    import av

    h, w = y.shape
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=10, options={"crf": str(crf), "preset": "medium"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        planes = np.concatenate([y.reshape(-1), np.full(h * w // 2, 128, np.uint8)]).reshape(h * 3 // 2, w)
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")), *stream.encode(None)]:
            out.mux(packet)
    buf.seek(0)
    with av.open(buf) as container:
        return next(container.decode(container.streams.video[0])).to_ndarray(format="yuv420p")[:h]


def test_frame_mark_read_by_list_decoding_after_a_coarse_key_frame():
    """A 1280×720 frame marked, shrunk to 426×240 and coded as one x264 key frame at CRF 38 (as coarse for the mark
    as the opening key frame of a panning clip at CRF 32, 240 px): the pilot is there but the best path fails the
    MAC (before list decoding: not found, p 3e-7); one of the 64 best paths carries the payload."""
    from kzlabel.watermark import core

    payload = bytes([3, 0]) * 4
    marked = codec.embed_frame(_scene(720, 1280, seed=3), payload, None)
    small = cv2.resize(marked, (426, 240), interpolation=cv2.INTER_AREA)
    found = detect_image(codec.mosaic_view(_x264_key_frame(small, 38)))
    assert found.payload == payload and found.p_value < P_THRESHOLD
    assert found.bits is not None and not core.decode_payload(found.bits, None)[1]  # the best path alone: no


@pytest.mark.slow
def test_views_of_unmarked_frames_stay_above_the_threshold():
    """The detector's false-positive rate holds on the views built for it: 60 keys × unmarked frames."""
    frames = [_scene(720, 1280, seed=s) for s in (5, 6)] + [_scene(1280, 720, seed=7)]
    views = [make(f) for f in frames for make in (codec.mosaic_view, codec.padded_view)]
    for i in range(60):
        result = detect_image(views[i % len(views)], key=f"key-{i}".encode())
        assert not result.found and result.p_value > 1e-4


@pytest.mark.slow
def test_small_horizontal_video_is_marked_and_survives_240_px_crf32(signer, trust, tmp_path):
    """480×270 frames (height 2 mod 4, whose chroma planes straddle array rows) are marked, and the mark and the
    warning outlive a CRF 32 re-encode at 426×240."""
    lab = Labeler(signer, owner="O", system="S", trust=trust)
    marked = tmp_path / "m.mp4"
    result = lab.mark(_clip(tmp_path / "s.mp4", "480x270", rate=12), marked)
    assert lab.verify(marked).verdict == Verdict.COMPLIANT
    attacked = tmp_path / "a.mp4"
    ffmpeg("-i", str(marked), "-crf", "32", "-vf", "scale=-2:240", "-map_metadata", "-1", str(attacked))
    report = lab.verify(attacked)
    assert report.layer("watermark").data.get("payload") == result.label.content_id, str(report)
    assert report.layer("visible").status.value == "found", str(report)
    assert report.verdict == Verdict.STRIPPED


def test_stress_vertical_cut_of_a_270_row_clip_keeps_its_colours(tmp_path):
    """The stress module's 9:16 cut of a 480×270 clip (height 2 mod 4: its chroma planes straddle array rows) used to
    fail (cannot reshape); the cut must show the source's centre, colours included."""
    import av

    from kzlabel.survival.transforms import Original
    from kzlabel.survival.transforms.video import TRANSFORMS

    src = tmp_path / "s.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=480x270:rate=10", "-t", "0.5", "-pix_fmt", "yuv420p", str(src))
    vertical = next(t for t in TRANSFORMS if t.name == "vertical")
    out = vertical.apply(Original(src, "mp4"), tmp_path)

    def first(path: Path) -> np.ndarray:
        with av.open(str(path)) as c:
            return next(c.decode(video=0)).to_ndarray(format="rgb24").astype(float)

    cut, whole = first(out), first(src)
    assert cut.shape == (270, 152, 3)
    assert np.abs(cut - whole[:, 164 : 164 + 152]).mean() < 6  # CRF 23 noise; misplaced chroma is tens of levels


def _panning_clip_at_240(payload: bytes, seed: int, crf: int) -> bytes:
    """Two seconds of a 2-px-a-frame pan over a 480×270 scene under a dark text plate (as the opening warning),
    every frame marked, scaled to 426×240 and coded by x264 (preset medium) at ``crf``."""
    import av

    n, w, h = 48, 480, 270
    world = _scene(h, w + 2 * n, seed)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=24, options={"crf": str(crf), "preset": "medium"})
        stream.width, stream.height, stream.pix_fmt = 426, 240, "yuv420p"
        for i in range(n):
            f = np.ascontiguousarray(world[:, 2 * i : 2 * i + w])
            cv2.rectangle(f, (20, h - 90), (w - 20, h - 20), 30, -1)
            cv2.putText(f, "AI-GENERATED CONTENT", (30, h - 60), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 235, 2)
            cv2.putText(f, "made with a generator", (30, h - 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 235, 2)
            y = cv2.resize(codec.embed_frame(f, payload, None), (426, 240), interpolation=cv2.INTER_AREA)
            planes = np.concatenate([y.reshape(-1), np.full(426 * 120, 128, np.uint8)]).reshape(360, 426)
            for packet in stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("seed", "crf"),
    [
        (6, 34),  # the key frame decodes the payload at p 7e-7 (the panned view 4e-8): over 4-5 pictures, too weak
        # only the moving-content picture decodes it: the mean with its key frame weighted as the rest (list decoding,
        # p 8e-8) before the panned view (motion.py) took its place there, now p 7e-7, found by the pilot's gate
        (6, 36),
    ],
)
def test_panning_clip_at_240_px_is_read_from_its_key_frame_and_mean(seed, crf):
    """A panning clip at 240 px and a coarse CRF (this synthetic scene keeps more of the mark than the benchmark's
    photo pan under the real warning, so CRF 34-36 here is as coarse as CRF 32 there). Before: not found (p 3e-6:
    the payload read, but rejected by the Bonferroni over pictures; p 0.2: read by no picture)."""
    from kzlabel.io import Input, Limits

    payload = bytes([seed, 7]) * 4
    inp = Input(data=_panning_clip_at_240(payload, seed, crf))
    found = codec.detect_watermark(inp, codec.probe(inp, Limits(), "mp4"), None)
    assert found.found and found.payload == payload and found.p_value < P_THRESHOLD


def _pan_frames(n: int, w: int, h: int, step: int, seed: int, plate: bool = True) -> list[np.ndarray]:
    """``n`` luma frames of a pan (``step`` px a frame, content moving left) over a synthetic photo, under a static
    dark plate with text a quarter of the frame high (as the opening warning) and a static pale band on top."""
    sys.path.insert(0, str(SAMPLES.parent))
    from image_signals import natural_like

    world = cv2.cvtColor(natural_like(h, w + step * n, seed=seed), cv2.COLOR_RGB2GRAY)
    frames = []
    for i in range(n):
        f = np.ascontiguousarray(world[:, step * i : step * i + w])
        if plate:
            f[: h // 6] = 235
            cv2.rectangle(f, (20, h - 90 * h // 270), (w - 20, h - 20 * h // 270), 30, -1)
            cv2.putText(f, "AI-GENERATED CONTENT", (30, h - 60 * h // 270), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 235, 2)
        frames.append(f)
    return frames


def _x264(frames: list[np.ndarray], size: tuple[int, int], crf: int) -> bytes:
    """Luma frames (grey chroma) scaled to ``size`` (w, h) and coded by x264 (preset medium) at ``crf``, 24 fps."""
    import av

    w, h = size
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=24, options={"crf": str(crf), "preset": "medium"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for y in frames:
            y = cv2.resize(y, size, interpolation=cv2.INTER_AREA) if y.shape != (h, w) else y
            planes = np.concatenate([y.reshape(-1), np.full(w * h // 2, 128, np.uint8)]).reshape(h * 3 // 2, w)
            for packet in stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _lumas(data: bytes) -> list[np.ndarray]:
    import av

    with av.open(io.BytesIO(data)) as c:
        return [f.to_ndarray(format="yuv420p")[: f.height].copy() for f in c.decode(video=0)]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [5, 7])  # before: p 6e-4 and 5e-2, the payload read by no picture; after: found
def test_small_panning_clip_reencoded_at_240_px_crf32_is_read(seed):
    """Issue 17: a 480×270 pan under the opening plate, every frame marked, coded once at CRF 28 (the marking
    encode), then scaled to 426×240 and re-encoded at CRF 32. The re-encoder's P frames drag the key frame's mark
    along with the content; the static part of the frames, with the panning content taken out (formats/video/
    motion.py), reads it (of seeds 1-8, main read 6, this change 8)."""
    from kzlabel.io import Input, Limits

    payload = bytes([seed, 28]) * 4
    marked = [codec.embed_frame(f, payload, None) for f in _pan_frames(48, 480, 270, 2, seed=seed)]
    inp = Input(data=_x264(_lumas(_x264(marked, (480, 270), 28)), (426, 240), 32))
    found = codec.detect_watermark(inp, codec.probe(inp, Limits(), "mp4"), None)
    assert found.found and found.payload == payload and found.p_value < P_THRESHOLD


def test_content_shifts_follow_a_pan_under_a_static_plate():
    """The static plate and band (a third of the frame) pinned the band's plain correlation at no shift (1 px
    measured over 47 frames of a 1.8-px-a-frame pan); weighted to what changes, it measures the pan. Still frames
    are no pan."""
    from kzlabel.formats.video import motion

    frames = [f.astype(np.float32) for f in _pan_frames(24, 426, 240, 2, seed=3)]
    shifts = motion.content_shifts(frames)
    assert np.allclose(shifts[:, 0], -2.0 * np.arange(24), atol=1.0) and np.abs(shifts[:, 1]).max() < 0.5
    still = [frames[0] + np.random.default_rng(i).normal(0, 1.0, frames[0].shape).astype(np.float32) for i in range(8)]
    assert motion.panned_view(still) is None


def test_static_part_of_a_pan_is_the_mark_without_the_content():
    """Frames = a panning scene + one static pattern: the static part is the pattern (the content cancelled), and
    the panned view reads a mark that the frames' plain mean blurs with the content."""
    from kzlabel.formats.video import motion

    rng = np.random.default_rng(4)
    pattern = cv2.GaussianBlur(rng.normal(0, 3.0, (240, 426)).astype(np.float32), (0, 0), 1.0)
    frames = [f.astype(np.float32) + pattern for f in _pan_frames(24, 426, 240, 2, seed=5, plate=False)]
    static = motion.static_part(frames, motion.content_shifts(frames))
    inner = (slice(20, -20), slice(60, -60))
    corr = np.corrcoef(static[inner].ravel(), pattern[inner].ravel())[0, 1]
    assert corr > 0.8, corr


def test_stress_turns_a_rotated_clip_upright_in_420(tmp_path):
    """A phone's clip (stored 1280×720-like, shown turned 90°) is turned upright by moving its 4:2:0 planes, as
    ffmpeg's autorotation does: losslessly coded, the output's luma is the stored luma turned. Through RGB it was
    off by 1.5 grey levels on average, which cost the video mark at 240 px and CRF 32 (pilot z 5 against 9-10)."""
    import av

    from kzlabel.survival.transforms import Original
    from kzlabel.survival.transforms.video import Reencode

    plain, src = tmp_path / "p.mp4", tmp_path / "s.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=10", "-t", "0.3", "-pix_fmt", "yuv420p", str(plain))
    ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(src))
    out = Reencode(lambda w, h: (None, w, h), 0).write(Original(src, "mp4"), tmp_path, "upright")

    def first(path: Path) -> tuple[np.ndarray, np.ndarray]:
        with av.open(str(path)) as c:
            frame = next(c.decode(video=0))
            yuv = frame.to_ndarray(format="yuv420p")
            return yuv[: frame.height], yuv[frame.height :]

    (stored, stored_uv), (shown, shown_uv) = first(src), first(out)
    assert shown.shape == (320, 180)
    assert np.array_equal(shown, np.rot90(stored))  # counter-clockwise, as viewers see it
    assert shown_uv.size == stored_uv.size
