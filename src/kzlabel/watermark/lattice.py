"""Synchronisation of the image watermark: where the periodic tile lies in a picture that was cropped, scaled or
rotated, found from the autocorrelation of the whitened canvas (the tile repeats, so its lattice vectors are peaks).

Candidates come from three sources, ranked by *lattice consistency* (the mean autocorrelation at every small integer
combination a·v + b·h: a watermark lattice repeats, a host texture's quasi-period rarely does):

* the strongest peaks in the near-horizontal and near-vertical windows, each lag scored over its multiples, completed
  along the image-space perpendicular, halved (a smooth host can hide the first peak), and tried axis-aligned;
* one-parameter families of the common edits (:func:`families`: a size-keeping rotation, a crop of the same share of
  both dimensions, a cut from one side), each at the peak of its consistency score over a grid.

Pure numpy/OpenCV on canvases; the detector in :mod:`.image` measures each candidate's pilot.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

__all__ = ["CANVAS", "TILE", "autocorr", "bilinear_wrap", "families", "lattice_candidates", "peak_refine"]

CANVAS = 256  # canonical canvas side (canvas pixels = chips)
TILE = 32  # tile period in chips
_MIN_PERIOD = TILE * 0.56  # content shrunk on the canvas: padding/borders, or a 90° turn of a wide image
_MAX_PERIOD = TILE / 0.44  # up to ~55% of each dimension cropped away (or a 90° turn of a wide image)
_SNAP_SKEW = 1.5  # |off-axis lag| (canvas px) under which a lattice candidate is also tried axis-aligned
_MAX_SKEW = 6  # |off-axis lag| in canvas px (rotation up to ~10°)
_N_AC = 384  # zero-padded autocorrelation size (lags < 128 are wrap-free)


def box_wrap(a: np.ndarray, k: int) -> np.ndarray:
    """k×k mean over the torus (periodic edges), for spectra and autocorrelations: an FFT's edges wrap."""
    r = k // 2
    return cv2.blur(np.pad(a, r, mode="wrap"), (k, k), borderType=cv2.BORDER_CONSTANT)[r:-r, r:-r]


def _corners(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integer corner (row, col) below each position and the fractional parts, for bilinear sampling."""
    r0, c0 = np.floor(pos[0]), np.floor(pos[1])
    return r0.astype(np.intp), c0.astype(np.intp), pos[0] - r0, pos[1] - c0


def bilinear_wrap(a: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``a`` sampled bilinearly at ``pos`` (2, N) on the torus (lags of an autocorrelation wrap around)."""
    (n0, n1), (r0, c0, fr, fc) = a.shape, _corners(pos)
    r0 %= n0
    c0 %= n1
    r1, c1 = (r0 + 1) % n0, (c0 + 1) % n1
    return (a[r0, c0] * (1 - fr) + a[r1, c0] * fr) * (1 - fc) + (a[r0, c1] * (1 - fr) + a[r1, c1] * fr) * fc


def _parabolic(a: float, b: float, c: float) -> float:
    den = a - 2 * b + c
    return 0.0 if den >= 0 else float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))


def peak_refine(ac: np.ndarray, r: int, c: int) -> tuple[float, float]:
    n0, n1 = ac.shape
    fr = _parabolic(ac[(r - 1) % n0, c], ac[r % n0, c], ac[(r + 1) % n0, c])
    fc = _parabolic(ac[r % n0, (c - 1) % n1], ac[r % n0, c], ac[r % n0, (c + 1) % n1])
    return r + fr, c + fc


def autocorr(w: np.ndarray) -> np.ndarray:
    """Autocorrelation of the whitened canvas with a flattened spectrum (periodic lines stand out of the host)."""
    n2 = _N_AC
    f = np.fft.rfft2(w.astype(np.float32), s=(n2, n2))  # float32: half the FFT work, ample for locating peaks
    pw = f.real**2 + f.imag**2
    pw /= box_wrap(pw, 9) + 1e-9 * (pw.mean() + 1e-30)
    ac = np.fft.irfft2(pw, s=(n2, n2))
    return ac - box_wrap(ac, 9)


