"""Every frame and every sample bound (``kz-video-2``, ``kz-audio-2``; docs/label-format.md, "Audio, video and PDF
binding"): a benign re-encode or rescale is the same content, a trimmed copy is an excerpt (neither tampered nor
unchanged), an edit of frames or samples anywhere is tampered, and damage inside the coded data is tampered, not an
input error. Labels written before (``kz-video-1``, ``kz-audio-1``: fixtures/legacy/) verify as they did."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kzlabel import Labeler, Verdict, verify
from kzlabel.fingerprint import SoundPrint, match_sound, sound_print
from kzlabel.fingerprint.frames import FINE, FrameTrack, MaskPlan, frame_print, match_frames

ROOT = Path(__file__).resolve().parents[1]
SAMPLES, LEGACY = ROOT / "fixtures/samples", ROOT / "fixtures/legacy"
sys.path.insert(0, str(ROOT / "fixtures"))
import audio_signals  # noqa: E402

TAGS = ["-map_metadata", "0", "-movflags", "use_metadata_tags"]  # the label kept, as a platform that keeps tags
H264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]


def ffmpeg(*args: object) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True, timeout=120)


@pytest.fixture(scope="module")
def labeler(signer, trust) -> Labeler:
    return Labeler(signer, owner="O", system="S", trust=trust)


@pytest.fixture(scope="module")
def scene(labeler: Labeler, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled scene.mov (3 s, 384×256, moving shapes over music), marked."""
    dst = tmp_path_factory.mktemp("scene") / "scene.mov"
    labeler.mark(SAMPLES / "scene.mov", dst)
    return dst


def _content(report) -> str:
    return report.layer("metadata").data.get("content", "")


# --- video ------------------------------------------------------------------------------------------------------------
def test_an_unchanged_video_is_exactly_as_signed_without_decoding(labeler: Labeler, scene: Path, monkeypatch) -> None:
    from kzlabel.formats.video import scan as scan_module

    decoded: list[bool] = []
    real = scan_module.scan
    monkeypatch.setattr(scan_module, "scan", lambda *a, **k: decoded.append(k.get("video", False)) or real(*a, **k))
    report = labeler.verify(scene)
    assert report.verdict == Verdict.COMPLIANT, str(report)
    binding = report.label.binding
    assert binding["alg"] == "kz-video-2" and binding["frames"] == 72 and binding["seg_s"] == 0.5
    assert _content(report).startswith("frames and soundtrack exactly as signed (the coded data is unchanged)")


@pytest.mark.parametrize(
    ("name", "args"),
    [
        pytest.param("crf32", ["-crf", "32"], marks=pytest.mark.slow),
        pytest.param("240 wide", ["-vf", "scale=240:-2", "-crf", "28"], marks=pytest.mark.slow),
    ],
)
def test_a_re_encoded_or_rescaled_video_is_the_same_frames(labeler, scene, tmp_path, name, args) -> None:
    out = tmp_path / "out.mov"
    ffmpeg("-i", scene, *H264, *args, "-c:a", "aac", *TAGS, out)
    report = labeler.verify(out)
    assert report.verdict == Verdict.COMPLIANT, str(report)
    assert _content(report).startswith("re-encoded since signing, the same frames; soundtrack: the same sound")


@pytest.mark.slow
def test_a_trimmed_video_is_an_excerpt_not_tampered_nor_unchanged(labeler, scene, tmp_path) -> None:
    first = tmp_path / "first.mov"
    ffmpeg("-i", scene, "-t", "2", *H264, "-crf", "28", "-c:a", "aac", *TAGS, first)
    report = labeler.verify(first)
    assert report.verdict == Verdict.COMPLIANT, str(report)  # the warning is in the opening seconds it kept
    assert report.layer("metadata").data["excerpt"] == {"start_s": 0.0, "end_s": 2.0, "signed_s": 3.0}
    assert "an excerpt 0.0–2.0 s of the signed 3.0 s of video" in _content(report)
    assert "holds an excerpt 0.0–2.0 s of the signed 3.0 s" in report.layer("metadata").detail
    middle = tmp_path / "middle.mov"
    ffmpeg("-ss", "1", "-i", scene, "-t", "1.5", *H264, "-crf", "28", "-c:a", "aac", *TAGS, middle)
    report = labeler.verify(middle)
    excerpt = report.layer("metadata").data["excerpt"]
    assert report.layer("metadata").status.value == "trusted", str(report)
    assert excerpt["start_s"] == pytest.approx(1.0, abs=0.05) and excerpt["end_s"] == pytest.approx(2.5, abs=0.05)
    assert "soundtrack: an excerpt 1.0–2.5 s of the signed 3.0 s of sound" in _content(report)


