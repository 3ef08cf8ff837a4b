"""What stays on the frame grid of a panning clip: the mark (and a burned-in warning) with the moving content taken
out, for the video detector (:func:`kzlabel.formats.video.codec.detect_watermark`).

The mark is embedded on the frame grid; in a pan the content moves under it. A re-encoder's P frames predict each
frame from the last one shifted with the content, so the key frame's mark is dragged along with the content and at
CRF 32 only part of the static mark is coded back in each frame. Two things follow:

- aligning the frames on the content (motion-compensated averaging) aligns the dragged mark too, but also the content,
  the detector's noise: that sum is the key frame again, with its content;
- in the frames as they are, the static part of the mark stays where it was embedded while the content moves. With
  the content's shift per frame known, the content is one picture seen at different offsets: its estimate (the frames
  aligned on the content and averaged) is moved back onto each frame and subtracted. What is left, averaged over the
  frames, is what did not move: the static mark, the warning, coding noise, the content moving on its own (a ball).

The detector reads the first (key) frame plus that static part (:data:`STATIC_GAIN` times, the static part being the
weaker): the same mark at the same place over the key frame's content only. Measured on 24 marked 4-s pans
(480×270 scaled to 426×240, CRF 32): that picture read the payload in 23 (the weighted mean of the opening: 20).
Weights of 2 to 32 were tried: 8 to 16 within a factor of 2 in p, 16 reading one clip more but weaker elsewhere.
"""

from __future__ import annotations

import cv2
import numpy as np

WORK_SIDE = 256  # frames are aligned at most this size on the shorter side (chips stay ≥ 3.75 px: the mark's at 240)
STATIC_GAIN = 8.0  # the static part's weight over the key frame (2-32 tried; see the module docstring)
MIN_TRAVEL = 2.0  # px at the working size: a smaller content shift over the opening is no pan (the view is skipped)
_ANCHOR = 8  # a frame's shift is measured against the last anchor (every 8th frame): drift only across anchors
_BAND = (2.0, 8.0)  # Gaussian sigmas of the band the content's shift is measured in (see _band)
_NOISE = 1.0  # grey levels of the band that count as coding noise, not change (see content_shifts)


