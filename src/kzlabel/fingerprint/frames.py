"""The frame fingerprint that binds a signed video label to every frame (numpy only, no I/O).

Every decoded frame is area-averaged to a :data:`FINE` × :data:`FINE` picture in display orientation (the caller
does that with swscale, which is cheap: ~1 ms for a 1080p frame) and pooled into a :data:`GRID` × :data:`GRID` luma
grid and a :data:`CGRID` × :data:`CGRID` grid of each chroma plane, leaving out the cells under a burned-in warning
(the picture's body, as images have). Frames are grouped by time into segments of ``seg_s`` seconds (0.5 s, longer
for videos over a minute so a label holds at most :data:`MAX_SEGMENTS`), and a segment is signed as

- the mean of its frames' grids (what was shown), in levels of two (one byte per cell);
- its largest frame-to-frame change (the mean over the luma grid of the change between consecutive frames): a cut
  made by an edit — frames removed, inserted or replaced — is a jump that the motion of the content does not make,
  however short the edit.

All of it is delta-coded from segment to segment and compressed (zlib). Verify computes the same per frame and
slides the signed segments over the file's frames in steps of a frame: at the signed alignment (give or take an
encoder's delay) for a file as long as the signed one, anywhere for a shorter one (an excerpt: a contiguous stretch
of the signed frames). A segment is the same picture when no luma cell moved by more than :data:`LUMA_MAX`, the
cells by :data:`LUMA_MEAN` on average, no chroma cell by :data:`CHROMA_MAX`, and its largest jump by no more than
:data:`JUMP_TOL` over the signed one. The figures behind the thresholds are in docs/label-format.md.
"""

from __future__ import annotations

import base64
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .common import Excerpt

__all__ = ["FINE", "FrameMatch", "FrameTrack", "MaskPlan", "frame_print", "match_frames", "segment_length"]

FINE = 64  # frames are area-averaged to FINE × FINE (display orientation) before pooling
GRID = 8  # luma cells per side
CGRID = 2  # chroma cells per side, each of U and V
LUMA = GRID * GRID
FEATURES = LUMA + 2 * CGRID * CGRID
STEP = 2.0  # levels per stored unit
SEG_S = 0.5  # segment length for videos up to MAX_SEGMENTS × SEG_S
MAX_SEGMENTS = 120
EARLY_MARGIN_S = 1.0  # frames this far past the warning switch keep the early mask too (an excerpt moves them)
# Measured (tests' and benchmarks' clips: a photo panned, a tall photo panned, testsrc2, mandelbrot, a game of life,
# a dark noisy pan; 12 s each): CRF 28/32, 480p, 240 px on either side at CRF 32, VP9 CRF 40, 25 fps move a segment's
# worst luma cell by ≤ 5.9 levels (mean ≤ 3.6, the game of life at 240 px), a chroma cell by ≤ 5.5, its largest jump
# by ≤ 9.8 over the signed one (mandelbrot at 240 px: aliasing flicker); a 20 % patch for 1 s, half a second removed,
# inserted or replaced move the worst luma cell by 12-103 on the panned photos and testsrc2.
LUMA_MAX = 10.0
LUMA_MEAN = 5.0
CHROMA_MAX = 8.0
JUMP_TOL = 15.0
EXTRA_TOL_S = 0.3  # video beyond the signed frames tolerated at either end (an encoder's frame or two)
EXCERPT_TOL_S = 0.3  # signed frames missing at an end below this are a re-encode's rounding, not an excerpt
NEAR_S = 0.5  # the alignments tried around the signed one (an encoder's delay, an edit list)