def lattice_candidates(w: np.ndarray, shape: tuple[int, int], limit: int) -> list[np.ndarray]:
    """Candidate 2×2 maps (chip index (row, col) -> canvas (row, col)), most likely first.

    The two lattice vectors are the strongest autocorrelation peaks in the near-horizontal / near-vertical search
    windows (periods from a small enlargement to ~1/3 cropped, skew up to ±_MAX_SKEW px); besides all pairs of the
    top peaks, each peak is completed by the strongest peak along its perpendicular in image space, which rescues
    images whose own texture hides one of the two peaks. ``shape`` is the observed image's (H, W).
    """
    n2 = _N_AC
    ac = autocorr(w)
    lo, hi = int(np.floor(_MIN_PERIOD)), int(np.ceil(_MAX_PERIOD)) + 1
    sk = _MAX_SKEW
    noise = float(np.std(ac[np.ix_(np.arange(-sk, sk + 1) % n2, np.arange(lo, hi))])) + 1e-12

    # a lattice peak repeats at its multiples, a host texture's quasi-period rarely does: score each lag by the mean
    # autocorrelation over its multiples inside the wrap-free lags (a 3×3 maximum absorbs the rounding of k·v)
    acd = cv2.dilate(np.pad(ac, 1, mode="wrap"), np.ones((3, 3), np.uint8))[1:-1, 1:-1]

    def comb(pts: np.ndarray) -> np.ndarray:
        total, count = bilinear_wrap(ac, pts), np.ones(pts.shape[1])
        for k in (2, 3):
            ok = np.hypot(*(k * pts)) < _N_AC - CANVAS + 2
            total += np.where(ok, bilinear_wrap(acd, k * pts), 0.0)
            count += ok
        return total / count

    def comb_grid(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        return comb(np.stack([rr.ravel(), cc.ravel()]).astype(np.float64)).reshape(rr.shape)

    def peaks(horizontal: bool, k: int = 3) -> list[tuple[float, np.ndarray]]:
        rows, cols = (np.arange(-sk, sk + 1), np.arange(lo, hi))
        if not horizontal:
            rows, cols = cols, rows
        sub = comb_grid(rows, cols)
        order = np.argsort(sub, axis=None)[::-1]
        out: list[tuple[float, np.ndarray]] = []
        for idx in order[:20]:
            i, j = np.unravel_index(idx, sub.shape)
            v = np.array([rows[i], cols[j]], np.float64)
            if any(np.abs(v - u).max() <= 2.5 for _, u in out):
                continue
            out.append((float(sub[i, j]) / noise, v))
            if len(out) >= k:
                break
        return [(sc, _refine_vector(ac, v)) for sc, v in out]

    hs = [v for _, v in peaks(True, 4)]
    vs = [v for _, v in peaks(False, 4)]
    # image-space rotation/scale/crop keep the two lattice vectors perpendicular in *image* pixels: complete each
    # peak with the best peaks along its image-space perpendicular (canvas axes are scaled by 256/H and 256/W)
    sr, sc = CANVAS / shape[0], CANVAS / shape[1]
    ts = np.arange(lo, hi, 0.25)

    def along(d_img: np.ndarray, k: int = 2) -> list[np.ndarray]:
        d = np.array([d_img[0] * sr, d_img[1] * sc])
        d /= np.hypot(*d)
        pts = ts[None, :] * d[:, None]
        vals = comb(pts)
        out: list[np.ndarray] = []
        for i in np.argsort(vals)[::-1]:
            if all(abs(ts[i] - ts[j]) > 2.0 for j in out):
                out.append(i)
            if len(out) >= k:
                break
        return [_refine_vector(ac, np.round(pts[:, i])) for i in out]

    pairs: list[np.ndarray] = []
    for h in hs:
        pairs += [np.stack([v, h], axis=1) for v in vs]
        hi_ = np.array([h[0] / sr, h[1] / sc])
        pairs += [np.stack([v, h], axis=1) for v in along(np.array([hi_[1], -hi_[0]]))]
    for v in vs:
        vi_ = np.array([v[0] / sr, v[1] / sc])
        pairs += [np.stack([v, h], axis=1) for h in along(np.array([-vi_[1], vi_[0]]))]

    # a peak may be the 2nd multiple of the true period (a smooth host hides the 1st, and the window now reaches
    # twice the smallest period): also offer the halved vectors and let the consistency score below decide (v was
    # refined on its own multiples, so v / 2 needs no refinement of its own)
    def half(v: np.ndarray) -> np.ndarray | None:
        return v / 2 if np.hypot(*v) / 2 >= lo else None

    for L in list(pairs):
        v2, h2 = half(L[:, 0]), half(L[:, 1])
        for a_, b_ in ((v2, L[:, 1]), (L[:, 0], h2), (v2, h2)):
            if a_ is not None and b_ is not None:
                pairs.append(np.stack([a_, b_], axis=1))
    # crops and aspect changes keep the lattice axis-aligned: a near-axis pair also stands with its skew removed (a
    # host texture can pull a refined peak sideways by most of a pixel, which misaligns the fold by a chip or more)
    for L in list(pairs):
        if abs(L[1, 0]) <= _SNAP_SKEW and abs(L[0, 1]) <= _SNAP_SKEW:
            pairs.append(np.diag(np.diag(L)))
    # lattice consistency: a watermark lattice has autocorrelation peaks at every small integer combination a·v+b·h,
    # a host texture's quasi-periodicity rarely does
    ab = np.array([(a_, b_) for a_ in range(4) for b_ in range(-3, 4) if (a_, b_) > (0, 0)], np.float64).T

    def consistency(L3: np.ndarray) -> np.ndarray:
        pts = np.einsum("nij,jk->nik", L3, ab)  # (n, 2, m)
        ok = np.hypot(pts[:, 0], pts[:, 1]) < _N_AC - CANVAS + 2
        vals = bilinear_wrap(ac, pts.transpose(1, 0, 2).reshape(2, -1))
        return (vals.reshape(ok.shape) * ok).sum(axis=1) / np.maximum(ok.sum(axis=1), 1)

    L3 = np.stack(pairs)  # (n, 2, 2)
    score = consistency(L3)
    # the common edits move the lattice along one-parameter families, each tried at the peak of its consistency score
    # over a grid (on textured photos their autocorrelation peaks drown in the host's, and a refined peak a few
    # hundredths off misaligns the fold by a chip): a rotation that keeps the picture's size (an editor's straighten,
    # Pillow's rotate) is D·R(θ)·D⁻¹ with D the image-to-canvas scaling; a crop of the same share of both dimensions
    # (centred or from a corner) scales both canvas axes by s; a cut from one side scales one axis
    rot: list[tuple[float, np.ndarray]] = []
    for family, grid, keep in families(sr / sc):
        fs = consistency(family(grid) * TILE)
        found = 0
        for i in np.argsort(-fs):
            if found >= keep:
                break
            if 0 < i < len(grid) - 1 and fs[i] >= fs[i - 1] and fs[i] >= fs[i + 1]:  # a local peak, refined
                x = grid[i] + _parabolic(fs[i - 1], fs[i], fs[i + 1]) * (grid[1] - grid[0])
                A = family(np.array([x]))[0]
                if np.abs(A - np.eye(2)).max() > 1e-3 and all(np.abs(A - B).max() > 0.02 for _, B in rot):
                    rot.append((x, A))
                    found += 1
    out: list[np.ndarray] = [A for _, A in rot]
    for A in L3[np.argsort(-score, kind="stable")] / TILE:  # best first, near-duplicates dropped
        if not out or np.abs(np.stack(out) - A).max(axis=(1, 2)).min() > 0.1 / TILE:
            out.append(A)
            if len(out) > limit + len(rot):  # the caller tries at most limit - 1 (one may be the identity)
                break
    return out


def families(aspect: float) -> list[tuple[Callable[[np.ndarray], np.ndarray], np.ndarray, int]]:
    """One-parameter lattice families (parameter grid -> (n, 2, 2) maps in tile units), their grids and how many
    peaks of each :func:`_lattice_candidates` keeps. ``aspect``: canvas px per image px, rows over columns."""

    def rotation(deg: np.ndarray) -> np.ndarray:
        t = np.deg2rad(deg)
        c, s = np.cos(t), np.sin(t)
        return np.stack([np.stack([c, -s * aspect], -1), np.stack([s / aspect, c], -1)], 1)

    def scaled(rows: bool, cols: bool) -> Callable[[np.ndarray], np.ndarray]:
        def family(k: np.ndarray) -> np.ndarray:
            one = np.ones_like(k)
            return np.stack([np.stack([k if rows else one, 0 * k], -1), np.stack([0 * k, k if cols else one], -1)], 1)

        return family

    crop = np.arange(1.02, 2.21, 0.01)  # up to ~55% of a dimension cut away (as _MAX_PERIOD)
    return [
        (rotation, np.arange(-12.0, 12.01, 0.25), 2),
        (scaled(True, True), crop, 1),
        (scaled(True, False), crop, 1),
        (scaled(False, True), crop, 1),
    ]


def _refine_vector(ac: np.ndarray, v: np.ndarray) -> np.ndarray:
    n2 = ac.shape[0]
    r, c = peak_refine(ac, int(v[0]), int(v[1]))
    best = np.array([r, c])
    for k in (2, 3, 4):
        guess = best * k
        if np.hypot(*guess) > _N_AC - CANVAS + 2:
            break
        r0, c0 = round(guess[0]), round(guess[1])
        rr = np.arange(r0 - 2, r0 + 3)
        cc = np.arange(c0 - 2, c0 + 3)
        sub = ac[np.ix_(rr % n2, cc % n2)]
        i, j = np.unravel_index(np.argmax(sub), sub.shape)
        r, c = peak_refine(ac, int(rr[i]), int(cc[j]))
        best = np.array([r, c]) / k
    return best