def _spliced(*parts: tuple[float, float | None]) -> str:
    """An ffmpeg filter graph [v] joining the given stretches (start, end or None) of the input's frames."""
    cuts = [
        f"[0:v]trim=start={a}{f':end={b}' if b is not None else ''},setpts=PTS-STARTPTS[p{i}]"
        for i, (a, b) in enumerate(parts)
    ]
    joined = "".join(f"[p{i}]" for i in range(len(parts)))
    return ";".join(cuts) + f";{joined}concat=n={len(parts)}:v=1[v]"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "filters"),
    [
        ("patch for 1 s", ["-vf", "drawbox=x=iw*0.4:y=ih*0.3:w=iw*0.2:h=ih*0.2:c=red:t=fill:enable='between(t,1,2)'"]),
        ("0.5 s removed", ["-vf", "select='not(between(t,1.5,2))',setpts=N/FRAME_RATE/TB"]),
        ("0.5 s inserted", ["-filter_complex", _spliced((0, 1.5), (0.2, 0.7), (1.5, None)), "-map", "[v]"]),
        ("0.5 s replaced", ["-filter_complex", _spliced((0, 1), (2.2, 2.7), (1.5, None)), "-map", "[v]"]),
    ],
)
def test_frames_edited_removed_inserted_or_replaced_anywhere_are_tampered(labeler, scene, tmp_path, edit, filters):
    out = tmp_path / "out.mov"
    ffmpeg("-i", scene, *filters, *H264, "-crf", "23", "-an", *TAGS, out)
    report = labeler.verify(out)
    assert report.verdict == Verdict.TAMPERED, (edit, str(report))
    assert "picture changed since signing" in report.layer("metadata").detail, edit