@dataclass(frozen=True)
class MaskPlan:
    """Which fine cells to leave out: ``early`` before ``switch_s`` (signed time), ``late`` from then on."""

    early: np.ndarray
    late: np.ndarray
    switch_s: float = 0.0

    @classmethod
    def from_boxes(cls, early: Sequence[Sequence[float]], late: Sequence[Sequence[float]], switch_s: float) -> MaskPlan:
        return cls(_mask(early), _mask(late), switch_s)

    @classmethod
    def none(cls) -> MaskPlan:
        return cls(_mask([]), _mask([]), 0.0)

    def clear_cells(self) -> np.ndarray:
        """(LUMA,) the luma cells neither mask touches (all of them when the masks leave none)."""
        k = FINE // GRID
        touched = (self.early | self.late).reshape(GRID, k, GRID, k).any(axis=(1, 3)).ravel()
        return ~touched if (~touched).any() else np.ones(LUMA, bool)


def _mask(boxes: Sequence[Sequence[float]]) -> np.ndarray:
    """FINE × FINE, True where a box (x, y, w, h as fractions of the displayed frame, widened by a cell) covers."""
    out = np.zeros((FINE, FINE), bool)
    for x, y, w, h in boxes:
        x0, y0 = max(int(np.floor(x * FINE)) - 1, 0), max(int(np.floor(y * FINE)) - 1, 0)
        x1, y1 = min(int(np.ceil((x + w) * FINE)) + 1, FINE), min(int(np.ceil((y + h) * FINE)) + 1, FINE)
        out[y0:y1, x0:x1] = True
    return out


