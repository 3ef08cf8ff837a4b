"""Content fingerprints that bind a signed media label to what a person hears (numpy only, no I/O).

A label binds its content twice: exactly (a SHA-256 of the decoded samples, which any re-encode breaks) and
perceptually, with a coarse fingerprint that a benign re-encode (MP3/AAC 128k, Opus, a resample) keeps and an edit a
listener would hear does not. The sound fingerprint is a grid of band energies:

- the mono mix is cut into :data:`SUB_S` (10 ms) sub-frames placed by time, not by sample count, so files at
  different rates give the same grid, and each sub-frame's power is summed in :data:`BANDS` (six bands between
  100 Hz and 6 kHz, under every lossy codec's low-pass);
- the sub-frames are added into frames of ``hop`` sub-frames (0.25 s, longer for content over two minutes so the
  fingerprint stays under :data:`MAX_FRAMES` frames: ≤ 2.9 kB in the label), and each frame's band power is stored in
  whole dB from 0 to -:data:`FLOOR_DB` (one byte);
- verify computes the same sub-frames over the file and slides the signed frames over them in 10-ms steps (a cut
  notice, an encoder's delay or a trim moves the content), keeping the best alignment.

An overall level change (loudness normalisation) is measured (the median difference) and taken out before comparing.
Measured on 10 s of the test music (44.1 kHz) and speech (22.05 kHz), marked FLAC: MP3 128k/64k, AAC 128k, Opus
96k/48k re-encodes and a resample to 16 kHz move an aligned frame by ≤ 0.75 dB on average over its bands (mean over
frames ≤ 0.3 dB), an MP3 cut by stream copy (no gapless header, the first frames decoded without their bit
reservoir) by ≤ 1.8 dB; half a second muted, one second 6 dB louder, a second cut out of the middle, or one second of
noise over speech move the worst frame by ≥ 6 dB (noise at -32 dB under loud music: 1.9 dB, not caught). The
thresholds (3 dB per frame, 1.5 dB mean) sit between the two.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SOUND_ALG", "SoundMatch", "SoundPrint", "match_sound", "sound_print"]

SOUND_ALG = "kz-sound-1"
SUB_S = 0.01
BANDS = (100.0, 250.0, 500.0, 1000.0, 2000.0, 3500.0, 6000.0)
FLOOR_DB = 70  # band powers below -70 dBFS count as silence: lossy codecs move near-silence by tens of dB
HOP = 25  # sub-frames per fingerprint frame (0.25 s) for content up to MAX_FRAMES × 0.25 s
MAX_FRAMES = 480
FRAME_TOL_DB = 3.0  # largest mean-over-bands change of one aligned frame still taken as the same sound
MEAN_TOL_DB = 1.5  # largest mean change over all aligned frames still taken as the same sound
LEVEL_TOL_DB = 10.0  # an overall level change (loudness normalisation) up to this is the same sound, louder/softer
EXTRA_S = 1.0  # audio beyond the signed content (after an end notice) tolerated as padding, in seconds
# signed sound missing at the end still taken as the same content (a codec's padding, a decoder's last frame): a cut
# at the start is a removed notice, one at the end removes content (or a damaged page shortened the stream)
END_CUT_S = 0.5


class SoundPrint:
    """Band powers of 10-ms sub-frames of a stream fed block by block (memory: 24 bytes per sub-frame, ~8.6 MB per
    hour), and a SHA-256 of the samples in a given range."""

    def __init__(self, rate: int, channels: int, digest: tuple[int, int] | None = None) -> None:
        self.rate, self.channels = rate, channels
        self.n = max(16, int(SUB_S * rate))
        freqs = np.fft.rfftfreq(self.n, 1.0 / rate)
        self.band_of = np.digitize(freqs, BANDS) - 1  # -1 below the first edge, len(BANDS)-1 above the last
        self.carry = np.zeros(0, np.float32)
        self.carry_at = 0  # the sample index of carry[0]
        self.next_sub = 0
        self.rows: list[np.ndarray] = []
        self.at = 0  # samples seen
        # (first sample, samples left out at the end): the digest covers [first, total - tail), so the last ``tail``
        # samples are held back until the stream ends
        self.digest_span = digest
        self.pending = np.zeros((0, channels), np.float32)
        self.sha = hashlib.sha256()

    def add(self, block: np.ndarray) -> None:
        block = np.asarray(block, np.float32).reshape(-1, self.channels)
        if self.digest_span is not None:
            first, tail = self.digest_span
            part = block[max(first - self.at, 0) :]
            pending = np.concatenate([self.pending, part]) if len(self.pending) else part
            ready = max(len(pending) - tail, 0)
            if ready:
                self.sha.update(np.ascontiguousarray(pending[:ready], "<f4").tobytes())
            self.pending = np.array(pending[ready:], np.float32)
        self.at += len(block)
        mono = block.mean(axis=1) if self.channels > 1 else block[:, 0]
        buf = np.concatenate([self.carry, mono]) if len(self.carry) else mono
        js = np.arange(self.next_sub, self.next_sub + len(buf) // self.n + 2)
        starts = np.rint(js * (SUB_S * self.rate)).astype(np.int64) - self.carry_at
        fits = starts + self.n <= len(buf)
        starts, js = starts[fits], js[fits]
        if len(starts):
            idx = starts[:, None] + np.arange(self.n)[None, :]
            spec = np.abs(np.fft.rfft(buf[idx], axis=1)) ** 2 * (2.0 / self.n**2)
            powers = np.zeros((len(starts), len(BANDS) - 1), np.float64)
            for b in range(len(BANDS) - 1):
                powers[:, b] = spec[:, self.band_of == b].sum(axis=1)
            self.rows.append(powers.astype(np.float32))
            self.next_sub = int(js[-1]) + 1
        keep_from = max(int(round(self.next_sub * SUB_S * self.rate)) - self.carry_at, 0)
        self.carry = np.array(buf[keep_from:], np.float32)
        self.carry_at += keep_from

    def powers(self) -> np.ndarray:
        """(sub-frames, bands) band powers."""
        return np.concatenate(self.rows) if self.rows else np.zeros((0, len(BANDS) - 1), np.float32)

    def digest(self) -> str:
        return self.sha.hexdigest()


def _frames_db(powers: np.ndarray, start: int, hop: int, count: int) -> np.ndarray:
    """(count, bands) frame powers in dB below full scale (0..FLOOR_DB) from sub-frame ``start`` on."""
    block = powers[start : start + hop * count].reshape(count, hop, -1).mean(axis=1)
    return np.clip(-10.0 * np.log10(block + 1e-12), 0, FLOOR_DB)


def sound_print(printer: SoundPrint, start_s: float, length_s: float) -> dict[str, Any]:
    """The signed fingerprint of the content between ``start_s`` and ``start_s + length_s`` (seconds in the stream
    ``printer`` saw): frames of ``hop`` sub-frames, one byte per band."""
    powers = printer.powers()
    start = int(round(start_s / SUB_S))
    subs = max(0, min(int(length_s / SUB_S), len(powers) - start))
    hop = max(HOP, -(-subs // MAX_FRAMES))
    count = subs // hop
    frames = np.rint(_frames_db(powers, start, hop, count)).astype(np.uint8) if count else np.zeros((0, 6), np.uint8)
    return {"hop": hop, "bands": len(BANDS) - 1, "frames": base64.b64encode(frames.tobytes()).decode("ascii")}


@dataclass(frozen=True)
class SoundMatch:
    same: bool | None  # None: nothing to compare
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


def match_sound(powers: np.ndarray, signed: dict[str, Any], start_s: float, end_s: float) -> SoundMatch:
    """Slide the signed fingerprint over a file's sub-frame ``powers``: (same sound, how it compares).

    ``start_s``: where the content began in the signed file (after a start notice); ``end_s``: how much signed audio
    followed it (an end notice). The content may have moved earlier (its notice cut) by up to ``start_s`` + 3 s or
    later by 1 s, and be trimmed at its start (a cut notice); it must not differ where it is present, lose more than
    :data:`END_CUT_S` at its end, nor be followed by more than ``end_s`` + :data:`EXTRA_S` of other audio.
    """
    try:
        hop, bands = int(signed["hop"]), int(signed["bands"])
        frames = np.frombuffer(base64.b64decode(str(signed["frames"])), np.uint8).reshape(-1, bands).astype(np.float32)
    except (KeyError, TypeError, ValueError):
        return SoundMatch(False, "the signed sound fingerprint is malformed")
    if bands != len(BANDS) - 1 or hop < 1 or not len(frames):
        return SoundMatch(None, "no sound fingerprint to compare")
    count = len(frames)
    start = int(round(start_s / SUB_S))
    cum = np.concatenate([np.zeros((1, bands)), np.cumsum(powers.astype(np.float64), axis=0)])
    total = len(powers)

    def compare(shift: int, keep: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray, float] | None:
        """(mean error, per-frame errors, frames present, level offset) with signed sub-frame s at file s - shift."""
        begin = start - shift + hop * np.arange(count)
        present = (begin >= 0) & (begin + hop <= total) if keep is None else keep
        if keep is None and present.sum() < max(1, min(count, 8) // 2):
            return None
        b = np.clip(begin[present], 0, max(total - hop, 0))
        got = -10.0 * np.log10((cum[b + hop] - cum[b]) / hop + 1e-12)
        want = frames[present]
        audible = (want < FLOOR_DB - 1) & (got < FLOOR_DB - 1)
        level = float(np.median((got - want)[audible])) if audible.any() else 0.0
        level = level if abs(level) <= LEVEL_TOL_DB else 0.0
        err = np.abs(np.clip(got - level, 0, FLOOR_DB) - want).mean(axis=1)
        return float(err.mean()), err, present, level

    best: tuple[float, np.ndarray, np.ndarray, float] | None = None
    shift = 0
    # signed sub-frame s is file sub-frame s - shift; tried nearest first, and a farther shift must do clearly better
    # (a steady tone fits every shift alike: the content is then taken where it was)
    for candidate in sorted(range(-100, start + 301), key=abs):
        got = compare(candidate)
        if got is not None and (best is None or got[0] < best[0] - 0.02):
            best, shift = got, candidate
    if best is not None:
        # a transient on a frame edge moves between frames with the alignment's 10-ms steps: each frame takes the
        # best of the neighbouring alignments
        for near in (shift - 1, shift + 1):
            other = compare(near, best[2])
            if other is not None:
                err = np.minimum(best[1], other[1])
                best = (float(err.mean()), err, best[2], best[3])
    if best is None:
        return SoundMatch(False, "the audio is too short to hold the signed content")
    score, err, present, level = best
    data = {
        "mean_db": round(score, 2),
        "worst_db": round(float(err.max()), 2),
        "shift_s": round(shift * SUB_S, 2),
        "level_db": round(-level, 1),
    }
    if score > MEAN_TOL_DB or float(err.max()) > FRAME_TOL_DB:
        worst = int(np.flatnonzero(present)[int(err.argmax())])
        at = (worst * hop) * SUB_S
        return SoundMatch(False, f"the sound changed since signing (around {at:.1f} s into the content)", data)
    content_end = (start - shift + hop * count) * SUB_S
    extra = total * SUB_S - content_end - end_s
    if extra > EXTRA_S:
        return SoundMatch(False, f"{extra:.1f} s of audio follow the signed content", data)
    idx = np.flatnonzero(present)
    cut_end = (count - 1 - int(idx[-1])) * hop * SUB_S
    if cut_end > END_CUT_S:
        return SoundMatch(False, f"the last {cut_end:.1f} s of the signed sound are missing", data)
    missing = int(count - present.sum())
    louder = f", its level changed by {-level:+.1f} dB" if abs(level) >= 1.0 else ""
    if missing:
        return SoundMatch(
            True, f"an excerpt of the signed sound ({missing * hop * SUB_S:.1f} s of it cut{louder})", data
        )
    return SoundMatch(True, f"the same sound, re-encoded since signing{louder}", data)