def test_a_flipped_byte_in_a_frame_is_tampered_and_located(labeler, scene) -> None:
    import av

    data = bytearray(scene.read_bytes())
    with av.open(str(scene)) as container:  # the video packets' bytes (mdat interleaves them with the soundtrack's)
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size and p.pos is not None and p.pos >= 0]
    for where in (0.45, 0.8):  # inside the coded frames: a frame damaged there, and every frame predicted from it
        pos, size = packets[int(where * len(packets))]
        damaged = bytearray(data)
        damaged[pos + size // 2] ^= 0xFF
        report = labeler.verify(bytes(damaged), name="x.mov")
        assert report.verdict == Verdict.TAMPERED, str(report)
        detail = report.layer("metadata").detail
        assert "no longer decodes" in detail or "damaged or edited, not re-encoded" in detail, detail


def test_a_labelled_video_whose_stream_no_longer_decodes_is_tampered_not_an_input_error(labeler, scene) -> None:
    data = bytearray(scene.read_bytes())
    at = data.index(b"avcC") + 4  # the decoder setup: profile, level, SPS and PPS
    data[at : at + 40] = bytes(40)
    report = labeler.verify(bytes(data), name="x.mov")
    assert report.verdict == Verdict.TAMPERED, str(report)
    assert "no longer decodes" in report.layer("metadata").detail


def test_a_frame_fingerprint_of_a_long_video_stays_small() -> None:
    """10 minutes of changing pictures (10 frames a second: the size depends on the segments): 120 segments of
    5 s, the fingerprint a few kB."""
    rng = np.random.default_rng(0)
    track = FrameTrack(MaskPlan.none())
    picture = rng.integers(0, 256, (3, FINE, FINE)).astype(np.float32)
    for i in range(600 * 10):
        if i % 30 == 0:  # a new scene every 3 s
            picture = rng.integers(0, 256, (3, FINE, FINE)).astype(np.float32)
        picture = np.roll(picture, 1, axis=2)  # panning
        track.add(i / 10, picture)
    signed = frame_print(track, 5.0, 600.0)
    assert signed["segments"] == 120 and len(signed["values"]) < 8_000
    assert match_frames(track, signed, 600.0).same is True


# --- audio ------------------------------------------------------------------------------------------------------------
def _printed(x: np.ndarray, rate: int = 44100, digest: tuple[int, int] | None = None) -> SoundPrint:
    p = SoundPrint(rate, x.shape[1], digest)
    for i in range(0, len(x), 30_000):
        p.add(x[i : i + 30_000])
    return p


def test_the_sound_fingerprint_finds_an_excerpt_anywhere() -> None:
    x = audio_signals.music(20.0, 22050, seed=2)
    signed = sound_print(_printed(x, 22050), 0.0, 20.0)
    r = 22050
    middle = match_sound(_printed(x[6 * r : 14 * r], r).powers(), signed, 0.0, 0.0, excerpts=True)
    assert middle.same is True and middle.data["excerpt"] == {"start_s": 6.0, "end_s": 14.0, "signed_s": 20.0}
    end_cut = match_sound(_printed(x[: 12 * r], r).powers(), signed, 0.0, 0.0, excerpts=True)
    assert end_cut.same is True and end_cut.data["excerpt"]["end_s"] == 12.0
    v1 = match_sound(_printed(x[: 12 * r], r).powers(), signed, 0.0, 0.0)
    assert v1.same is False  # kz-audio-1: an end cut is a change
    spliced = np.concatenate([x[: 8 * r], x[12 * r : 14 * r], x[8 * r :]])
    assert match_sound(_printed(spliced, r).powers(), signed, 0.0, 0.0, excerpts=True).same is False
    other = audio_signals.music(4.0, r, seed=7)
    framed = np.concatenate([other, x[6 * r : 14 * r]])  # an excerpt with other sound before it
    assert match_sound(_printed(framed, r).powers(), signed, 0.0, 0.0, excerpts=True).same is False


def test_a_splice_inside_steady_noise_is_located_in_a_lossless_file(labeler, tmp_path) -> None:
    """The band energies of steady noise do not move when another second of the same noise replaces one; the segment
    digests see it, because the rest of the file still decodes exactly as signed."""
    x = np.repeat(audio_signals.noise(8.0, 44100, seed=3)[:, None], 2, axis=1)
    src = tmp_path / "noise.wav"
    raw = ["-f", "f32le", "-ar", "44100", "-ac", "2", "-i", "-"]
    subprocess.run(["ffmpeg", "-v", "error", "-y", *raw, "-c:a", "pcm_s16le", str(src)], input=x.tobytes(), check=True)
    dst = tmp_path / "marked.wav"
    labeler.mark(src, dst)
    data = bytearray(dst.read_bytes())
    at = data.index(b"data") + 8 + int((1.4 + 5.0) * 44100) * 4  # 5 s into the content, after the 1.4-s tone
    other = np.repeat(audio_signals.noise(1.0, 44100, seed=9)[:, None], 2, axis=1)  # the same noise, elsewhere
    data[at : at + 4 * 44100] = np.clip(np.rint(other * 32767), -32768, 32767).astype("<i2").tobytes()
    report = labeler.verify(bytes(data), name="x.wav")
    assert report.verdict == Verdict.TAMPERED, str(report)
    assert "samples changed since signing between 5.00 and 6.00 s into the content" in report.layer("metadata").detail


@pytest.mark.slow
def test_a_flipped_byte_in_mp3_frames_is_tampered_and_located(labeler, tmp_path) -> None:
    dst = tmp_path / "song.mp3"
    labeler.mark(SAMPLES / "song.mp3", dst)
    data = bytearray(dst.read_bytes())
    data[int(len(data) * 0.6)] ^= 0xFF
    report = labeler.verify(bytes(data), name="x.mp3")
    assert report.verdict == Verdict.TAMPERED, str(report)
    detail = report.layer("metadata").detail  # located when the frame still decodes, else the decoder's complaint
    assert "samples changed since signing between" in detail or "no longer decodes" in detail, detail


@pytest.mark.slow
def test_an_audio_trimmed_to_its_middle_is_an_excerpt(labeler, tmp_path) -> None:
    dst = tmp_path / "song.mp3"
    labeler.mark(SAMPLES / "song.mp3", dst)
    middle = tmp_path / "middle.mp3"
    ffmpeg("-ss", 3.4, "-i", dst, "-t", 8, "-map_metadata", "0", "-c:a", "libmp3lame", "-b:a", "128k", middle)
    report = labeler.verify(middle)
    assert report.layer("metadata").status.value == "trusted", str(report)
    excerpt = report.layer("metadata").data["excerpt"]
    assert excerpt["start_s"] == pytest.approx(2.0, abs=0.1) and excerpt["end_s"] == pytest.approx(10.0, abs=0.1)
    assert report.verdict == Verdict.MACHINE_READABLE_ONLY  # the excerpt holds no notice: that is what it lacks


# --- labels written before: as they were ------------------------------------------------------------------------------
@pytest.mark.slow
def test_kz_video_1_and_kz_audio_1_labels_verify_as_before(tmp_path) -> None:
    video, audio = LEGACY / "kz-video-1.mp4", LEGACY / "kz-audio-1.mp3"
    report = verify(video)
    assert report.verdict == Verdict.COMPLIANT and report.label.binding["alg"] == "kz-video-1", str(report)
    assert _content(report).startswith("sampled frames exactly as signed; soundtrack exactly as signed")
    again = tmp_path / "again.mp4"
    ffmpeg("-i", video, *TAGS, "-c:v", "libx264", "-crf", "30", "-c:a", "copy", again)
    assert "re-encoded since signing, the same frames (thumbnails within" in _content(verify(again))
    cut = tmp_path / "cut.mp4"  # kz-video-1 reads a trimmed video as changed, as it always did
    ffmpeg("-i", video, "-t", 1, *TAGS, "-c:v", "libx264", "-c:a", "copy", cut)
    assert "the video lasts 1.00 s, 2.00 s when signed" in verify(cut).layer("metadata").detail
    report = verify(audio)
    assert report.verdict == Verdict.COMPLIANT and report.label.binding["alg"] == "kz-audio-1", str(report)
    assert _content(report) == "samples exactly as signed"
    shutil.copy(audio, tmp_path / "a.mp3")
    ffmpeg("-i", tmp_path / "a.mp3", "-t", 4, "-c", "copy", tmp_path / "end.mp3")
    report = verify(tmp_path / "end.mp3")
    assert report.verdict == Verdict.TAMPERED and "the last 3.2 s of the signed sound are missing" in str(report)
