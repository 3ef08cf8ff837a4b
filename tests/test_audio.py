"""Audio end to end: the watermark under attack, every container, the tone warning, tags read by exiftool/ffprobe."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

import kzlabel
from kzlabel.errors import CapacityError, CorruptInput, UnsupportedFormat
from kzlabel.layers import audible
from kzlabel.watermark import detect_audio, embed_audio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import audio_signals  # noqa: E402

PAYLOAD = bytes.fromhex("0123456789abcdef")


def _ffmpeg_roundtrip(x: np.ndarray, sr: int, args: list[str], ext: str, tmp: Path) -> np.ndarray:
    ch = 1 if x.ndim == 1 else x.shape[1]
    enc = tmp / f"a.{ext}"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(sr), "-ac", str(ch), "-i", "-", *args, str(enc)],
        input=x.astype(np.float32).tobytes(),
        check=True,
    )
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(enc), "-f", "f32le", "-ac", str(ch), "-ar", str(sr), "-"], capture_output=True, check=True).stdout
    y = np.frombuffer(raw, np.float32)
    return y.reshape(-1, ch) if ch > 1 else y


@pytest.fixture(scope="module")
def marked_music() -> tuple[np.ndarray, np.ndarray]:
    x = audio_signals.music(11.5, 44100, seed=11)
    return x, embed_audio(x, 44100, PAYLOAD)


def test_audio_mark_is_inaudible_and_found(marked_music) -> None:
    x, y = marked_music
    snr = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum((y - x).astype(np.float64) ** 2))
    assert snr >= 30.0
    r = detect_audio(y, 44100)
    assert r.found and r.payload == PAYLOAD and r.p_value < 1e-6
    assert not detect_audio(x, 44100).found
    assert not detect_audio(y, 44100, key=b"another key").found


@pytest.mark.parametrize(
    "attack",
    ["mp3_128k", "aac_128k", "opus_96k", "resample_48k", "resample_16k", "mono_gain_minus6", "gain_plus6", "trim_start", "trim_end"],
)
def test_audio_mark_survives(marked_music, attack: str, tmp_path: Path) -> None:
    _, y = marked_music
    sr = 44100
    if attack == "mp3_128k":
        z = _ffmpeg_roundtrip(y, sr, ["-c:a", "libmp3lame", "-b:a", "128k"], "mp3", tmp_path)
    elif attack == "aac_128k":
        z = _ffmpeg_roundtrip(y, sr, ["-c:a", "aac", "-b:a", "128k"], "m4a", tmp_path)
    elif attack == "opus_96k":
        z = _ffmpeg_roundtrip(y, sr, ["-c:a", "libopus", "-b:a", "96k"], "ogg", tmp_path)
    elif attack == "resample_48k":
        z, sr = signal.resample_poly(y, 160, 147, axis=0).astype(np.float32), 48000
    elif attack == "resample_16k":
        z, sr = signal.resample_poly(y, 160, 441, axis=0).astype(np.float32), 16000
    elif attack == "mono_gain_minus6":
        z = 0.5 * y.mean(axis=1)
    elif attack == "gain_plus6":
        z = np.clip(2 * y, -1, 1)
    elif attack == "trim_start":
        z = y[int(0.1 * len(y)) + 77 :]  # 10% plus an odd number of samples: off the grid
    else:
        z = y[: int(0.9 * len(y))]
    r = detect_audio(z, sr)
    assert r.found and r.payload == PAYLOAD


def test_audio_mark_on_speech_excerpt() -> None:
    x = audio_signals.speech(30, 16000, seed=5)
    y = embed_audio(x, 16000, PAYLOAD)
    r = detect_audio(y[int(12.3 * 16000) : int(22.3 * 16000)], 16000)  # any 10 s from the middle
    assert r.found and r.payload == PAYLOAD


def test_audio_mark_blockwise_matches_grid() -> None:
    """Long files are marked in blocks with offset_s: the pattern must continue across the block boundary."""
    x = audio_signals.music(12, 16000, seed=2, stereo=False)
    a = embed_audio(x[: 6 * 16000], 16000, PAYLOAD)
    b = embed_audio(x[6 * 16000 :], 16000, PAYLOAD, offset_s=6.0)
    r = detect_audio(np.concatenate([a, b])[3 * 16000 :], 16000)
    assert r.found and r.payload == PAYLOAD


def test_audio_mark_refuses_too_short() -> None:
    with pytest.raises(CapacityError):
        embed_audio(np.zeros(8000, np.float32), 16000, PAYLOAD)


def test_tone_pattern_detected_after_mp3(tmp_path: Path) -> None:
    x = audio_signals.speech(4, 16000, seed=1)
    t = audible.tone(16000, 1, audible.level_for(x))[:, 0]
    y = np.concatenate([t, x])
    z = _ffmpeg_roundtrip(y, 16000, ["-c:a", "libmp3lame", "-b:a", "64k"], "mp3", tmp_path)
    assert audible.detect(z, 16000) >= audible.THRESHOLD
    assert audible.detect(x, 16000) < audible.THRESHOLD


# ------------------------------------------------------------------------------------------------------ containers

SOURCES = {
    "wav16": (["-c:a", "pcm_s16le"], "wav"),
    "wav24": (["-c:a", "pcm_s24le"], "wav"),
    "mp3": (["-c:a", "libmp3lame", "-b:a", "192k"], "mp3"),
    "flac": (["-c:a", "flac"], "flac"),
    "opus": (["-c:a", "libopus", "-b:a", "96k"], "opus"),
    "m4a": (["-c:a", "aac", "-b:a", "160k"], "m4a"),
}


def _make(tmp: Path, kind: str, seconds: float = 12.0, channels: int = 2, rate: int = 44100) -> Path:
    args, ext = SOURCES[kind]
    x = audio_signals.music(seconds, rate, seed=3, stereo=channels == 2)
    if channels not in (1, 2):
        x = np.repeat(x[:, None], channels, axis=1) * 0.5
    p = tmp / f"src_{kind}.{ext}"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", str(rate), "-ac", str(channels), "-i", "-", "-metadata", "title=Kept title", *args, str(p)],
        input=x.astype(np.float32).tobytes(),
        check=True,
    )
    return p


def _ffprobe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)], capture_output=True, check=True).stdout
    return json.loads(out)


def _all_tags(info: dict) -> dict[str, str]:
    tags = {k.lower(): v for k, v in info["format"].get("tags", {}).items()}
    for s in info["streams"]:
        tags |= {k.lower(): v for k, v in s.get("tags", {}).items()}
    return tags


@pytest.mark.parametrize("kind", list(SOURCES))
def test_audio_container_end_to_end(kind: str, tmp_path: Path, signer, keydir: Path) -> None:
    src = _make(tmp_path, kind)
    before = src.read_bytes()
    dst = tmp_path / f"out{src.suffix}"
    res = kzlabel.mark(src, dst, signer=signer, system="Gen", owner="ACME LLP")
    assert src.read_bytes() == before
    assert {"visible", "watermark", "metadata"} <= set(res.layers)
    report = kzlabel.verify(dst, trust=kzlabel.TrustStore.load([keydir]))
    assert report.verdict == kzlabel.Verdict.COMPLIANT, str(report)
    ev = {e.layer: e.status for e in report.evidence}
    assert ev["watermark"] == kzlabel.Status.FOUND and ev["visible"] == kzlabel.Status.FOUND
    if kind != "opus":  # Ogg: c2pa-python cannot embed a manifest
        assert ev["c2pa"] == kzlabel.Status.TRUSTED
    info_src, info_dst = _ffprobe(src), _ffprobe(dst)
    a, b = info_src["streams"][0], info_dst["streams"][0]
    assert (a["sample_rate"], a["channels"], a["codec_name"]) == (b["sample_rate"], b["channels"], b["codec_name"])
    if kind == "wav24":
        assert b.get("bits_per_sample") == 24 or b.get("bits_per_raw_sample") == "24"
    tags = _all_tags(info_dst)  # ffprobe, an independent reader
    assert json.loads(tags["aigc"])["Label"] == "1"
    assert tags.get("title") == "Kept title"
    if shutil.which("exiftool"):
        exif = subprocess.run(["exiftool", "-a", "-u", "-G1", str(dst)], capture_output=True, text=True).stdout
        assert "ContentProducer" in exif and "trainedAlgorithmicMedia" in exif


def test_audio_stripped_after_metadata_removal(tmp_path: Path, signer, keydir: Path) -> None:
    src = _make(tmp_path, "mp3")
    dst = tmp_path / "out.mp3"
    kzlabel.mark(src, dst, signer=signer, system="Gen", owner="ACME LLP")
    bare = tmp_path / "bare.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(dst), "-map_metadata", "-1", "-c:a", "libmp3lame", "-b:a", "128k", str(bare)], check=True)
    report = kzlabel.verify(bare, trust=kzlabel.TrustStore.load([keydir]))
    assert report.verdict == kzlabel.Verdict.STRIPPED, str(report)


def test_audio_warning_cut_is_reported(tmp_path: Path, signer, keydir: Path) -> None:
    src = _make(tmp_path, "flac")
    dst = tmp_path / "out.flac"
    kzlabel.mark(src, dst, signer=signer, system="Gen", owner="ACME LLP", layers=["visible", "watermark", "metadata"])
    cut = tmp_path / "cut.flac"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", "2", "-i", str(dst), "-c:a", "flac", str(cut)], check=True)
    report = kzlabel.verify(cut, trust=kzlabel.TrustStore.load([keydir]))
    assert report.verdict == kzlabel.Verdict.MACHINE_READABLE_ONLY, str(report)


def test_audio_training_optout_read_back(tmp_path: Path, signer) -> None:
    src = _make(tmp_path, "m4a")
    dst = tmp_path / "out.m4a"
    kzlabel.mark(src, dst, signer=signer, system="Gen", owner="ACME LLP", training="notAllowed", layers=["metadata"])
    check = kzlabel.training_allowed(dst)
    assert check.status == kzlabel.Training.NOT_ALLOWED
    assert any("tdm-reservation" in s.carrier for s in check.signals)


def test_audio_bad_input(tmp_path: Path, signer) -> None:
    mp3 = _make(tmp_path, "mp3").read_bytes()
    with pytest.raises(CorruptInput):
        kzlabel.mark(mp3[:300], signer=signer, system="Gen", owner="O", name="cut.mp3")
    fake = tmp_path / "fake.mp3"
    fake.write_bytes(bytes(range(256)) * 40)  # binary, not audio: the name does not make it MP3
    with pytest.raises(UnsupportedFormat):
        kzlabel.mark(fake, tmp_path / "o.mp3", signer=signer, system="Gen", owner="O")
    assert not (tmp_path / "o.mp3").exists()
    words = tmp_path / "words.mp3"
    words.write_bytes(b"this is not audio at all\n" * 40)  # content decides: it is labelled as the text it is
    assert kzlabel.verify(words).format == "text"
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(kzlabel.errors.KzlabelError):
        kzlabel.mark(empty, tmp_path / "o.wav", signer=signer, system="Gen", owner="O")
    with pytest.raises(UnsupportedFormat):
        kzlabel.verify(b"\x00\x01\x02" * 100, name="x.flac")


def test_audio_low_rate_mono_and_many_channels(tmp_path: Path, signer) -> None:
    low = _make(tmp_path, "wav16", seconds=6, channels=1, rate=8000)
    res = kzlabel.mark(low, tmp_path / "low.wav", signer=signer, system="Gen", owner="O")
    assert "visible" in res.layers and "metadata" in res.layers
    info = _ffprobe(tmp_path / "low.wav")["streams"][0]
    assert (info["sample_rate"], info["channels"]) == ("8000", 1)
    wide = _make(tmp_path, "flac", seconds=6, channels=8)
    res = kzlabel.mark(wide, tmp_path / "wide.flac", signer=signer, system="Gen", owner="O")
    assert _ffprobe(tmp_path / "wide.flac")["streams"][0]["channels"] == 8
    assert kzlabel.verify(tmp_path / "wide.flac").evidence  # readable back