def _pool(fine: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(FEATURES,) masked cell means of a (3, FINE, FINE) picture; NaN for a cell the mask covers whole."""
    keep = (~mask).astype(np.float32)
    out = np.empty(FEATURES, np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = FINE // GRID
        w = keep.reshape(GRID, k, GRID, k).sum(axis=(1, 3))
        out[:LUMA] = ((fine[0] * keep).reshape(GRID, k, GRID, k).sum(axis=(1, 3)) / w).ravel()
        k = FINE // CGRID
        w = keep.reshape(CGRID, k, CGRID, k).sum(axis=(1, 3))
        for i in (1, 2):
            part = (fine[i] * keep).reshape(CGRID, k, CGRID, k).sum(axis=(1, 3)) / w
            at = LUMA + (i - 1) * CGRID * CGRID
            out[at : at + CGRID * CGRID] = part.ravel()
    return out


class _Rows:
    """float16 rows appended one at a time into blocks of 4096 (a list of small arrays costs ~100 bytes of overhead
    a row)."""

    BLOCK = 4096

    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []
        self.n = 0

    def add(self, row: np.ndarray) -> None:
        if self.n % self.BLOCK == 0:
            self.blocks.append(np.empty((self.BLOCK, FEATURES), np.float16))
        self.blocks[-1][self.n % self.BLOCK] = row
        self.n += 1

    def array(self) -> np.ndarray:
        whole = np.concatenate(self.blocks) if self.blocks else np.zeros((0, FEATURES), np.float16)
        return whole[: self.n].astype(np.float32)


class FrameTrack:
    """The pooled grids of every frame of a stream fed in display order (memory: 146 bytes a frame, ~16 MB per
    hour at 30 fps): with the late mask for every frame, with the early one too for the opening frames."""

    def __init__(self, plan: MaskPlan) -> None:
        self.plan = plan
        self.same_masks = bool(np.array_equal(plan.early, plan.late))
        self.times: list[float] = []
        self._late = _Rows()
        self._early = _Rows()

    def add(self, t: float, fine: np.ndarray) -> None:
        fine = np.asarray(fine, np.float32)
        self.times.append(float(t))
        self._late.add(_pool(fine, self.plan.late))
        if not self.same_masks and t < self.plan.switch_s + EARLY_MARGIN_S:
            self._early.add(_pool(fine, self.plan.early))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(times, late grids, early grids of the first frames), in the order fed."""
        return np.asarray(self.times, np.float64), self._late.array(), self._early.array()

    def __len__(self) -> int:
        return len(self.times)


def segment_length(duration: float) -> float:
    """Seconds per segment: :data:`SEG_S`, longer when that would make more than :data:`MAX_SEGMENTS`."""
    return max(SEG_S, round(duration / MAX_SEGMENTS + 0.0005, 3))


@dataclass
class _Frames:
    """A file's frames ready to be cut into segments at any alignment."""

    t: np.ndarray
    late: np.ndarray
    early: np.ndarray
    switch_s: float
    dt: float  # the usual frame interval
    clear: np.ndarray  # the luma cells no mask touches
    start: float = 0.0  # the first frame's time
    end: float = 0.0  # the time the last frame ends
    cum: np.ndarray = field(init=False)
    cnt: np.ndarray = field(init=False)
    jumps: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        valid = ~np.isnan(self.late)
        self.cum = np.concatenate([np.zeros((1, FEATURES)), np.cumsum(np.where(valid, self.late, 0.0), axis=0)])
        self.cnt = np.concatenate([np.zeros((1, FEATURES)), np.cumsum(valid, axis=0)])
        luma = self.late[:, :LUMA]
        both = ~np.isnan(luma[1:]) & ~np.isnan(luma[:-1])
        diff = np.where(both, np.abs(luma[1:] - luma[:-1]), 0.0).sum(axis=1) / np.maximum(both.sum(axis=1), 1)
        self.jumps = np.concatenate([[0.0], diff])  # jumps[i]: the change from frame i-1 to frame i
        self.start = float(self.t[0]) if len(self.t) else 0.0
        self.end = float(self.t[-1]) + self.dt if len(self.t) else 0.0

    @classmethod
    def of(cls, track: FrameTrack) -> _Frames:
        t, late, early = track.arrays()
        if np.any(np.diff(t) < 0):  # not in display order (a damaged stream's timestamps): sorted, late masks only
            order = np.argsort(t, kind="stable")
            t, late, early = t[order], late[order], early[:0]
        gaps = np.diff(t)
        dt = float(np.median(gaps[gaps > 0])) if (gaps > 0).any() else 0.04
        return cls(t, late, early, track.plan.switch_s, dt, track.plan.clear_cells())

    def segments(self, tau: float, seg_s: float, count: int, length: float) -> tuple[np.ndarray, np.ndarray]:
        """((count, FEATURES + 1) segment values — grid means, then the largest jump — and (count,) which
        segments the file holds whole, with signed time = file time + ``tau``."""
        edges = np.minimum(np.arange(count + 1) * seg_s, length)
        lo = np.searchsorted(self.t, edges[:-1] - tau - 1e-6)
        hi = np.searchsorted(self.t, edges[1:] - tau - 1e-6)
        half = self.dt / 2
        present = (edges[:-1] - tau >= self.start - half) & (edges[1:] - tau <= self.end + half) & (hi > lo)
        n = np.maximum(self.cnt[hi] - self.cnt[lo], 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = (self.cum[hi] - self.cum[lo]) / n
        values[n == 0] = np.nan
        for k in np.flatnonzero(present & (edges[:-1] < self.switch_s)):  # segments that need the early mask
            idx = np.arange(lo[k], hi[k])
            early = idx[(self.t[idx] + tau < self.switch_s) & (idx < len(self.early))]
            if len(early):
                rows = np.concatenate([self.early[early], self.late[np.setdiff1d(idx, early)]])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # a cell masked in every frame stays NaN
                    values[k] = np.nanmean(rows, axis=0)
        jump = np.array([self.jumps[a:b].max() if b > a else 0.0 for a, b in zip(lo, hi, strict=True)])
        return np.concatenate([values, jump[:, None]], axis=1), present


def frame_print(track: FrameTrack, seg_s: float, length: float) -> dict[str, Any]:
    """The signed fingerprint of the frames ``track`` holds, ``length`` seconds from time 0 in segments of
    ``seg_s``."""
    frames = _Frames.of(track)
    count = max(1, int(np.ceil(length / seg_s - 1e-6)))
    values, _ = frames.segments(0.0, seg_s, count, length)
    units = np.where(np.isnan(values), 255, np.clip(np.rint(values / STEP), 0, 127)).astype(np.uint8)
    deltas = np.diff(units.astype(np.int16), axis=0, prepend=0).astype(np.uint8)  # wraps mod 256
    packed = zlib.compress(deltas.tobytes(), 9)
    return {"seg_s": seg_s, "grid": [GRID, CGRID], "segments": count, "values": base64.b64encode(packed).decode()}


def _signed_values(signed: dict[str, Any]) -> np.ndarray:
    """(segments, FEATURES + 1) signed values in levels, NaN where masked (ValueError when malformed)."""
    if list(signed.get("grid", [])) != [GRID, CGRID]:
        raise ValueError("another grid")
    count = int(signed["segments"])
    raw = np.frombuffer(zlib.decompress(base64.b64decode(str(signed["values"]), validate=True)), np.uint8)
    units = np.cumsum(raw.reshape(count, FEATURES + 1).astype(np.int64), axis=0) % 256
    return np.where(units == 255, np.nan, units * STEP)


@dataclass(frozen=True)
class FrameMatch:
    same: bool | None  # None: nothing to compare
    detail: str
    tau: float = 0.0  # signed time = file time + tau
    excerpt: Excerpt | None = None
    data: dict[str, Any] = field(default_factory=dict)


_Fit = tuple[float, np.ndarray, np.ndarray]  # (mean luma error, per-segment failure flags, present)


def _fit(frames: _Frames, want: np.ndarray, tau: float, seg_s: float, length: float) -> tuple[_Fit, dict[str, Any]]:
    got, present = frames.segments(tau, seg_s, len(want), length)
    with np.errstate(invalid="ignore"):
        diff = np.abs(got - want)
    luma, chroma, jump = diff[:, :LUMA], diff[:, LUMA:FEATURES], got[:, FEATURES] - want[:, FEATURES]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: segments the file does not hold
        luma_max = np.nan_to_num(np.nanmax(luma, axis=1))
        luma_mean = np.nan_to_num(np.nanmean(luma, axis=1))
        chroma_max = np.nan_to_num(np.nanmax(chroma, axis=1))
    fails = present & ((luma_max > LUMA_MAX) | (luma_mean > LUMA_MEAN) | (chroma_max > CHROMA_MAX) | (jump > JUMP_TOL))
    score = float(luma_mean[present].mean()) if present.any() else np.inf
    stats = {
        "luma_max": round(float(luma_max[present].max()), 1) if present.any() else None,
        "chroma_max": round(float(chroma_max[present].max()), 1) if present.any() else None,
        "jump_over": round(float(np.nan_to_num(jump[present]).max()), 1) if present.any() else None,
    }
    return (score, fails, present), stats


def match_frames(track: FrameTrack, signed: dict[str, Any], length: float) -> FrameMatch:
    """Slide the signed segments over the frames ``track`` holds: the same frames (re-encoded, rescaled), an
    excerpt of them, or changed — and where. ``length``: the signed frames' duration."""
    try:
        seg_s = float(signed["seg_s"])
        want = _signed_values(signed)
    except (KeyError, TypeError, ValueError, zlib.error):
        return FrameMatch(False, "the signed frame fingerprint is malformed")
    if not len(track) or seg_s <= 0:
        return FrameMatch(False, "no frame to compare")
    frames = _Frames.of(track)
    step = frames.dt
    near = sorted({0.0, *np.arange(-NEAR_S, NEAR_S + step / 2, step).round(6)}, key=abs)
    tried: list[tuple[float, FrameMatch]] = []
    best: tuple[_Fit, dict[str, Any], float] | None = None
    for tau in near:  # the signed alignment first; another must fit clearly better
        fit, stats = _fit(frames, want, tau, seg_s, length)
        if best is None or fit[0] < best[0][0] - 0.05:
            best = (fit, stats, tau)
    assert best is not None
    first = _judge(frames, want, *best, seg_s, length)
    if first.same and first.excerpt is None:
        return first
    tried.append((best[0][0] - 0.1, first))
    for tau in _anywhere(frames, want, seg_s, length):
        around = [tau + i * step for i in range(-2, 3)]
        fits = [(_fit(frames, want, x, seg_s, length), x) for x in around]
        (fit, stats), x = min(fits, key=lambda f: f[0][0][0])
        tried.append((fit[0], _judge(frames, want, fit, stats, x, seg_s, length)))
    held = [t for t in tried if t[1].same]
    return min(held, key=lambda t: t[0])[1] if held else first


def _anywhere(frames: _Frames, want: np.ndarray, seg_s: float, length: float, keep: int = 3) -> list[float]:
    """The ``keep`` likeliest alignments of a shorter file anywhere in the signed frames, ranked by each segment's
    mean luma alone, one frame apart."""
    span = frames.end - frames.start
    taus = np.arange(-NEAR_S - frames.start, max(length - span, 0.0) + NEAR_S + frames.dt / 2, frames.dt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: frames or segments masked whole
        # the cells neither mask touches: the same in the file's frames and in every signed segment
        proxy = np.nanmean(frames.late[:, :LUMA][:, frames.clear], axis=1)
        signed = np.nanmean(want[:, :LUMA][:, frames.clear], axis=1)
    proxy = np.nan_to_num(proxy, nan=float(np.nanmean(proxy)) if np.isfinite(proxy).any() else 0.0)
    cum = np.concatenate([[0.0], np.cumsum(proxy)])
    count = len(want)
    edges = np.minimum(np.arange(count + 1) * seg_s, length)
    scores = np.full(len(taus), np.inf)
    half = frames.dt / 2
    for i in range(0, len(taus), 512):
        part = taus[i : i + 512, None]
        lo = np.searchsorted(frames.t, edges[None, :-1] - part - 1e-6)
        hi = np.searchsorted(frames.t, edges[None, 1:] - part - 1e-6)
        present = (edges[None, :-1] - part >= frames.start - half) & (edges[None, 1:] - part <= frames.end + half)
        present &= hi > lo
        mean = (cum[hi] - cum[lo]) / np.maximum(hi - lo, 1)
        err = np.where(present, np.abs(mean - signed[None, :]), 0.0)
        n = present.sum(axis=1)
        scores[i : i + 512] = np.where(n >= min(2, count), err.sum(axis=1) / np.maximum(n, 1), np.inf)
    picked: list[float] = []
    for j in np.argsort(scores):
        if not np.isfinite(scores[j]) or len(picked) == keep:
            break
        if all(abs(taus[j] - other) > 2 * frames.dt for other in picked):
            picked.append(float(taus[j]))
    return picked


def _judge(
    frames: _Frames, want: np.ndarray, fit: _Fit, stats: dict[str, Any], tau: float, seg_s: float, length: float
) -> FrameMatch:
    score, fails, present = fit
    data = {"shift_s": round(tau, 3), **stats}
    if present.sum() < min(2, len(want)):
        return FrameMatch(False, "the video is too short to compare with the signed frames", tau, data=data)
    if fails.any():
        at = int(np.flatnonzero(fails)[0]) * seg_s
        return FrameMatch(False, f"the picture changed since signing (around {at:.1f} s)", tau, data=data)
    before = -(frames.start + tau)
    after = frames.end + tau - length
    if before > EXTRA_TOL_S:
        return FrameMatch(False, f"{before:.1f} s of video precede the signed frames", tau, data=data)
    if after > EXTRA_TOL_S:
        return FrameMatch(False, f"{after:.1f} s of video follow the signed frames", tau, data=data)
    begin, end = max(0.0, frames.start + tau), min(length, frames.end + tau)
    if begin > EXCERPT_TOL_S or length - end > EXCERPT_TOL_S:
        excerpt = Excerpt(begin, end, length)
        return FrameMatch(True, excerpt.phrase("video"), tau, excerpt, data)
    return FrameMatch(True, "re-encoded since signing, the same frames", tau, data=data)