def shrunk(y: np.ndarray) -> np.ndarray:
    """A luma plane (uint8) as float32, shrunk so its shorter side is at most WORK_SIDE."""
    f = WORK_SIDE / min(y.shape)
    if f >= 1.0:
        return y.astype(np.float32)
    size = (max(round(y.shape[1] * f), 1), max(round(y.shape[0] * f), 1))
    return cv2.resize(y, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def _band(y: np.ndarray) -> np.ndarray:
    """The content's middle band at half size (σ 2-8 px at full): fine detail (the mark, coding blocks) and the
    burned-in warning's edges are static and pulled a whitened (phase) correlation to no shift (its peak at 0 held
    0.8-0.9 of the total on a 2-px-a-frame pan, the pan 0.04), so the shift is found by plain correlation of this
    band. Half size: a quarter of the cost, and the peak is refined to sub-pixel anyway."""
    half = cv2.pyrDown(y)
    lo, hi = _BAND
    return cv2.subtract(cv2.GaussianBlur(half, (0, 0), lo / 2), cv2.GaussianBlur(half, (0, 0), hi / 2))


def _peak(spectrum_a: np.ndarray, spectrum_b: np.ndarray) -> np.ndarray:
    """(dx, dy) such that b(x) ≈ a(x - d) (the spectra's picture size): the correlation peak, refined to sub-pixel by
    a parabola on each axis."""
    r = cv2.idft(cv2.mulSpectrums(spectrum_b, spectrum_a, 0, conjB=True), flags=cv2.DFT_REAL_OUTPUT)
    h, w = r.shape
    i, j = np.unravel_index(int(np.argmax(r)), r.shape)

    def vertex(m: float, c: float, p: float) -> float:
        d = m - 2.0 * c + p
        return 0.0 if d >= 0 else 0.5 * (m - p) / d

    dy = vertex(r[i - 1, j], r[i, j], r[(i + 1) % h, j])
    dx = vertex(r[i, j - 1], r[i, j], r[i, (j + 1) % w])
    return np.array([(j + w // 2) % w - w // 2 + dx, (i + h // 2) % h - h // 2 + dy])


def content_shifts(frames: list[np.ndarray]) -> np.ndarray:
    """Each frame's content offset from the first, (N, 2) as (dx, dy): frame k ≈ frame 0 moved by it.

    Each pixel of the band counts by the share of its energy that changes over the frames: a burned-in warning's
    plate and a static sky change only by coding noise, and their edges, at full weight, held the peak at no shift
    (a 1.8-px-a-frame pan under a plate a quarter of the frame high was measured at 1 px over 47 frames, not 83)."""
    bands = np.stack([_band(y) for y in frames])
    spread, level = bands.std(axis=0), bands.mean(axis=0)
    weight = spread * spread / (spread * spread + level * level + _NOISE * _NOISE)
    n, h, w = bands.shape
    weight *= cv2.createHanningWindow((w, h), cv2.CV_32F)
    size = (cv2.getOptimalDFTSize(w), cv2.getOptimalDFTSize(h))
    spectra: dict[int, np.ndarray] = {}

    def spectrum(k: int) -> np.ndarray:
        if k not in spectra:
            band = cv2.multiply(bands[k], weight)
            padded = cv2.copyMakeBorder(band, 0, size[1] - h, 0, size[0] - w, cv2.BORDER_CONSTANT, value=0.0)
            spectra[k] = cv2.dft(padded)
        return spectra[k]

    out = np.zeros((n, 2))
    for k in range(1, n):
        anchor = (k - 1) // _ANCHOR * _ANCHOR
        out[k] = out[anchor] + 2.0 * _peak(spectrum(anchor), spectrum(k))
    return out


def static_part(frames: list[np.ndarray], shifts: np.ndarray) -> np.ndarray:
    """What stays on the frame grid: frames ≈ their content moved by ``shifts`` + this.

    The content is the frames aligned and averaged; the static part is the mean over the frames of what the content
    does not explain, moved back onto the frame grid (see the module docstring). Residuals are taken where the
    frames are aligned (one interpolation of each frame, as in the content's estimate, so its detail cancels). A
    second round, aligning the frames less the first static part (the warning no longer smeared over the content),
    explained more of the frames but read the mark no better (24 clips), so there is one."""
    h, w = frames[0].shape
    origin = 2.0 + shifts.max(axis=0)
    cw, ch = (int(np.ceil(w + np.ptp(shifts[:, 0]))) + 4, int(np.ceil(h + np.ptp(shifts[:, 1]))) + 4)
    total, count = np.zeros((ch, cw), np.float32), np.zeros((ch, cw), np.float32)
    placed = []
    for y, s in zip(frames, shifts, strict=True):
        t = origin - s  # frame pixel x lands on canvas x + t
        m = np.array([[1, 0, t[0]], [0, 1, t[1]]], np.float32)
        moved = cv2.warpAffine(y, m, (cw, ch), flags=cv2.INTER_LINEAR)
        # the canvas cells fully inside this frame (the bilinear warp is exact only there)
        x0, y0 = int(np.ceil(t[0])), int(np.ceil(t[1]))
        x1, y1 = int(np.floor(t[0])) + w, int(np.floor(t[1])) + h
        total[y0:y1, x0:x1] += moved[y0:y1, x0:x1]
        count[y0:y1, x0:x1] += 1.0
        placed.append((t, moved))
    content = total / np.maximum(count, 1.0)
    sums, n = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for t, moved in placed:
        # back onto the frame grid from the window of the canvas this frame covers (a fractional shift is left)
        ix, iy = int(np.floor(t[0])), int(np.floor(t[1]))
        x0, y0 = int(np.ceil(t[0])) - ix, int(np.ceil(t[1])) - iy
        r, inside = np.zeros((h + 1, w + 1), np.float32), np.zeros((h + 1, w + 1), np.float32)
        win = (slice(iy + y0, iy + h), slice(ix + x0, ix + w))
        r[y0:h, x0:w] = moved[win] - content[win]
        inside[y0:h, x0:w] = 1.0
        m = np.array([[1, 0, t[0] - ix], [0, 1, t[1] - iy]], np.float32)
        sums += cv2.warpAffine(r, m, (w, h), flags=flags)
        n += cv2.warpAffine(inside, m, (w, h), flags=flags)
    return np.where(n > 0.5, sums / np.maximum(n, 0.5), 0.0).astype(np.float32)


def panned_view(frames: list[np.ndarray]) -> np.ndarray | None:
    """The first frame plus STATIC_GAIN × the static part, at the working size; None when the content moves less
    than MIN_TRAVEL over the frames (nothing to take out: the view would be the first frame again)."""
    if len(frames) < 3:
        return None
    shifts = content_shifts(frames)
    if float(np.abs(shifts).max()) < MIN_TRAVEL:
        return None
    return cv2.add(frames[0], cv2.multiply(static_part(frames, shifts), STATIC_GAIN))
