"""The sound fingerprint that binds a signed audio label (or a video's soundtrack) to what a person hears (numpy
only, no I/O).

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

Band energies cannot see an edit that keeps them: a splice of other steady noise into steady noise, or a short
change averaged into a 0.25-s frame. Where the file still decodes to the signed samples elsewhere, the exact digest
locates it: :class:`SoundPrint` also hashes every :data:`BLOCK_S` block of the digested span, the label keeps one
4-byte digest per segment of blocks (:func:`segment_print`), and a file whose audible segments decode exactly as
signed except some has had those changed (:func:`locate_change`), whatever their band energies. A lossy re-encode
changes every audible segment, so this finds nothing there; only silence (under :data:`SILENT_PEAK`) can decode to
the same samples after a re-encode, and it proves nothing.

Two policies: ``kz-audio-1`` labels (and ``kz-video-1`` soundtracks) are matched as they were signed to be: the
content may lose its start (a cut notice) but not its end. ``kz-audio-2`` / ``kz-video-2`` match an excerpt anywhere
(``excerpts=True``): a file that holds a contiguous stretch of the signed sound, at any offset, is that stretch — not
a change and not the whole; the match says which stretch (:class:`~.common.Excerpt`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .common import Excerpt, pack_digests, segment_digests, unpack_digests

__all__ = [
    "SOUND_ALG",
    "SoundMatch",
    "SoundPrint",
    "SampleCheck",
    "check_segments",
    "match_sound",
    "segment_print",
    "sound_print",
]

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
# kz-audio-1: signed sound missing at the end still taken as the same content (a codec's padding, a decoder's last
# frame): a cut at the start is a removed notice, one at the end removes content (or a damaged page shortened the
# stream). kz-audio-2: below this at either end it is padding or priming; above it, an excerpt.
END_CUT_S = 0.5
MIN_EXCERPT_FRAMES = 8  # an excerpt found anywhere in the content holds at least this many frames (2 s at 0.25 s)
BLOCK_S = 0.25  # the exact digest is also kept per block of this many seconds of the digested span
MAX_SEGMENTS = 240  # segment digests in a label (4 bytes each): blocks are grouped so there are at most this many
# a block whose samples stay under -60 dBFS is (near) silence, which a lossy re-encode may decode to the very same
# samples: its exactness says nothing about whether the rest was re-encoded
SILENT_PEAK = 1e-3


class SoundPrint:
    """Band powers of 10-ms sub-frames of a stream fed block by block (memory: 24 bytes per sub-frame, ~8.6 MB per
    hour), a SHA-256 of the samples in a given range, and one per :data:`BLOCK_S` block of that range (32 bytes and
    a peak per block, ~0.5 MB per hour)."""

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
        self.blocks: list[bytes] = []  # SHA-256 of each whole block of the span
        self.peaks: list[float] = []  # each block's largest |sample|
        self._block = hashlib.sha256()
        self._block_peak = 0.0
        self._span_at = 0  # samples of the span hashed

    def add(self, block: np.ndarray) -> None:
        block = np.asarray(block, np.float32).reshape(-1, self.channels)
        if self.digest_span is not None:
            first, tail = self.digest_span
            part = block[max(first - self.at, 0) :]
            pending = np.concatenate([self.pending, part]) if len(self.pending) else part
            ready = max(len(pending) - tail, 0)
            if ready:
                self._hash(np.ascontiguousarray(pending[:ready], "<f4"))
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

    def _hash(self, data: np.ndarray) -> None:
        """Add samples of the span to the whole digest and to the block digests (blocks placed by time)."""
        self.sha.update(data.data.cast("B"))
        while len(data):
            edge = int(round((len(self.blocks) + 1) * BLOCK_S * self.rate))
            part, data = data[: edge - self._span_at], data[edge - self._span_at :]
            self._block.update(np.ascontiguousarray(part).data.cast("B"))
            self._block_peak = max(self._block_peak, float(np.abs(part).max()))
            self._span_at += len(part)
            if self._span_at == edge:
                self.blocks.append(self._block.digest())
                self.peaks.append(self._block_peak)
                self._block, self._block_peak = hashlib.sha256(), 0.0

    def rest(self, per: int) -> bytes:
        """The digest of what follows the last whole segment of ``per`` blocks: the whole blocks after it and the
        partial block at the end of the span."""
        tail = self.blocks[len(self.blocks) // per * per :]
        partial = self._block.copy().digest() if self._span_at > round(len(self.blocks) * BLOCK_S * self.rate) else b""
        return segment_digests([*tail, partial], len(tail) + 1)[0]

    def powers(self) -> np.ndarray:
        """(sub-frames, bands) band powers."""
        return np.concatenate(self.rows) if self.rows else np.zeros((0, len(BANDS) - 1), np.float32)

    def digest(self) -> str:
        return self.sha.hexdigest()

    @property
    def partial_peak(self) -> float:
        """The largest |sample| of the partial block at the end of the span (0 when there is none)."""
        return self._block_peak

    @property
    def span(self) -> int:
        """Samples digested so far."""
        return self._span_at


def segment_print(printer: SoundPrint) -> dict[str, Any]:
    """The signed segment digests of the span ``printer`` hashed: ``per`` blocks of :data:`BLOCK_S` each (the last
    partial segment is covered by the whole digest only)."""
    per = max(1, -(-len(printer.blocks) // MAX_SEGMENTS))
    digests = segment_digests(printer.blocks, per)
    return {
        "block_s": BLOCK_S,
        "per": per,
        "span": printer.span,
        "digests": pack_digests([*digests, printer.rest(per)]),
    }


@dataclass(frozen=True)
class SampleCheck:
    """What the segment digests show of a file that still decodes exactly as signed in places: where it changed, or
    that it holds the signed samples exactly up to ``held`` of ``signed`` samples of the span (its end cut)."""

    changed: str | None = None
    held: int = 0
    signed: int = 0


def check_segments(printer: SoundPrint, signed: Mapping[str, Any]) -> SampleCheck | None:
    """Compare the segment digests of the span ``printer`` hashed with the signed ones; None without evidence.

    Evidence needs two audible segments whose samples are exactly the signed ones — a lossy re-encode changes every
    audible sample, so the file was not re-encoded — and then any other segment the file holds in full that differs
    was changed (an edit, a splice, damage), even when its band energies did not move.
    """
    try:
        per = int(signed["per"])
        block_s = float(signed["block_s"])
        span = int(signed["span"])
        want = unpack_digests(signed["digests"])
    except (KeyError, TypeError, ValueError):
        return None
    if per < 1 or block_s != BLOCK_S or not want:
        return None
    got = segment_digests(printer.blocks, per)[: len(want) - 1]  # the whole segments the file holds
    if len(got) == len(want) - 1 and span == printer.span:  # and the rest after the last whole segment
        got.append(printer.rest(per))
    n = len(got)
    peaks = [*printer.peaks, printer.partial_peak]  # the rest's partial block last
    audible = [max(peaks[k * per : (k + 1) * per if k < len(want) - 1 else None]) > SILENT_PEAK for k in range(n)]
    exact = [k for k in range(n) if got[k] == want[k] and audible[k]]
    changed = [k for k in range(n) if got[k] != want[k]]
    if len(exact) < 2:
        return None
    if not changed:
        return SampleCheck(held=min(printer.span, span), signed=span) if printer.span < span else None
    seg_s = per * BLOCK_S
    return SampleCheck(
        changed=f"the samples changed since signing between {changed[0] * seg_s:.2f} and "
        f"{(changed[-1] + 1) * seg_s:.2f} s into the content ({len(changed)} of {n} segments; {len(exact)} audible "
        "ones decode exactly as signed, so this is no re-encode)"
    )


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


_Fit = tuple[float, np.ndarray, np.ndarray, float]  # (mean error, per-frame errors, frames present, level offset)


class _Slider:
    """The signed frames slid over a file's sub-frames: signed sub-frame s lies at file sub-frame s - shift."""

    def __init__(self, powers: np.ndarray, frames: np.ndarray, hop: int, start: int) -> None:
        self.frames, self.hop, self.start = frames, hop, start
        self.count, self.total = len(frames), len(powers)
        self.cum = np.concatenate([np.zeros((1, frames.shape[1])), np.cumsum(powers.astype(np.float64), axis=0)])

    def _got(self, begin: np.ndarray) -> np.ndarray:
        b = np.clip(begin, 0, max(self.total - self.hop, 0))
        return np.asarray(-10.0 * np.log10((self.cum[b + self.hop] - self.cum[b]) / self.hop + 1e-12))

    def compare(self, shift: int, keep: np.ndarray | None = None, least: int = 1) -> _Fit | None:
        begin = self.start - shift + self.hop * np.arange(self.count)
        present = (begin >= 0) & (begin + self.hop <= self.total) if keep is None else keep
        if keep is None and present.sum() < least:
            return None
        got = self._got(begin[present])
        want = self.frames[present]
        audible = (want < FLOOR_DB - 1) & (got < FLOOR_DB - 1)
        level = float(np.median((got - want)[audible])) if audible.any() else 0.0
        level = level if abs(level) <= LEVEL_TOL_DB else 0.0
        err = np.abs(np.clip(got - level, 0, FLOOR_DB) - want).mean(axis=1)
        return float(err.mean()), err, present, level

    def nearest(self, candidates: list[int], least: int) -> tuple[_Fit | None, int]:
        """The best of ``candidates`` tried in order: a later one must do clearly better (a steady tone fits every
        shift alike: the content is then taken where it was first looked for); then each frame takes the best of the
        neighbouring 10-ms alignments (a transient on a frame edge moves between frames)."""
        best: _Fit | None = None
        shift = candidates[0] if candidates else 0
        for candidate in candidates:
            got = self.compare(candidate, least=least)
            if got is not None and (best is None or got[0] < best[0] - 0.02):
                best, shift = got, candidate
        if best is not None:
            for near in (shift - 1, shift + 1):
                other = self.compare(near, best[2])
                if other is not None:
                    err = np.minimum(best[1], other[1])
                    best = (float(err.mean()), err, best[2], best[3])
        return best, shift

    def anywhere(self, keep: int = 3) -> list[int]:
        """The ``keep`` most likely shifts over the whole content (an excerpt from anywhere), ranked coarsely:
        every ``hop // 5`` sub-frames, the level taken out by the mean difference instead of the median."""
        step = max(1, self.hop // 5)
        shifts = np.arange(-100, self.start + self.hop * (self.count - MIN_EXCERPT_FRAMES) + 1, step)
        scores = np.full(len(shifts), np.inf)
        offsets = self.hop * np.arange(self.count)
        chunk = max(1, 2_000_000 // (self.count * self.frames.shape[1]))
        for i in range(0, len(shifts), chunk):
            part = shifts[i : i + chunk]
            begin = self.start - part[:, None] + offsets[None, :]
            present = (begin >= 0) & (begin + self.hop <= self.total)
            got = self._got(begin)
            audible = (self.frames < FLOOR_DB - 1) & (got < FLOOR_DB - 1) & present[..., None]
            diff = got - self.frames
            level = (diff * audible).sum(axis=(1, 2)) / np.maximum(audible.sum(axis=(1, 2)), 1)
            level = np.where(np.abs(level) <= LEVEL_TOL_DB, level, 0.0)
            err = np.abs(np.clip(got - level[:, None, None], 0, FLOOR_DB) - self.frames).mean(axis=2)
            n = present.sum(axis=1)
            scores[i : i + chunk] = np.where(
                n >= MIN_EXCERPT_FRAMES, (err * present).sum(axis=1) / np.maximum(n, 1), np.inf
            )
        picked: list[int] = []
        for j in np.argsort(scores):
            if not np.isfinite(scores[j]) or len(picked) == keep:
                break
            if all(abs(int(shifts[j]) - other) > 2 * step for other in picked):
                picked.append(int(shifts[j]))
        return picked


def match_sound(
    powers: np.ndarray,
    signed: Mapping[str, Any],
    start_s: float,
    end_s: float,
    *,
    excerpts: bool = False,
    prefer_s: float | None = None,
) -> SoundMatch:
    """Slide the signed fingerprint over a file's sub-frame ``powers``: (same sound, how it compares).

    ``start_s``: where the content began in the signed file (after a start notice); ``end_s``: how much signed audio
    followed it (an end notice). The content may have moved earlier (its notice cut) by up to ``start_s`` + 3 s or
    later by 1 s, and be trimmed at its start (a cut notice); it must not differ where it is present, nor be followed
    by more than ``end_s`` + :data:`EXTRA_S` of other audio. Without ``excerpts`` (``kz-audio-1``) it must not lose
    more than :data:`END_CUT_S` at its end either. With ``excerpts`` a file holding any contiguous stretch of the
    content is that excerpt, found anywhere — or, given ``prefer_s``, only around that shift (a video's soundtrack
    is looked for where its frames were found: a steady sound would fit anywhere).
    """
    try:
        hop, bands = int(signed["hop"]), int(signed["bands"])
        frames = np.frombuffer(base64.b64decode(str(signed["frames"])), np.uint8).reshape(-1, bands).astype(np.float32)
    except (KeyError, TypeError, ValueError):
        return SoundMatch(False, "the signed sound fingerprint is malformed")
    if bands != len(BANDS) - 1 or hop < 1 or not len(frames):
        return SoundMatch(None, "no sound fingerprint to compare")
    start = int(round(start_s / SUB_S))
    slider = _Slider(powers, frames, hop, start)
    least = max(1, min(len(frames), 8) // 2)
    if not excerpts:
        best, shift = slider.nearest(sorted(range(-100, start + 301), key=abs), least)
        return _judge_v1(slider, best, shift, end_s)
    prefer = int(round((prefer_s or 0.0) / SUB_S))
    near = sorted(set(range(-100, start + 301)) | set(range(prefer - 100, prefer + 101)), key=lambda c: abs(c - prefer))
    if prefer_s is not None:
        near = [c for c in near if abs(c - prefer) <= 100]
    best, shift = slider.nearest(near, least)
    first = _judge(slider, best, shift, start_s, end_s)
    if (first.same and "excerpt" not in first.data) or prefer_s is not None:
        return first
    # an excerpt, or no match here: look over the whole content too, and keep the closest fit that holds (the first
    # alignment unless another fits clearly better: a short excerpt of repetitive sound fits in several places)
    tried = [(best[0] - 0.1 if best is not None else np.inf, first)]
    for candidate in slider.anywhere():
        found, at = slider.nearest(list(range(candidate - hop // 5, candidate + hop // 5 + 1)), least)
        if found is not None:
            tried.append((found[0], _judge(slider, found, at, start_s, end_s)))
    held = [t for t in tried if t[1].same]
    return min(held, key=lambda t: t[0])[1] if held else first


def _fit_data(fit: _Fit, shift: int) -> dict[str, Any]:
    score, err, _, level = fit
    return {
        "mean_db": round(score, 2),
        "worst_db": round(float(err.max()), 2),
        "shift_s": round(shift * SUB_S, 2),
        "level_db": round(-level, 1),
    }


def _changed(slider: _Slider, fit: _Fit, data: dict[str, Any]) -> SoundMatch | None:
    score, err, present, _ = fit
    if score <= MEAN_TOL_DB and float(err.max()) <= FRAME_TOL_DB:
        return None
    worst = int(np.flatnonzero(present)[int(err.argmax())])
    at = (worst * slider.hop) * SUB_S
    return SoundMatch(False, f"the sound changed since signing (around {at:.1f} s into the content)", data)


def _judge_v1(slider: _Slider, best: _Fit | None, shift: int, end_s: float) -> SoundMatch:
    """The ``kz-audio-1`` policy: the start may be cut (a notice), not the end."""
    if best is None:
        return SoundMatch(False, "the audio is too short to hold the signed content")
    data = _fit_data(best, shift)
    changed = _changed(slider, best, data)
    if changed is not None:
        return changed
    _, _, present, level = best
    hop, count = slider.hop, slider.count
    content_end = (slider.start - shift + hop * count) * SUB_S
    extra = slider.total * SUB_S - content_end - end_s
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


def _judge(slider: _Slider, best: _Fit | None, shift: int, start_s: float, end_s: float) -> SoundMatch:
    """The ``kz-audio-2`` policy: the file is the content, or one contiguous stretch of it (an excerpt), with no
    other audio around it than the notices (and :data:`EXTRA_S` of padding)."""
    if best is None:
        return SoundMatch(False, "the audio is too short to hold the signed content")
    data = _fit_data(best, shift)
    changed = _changed(slider, best, data)
    if changed is not None:
        return changed
    _, _, present, level = best
    hop, count, start = slider.hop, slider.count, slider.start
    idx = np.flatnonzero(present)
    first, last = int(idx[0]), int(idx[-1])
    # where the first and last signed frames present lie in the file, and what the file holds around them
    lead = (start - shift + hop * first) * SUB_S
    trail = (slider.total - (start - shift + hop * (last + 1))) * SUB_S
    lead_ok = start_s if first == 0 else hop * SUB_S
    trail_ok = end_s if last == count - 1 else hop * SUB_S
    if lead - lead_ok > EXTRA_S:
        return SoundMatch(False, f"{lead - lead_ok:.1f} s of audio precede the signed content", data)
    if trail - trail_ok > EXTRA_S:
        return SoundMatch(False, f"{trail - trail_ok:.1f} s of audio follow the signed content", data)
    length = count * hop * SUB_S
    begin = max(0.0, (shift - start) * SUB_S)  # the content time at the file's first sample
    end = min(length, (slider.total + shift - start) * SUB_S)
    louder = f", its level changed by {-level:+.1f} dB" if abs(level) >= 1.0 else ""
    if begin > END_CUT_S or length - end > END_CUT_S:
        excerpt = Excerpt(begin, end, length)
        return SoundMatch(True, excerpt.phrase("sound") + louder, data | {"excerpt": excerpt.data()})
    return SoundMatch(True, f"the same sound, re-encoded since signing{louder}", data)
