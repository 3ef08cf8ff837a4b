"""Invisible image watermark: a keyed, self-synchronising periodic tile in luma, computed on a fixed canvas.

Embedding (all vectorised, cost ~independent of image size above ~1 MP):

1. luma ``Y`` (BT.601) is area-downscaled to a fixed ``256×256`` canvas (anisotropically for non-square images);
2. a ``32×32`` tile of ±1 chips is built from the key and the 188-bit codeword (see :mod:`.core`): 272 keyed pilot
   chips (fixed signs) and 752 data chips (each coded bit spread over 4 chips at keyed positions with keyed signs);
   the tile is repeated 8×8 times over the canvas;
3. the chips are multiplied by a perceptual strength map computed on the canvas (local activity of the high-passed
   luma = texture masking, with a floor so flat areas still carry a weak mark, reduced near black/white clipping);
4. the canvas residual is upsampled (bilinear) to full size and the same integer delta is added to R, G and B, so luma
   moves by the residual and chroma is untouched. Alpha is never touched.

Detection (no knowledge of the original size):

1. luma -> the same canvas; whiten it (subtract a 3×3 mean, divide by the local RMS, clip) to remove host content;
2. the mark is periodic, so the autocorrelation of the whitened canvas has peaks at the two tile lattice vectors:
   they give the scale (crop changes the period on the canvas), anisotropy and rotation; they are refined on the
   2nd/3rd multiples (and halved, in case a smooth host hid the first peak). The identity lattice (no geometric
   change) is always tried first;
3. for each candidate lattice the whitened canvas is resampled on the lattice (at half-chip offsets too: a crop's
   phase is arbitrary) and folded modulo the tile (summing all tile copies); the tile phase (crop offset) and
   symmetry (mirror, quarter turns: permutations of the fold) are the peak of the FFT circular cross-correlation of
   the fold with the keyed pilot, refined to sub-chip precision, and the fold is resampled at that phase (on a 2×
   canvas when the content was shrunk, e.g. by borders);
4. data chips are despread into 188 soft bits, Viterbi-decoded, and the keyed MAC checked; when that fails but the
   pilot is significant (p ≤ :data:`.core.LIST_GATE`), the :data:`.core.LIST_SIZE` best paths are checked in turn.

``found`` needs the MAC to pass AND ``p_value < 1e-6``, the p-value being the Bonferroni combination of the
Hoeffding bound on the pilot correlation peak (see :func:`.core.rademacher_pvalue`) and the MAC's 2^-24 per decode
(see :func:`.tile.p_value` and docs/watermark.md).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from ..errors import CapacityError, CorruptInput, LimitExceeded
from . import core
from .core import WatermarkResult
from .lattice import CANVAS, TILE
from .tile import CHIPS, N_TESTS, P_THRESHOLD, layout, p_value, payload_pvalue, payload_tile, search

__all__ = [
    "CANVAS",
    "FULL_PIXELS",
    "MAX_PIXELS",
    "MIN_PIXELS",
    "MIN_SIDE",
    "SURVIVAL_JPEG_QUALITY",
    "TILE",
    "WatermarkResult",
    "detect_after_jpeg",
    "detect_image",
    "embed_image",
    "payload_pvalue",
    "survival_class",
]

MIN_SIDE = 256  # 32×32-chip tiles need >= 1 pixel per canvas chip (smaller images cannot carry the mark)
# the still-image floor: under it a 64-bit mark does not reliably survive a JPEG re-encode at quality 75, a halving
# or a crop of a JPEG (measured: docs/watermark.md, Limits)
MIN_PIXELS = 200_000
# from this size up the held-out benchmark kept the whole attack list (issue 17's >= 99%, with the budget fill: see
# _fill); between MIN_PIXELS and it the mark is written but a halving + JPEG 75 loses it on some pictures, and mark
# says so (survival_class)
FULL_PIXELS = 250_000
MAX_PIXELS = 250_000_000  # refuse larger arrays (memory for a float32 luma plane: 1 GB)
SURVIVAL_JPEG_QUALITY = 75  # the standard degradation mark() proves the image mark survives (docs/watermark.md)
_A0, _A1, _AMIN, _AMAX = 0.7, 0.3, 0.7, 3.0  # strength map: amplitude = clip(_A0 + _A1 * activity)
# texture gain (see _strength_map): the PSNR aimed at, the most extra gain, the activity (canvas grey levels of
# high-pass RMS) under which a cell counts as flat or grain, and the rounding's share of the MSE
_PSNR_AIM, _GAIN_MAX, _ACT_FLAT, _ROUNDING_MSE = 43.0, 3.0, 4.0, 1 / 12
# budget fill (see _fill): a still picture under _FILL_BELOW pixels has its whole map raised (by at most _FILL_MAX)
# until the PSNR measured on its written residual is _FILL_AIM; none is left under _PSNR_FLOOR (the bound)
_FILL_BELOW, _FILL_AIM, _FILL_MAX, _PSNR_FLOOR, _FILL_ROUNDS = 500_000, 42.3, 2.5, 42.0, 3
_LUMA_MIN = 0.6  # luma masking floor: near black/white the amplitude falls to 60% (see _headroom_shift)

_UPSAMPLE_BELOW = 320  # detection reads pictures with a shorter side upsampled 2× (see _upsampled)


# ------------------------------------------------------------------------------------------------------- pixels


def _check(pixels: np.ndarray) -> np.ndarray:
    a = np.asarray(pixels)
    if a.dtype != np.uint8:
        raise CorruptInput(f"watermark expects uint8 pixels, got {a.dtype}")
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise CorruptInput(f"watermark expects H×W, H×W×3 or H×W×4 pixels, got shape {a.shape}")
    h, w = a.shape[:2]
    if h * w > MAX_PIXELS:
        raise LimitExceeded(f"{w}×{h} image exceeds the watermark limit of {MAX_PIXELS} pixels")
    return np.ascontiguousarray(a)  # OpenCV wants rows contiguous; no copy for ordinary arrays


_STRIP_PIXELS = 4_000_000  # pixels per integral strip: 32-bit sums (255 · 4 Mpx < 2^31) stay exact
# embedding: OpenCV spreads each call over the cores itself; bands only bound memory (16 Mpx of float32 is 64 MB)
_BAND_PIXELS = 16_000_000


def _luma(a: np.ndarray) -> np.ndarray:
    """BT.601 luma as uint8 (OpenCV's fixed-point conversion; grey input as is)."""
    if a.ndim == 2:
        return a
    return cv2.cvtColor(a, cv2.COLOR_RGB2GRAY if a.shape[2] == 3 else cv2.COLOR_RGBA2GRAY)


def _cells(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel ranges [lo, hi) of ``size`` canvas cells over ``n`` pixels: the pixels whose centres fall in each cell
    (a box filter); a cell holding no pixel centre (canvas finer than the image) takes the pixel under its centre."""
    k = np.arange(size)
    lo = np.floor(k * n / size + 0.5).astype(np.intp)
    hi = np.floor((k + 1) * n / size + 0.5).astype(np.intp)
    empty = hi <= lo
    lo[empty] = np.floor((k[empty] + 0.5) * n / size).astype(np.intp)
    hi[empty] = lo[empty] + 1
    return lo, hi


def _canvas(a: np.ndarray, size: int = CANVAS) -> np.ndarray:
    """Luma of ``a`` box-averaged onto a ``size×size`` canvas (anisotropic for non-square images), as float64.

    Each canvas pixel is the mean of the image pixels whose centres it covers, read as four corners of an integral
    image: one pass over the image whatever the scale factor (OpenCV's INTER_AREA takes 3.5 ms/MP at non-integer
    factors). Strips of whole canvas rows (at most 4 Mpx each) keep the 32-bit sums exact and the temporaries bounded.
    """
    h, w = a.shape[:2]
    r_lo, r_hi = _cells(h, size)
    c_lo, c_hi = _cells(w, size)
    out = np.empty((size, size), np.float64)
    inv_area = 1.0 / ((r_hi - r_lo)[:, None] * (c_hi - c_lo)[None, :]).astype(np.float64)
    per_row = max(1, _STRIP_PIXELS // (w * int((r_hi - r_lo).max())))  # canvas rows per strip
    for k0 in range(0, size, per_row):  # a loop over strips of canvas rows, each one OpenCV integral
        k1 = min(size, k0 + per_row)
        y0, y1 = r_lo[k0], r_hi[k0:k1].max()
        s = cv2.integral(_luma(a[y0:y1]), sdepth=cv2.CV_32S)  # (y1-y0+1, w+1)
        rows = s[r_hi[k0:k1] - y0] - s[r_lo[k0:k1] - y0]  # per canvas row: column-cumulative sums of its pixels
        np.multiply(rows[:, c_hi] - rows[:, c_lo], inv_area[k0:k1], out=out[k0:k1])
    return out


def _blur(c: np.ndarray, k: int) -> np.ndarray:
    """k×k mean with mirrored edges (OpenCV; the same as ``ndimage.uniform_filter(mode="reflect")``, ~5× faster)."""
    return cv2.blur(c, (k, k), borderType=cv2.BORDER_REFLECT)


# -------------------------------------------------------------------------------------------------------- embed


def _interp_energy(n_out: int, n_in: int) -> float:
    """Mean of ``(1-t)² + t²`` over the output samples of a bilinear ``n_in -> n_out`` resize: the share of a random
    ±1 chip pattern's energy that the interpolated plane keeps along one axis (2/3 for large factors)."""
    u = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    t = u - np.floor(u)
    return float(np.mean((1 - t) ** 2 + t**2))


def _strength_map(c: np.ndarray, shape: tuple[int, int], texture_gain: bool = True) -> np.ndarray:
    """Per-canvas-pixel amplitude (grey levels): texture masking with a floor so flat areas still carry a weak mark;
    then (``texture_gain``) the amplitude in clear texture is raised (by up to _GAIN_MAX more) until the estimated
    PSNR of the ``shape`` image reaches _PSNR_AIM: photos measured 44-47 dB before, on an aim of 42 the spare budget
    went unused."""
    hp = c - _blur(c, 3)
    act = np.sqrt(np.maximum(_blur(hp * hp, 5), 0.0))
    luma = np.clip(np.minimum(c, 255.0 - c) * (1 / 24.0), _LUMA_MIN, 1.0)  # luma masking: weaker near black/white
    m = _blur(np.clip(_A0 + _A1 * act, _AMIN, _AMAX) * luma, 3)
    if not texture_gain:
        return m
    # texture above noise and grain, eroded so that no extra spills over an edge into a flat neighbour (a sky next to
    # a textured horizon keeps its ±1 grey level)
    busy = cv2.erode(act, np.ones((7, 7), np.uint8), borderType=cv2.BORDER_REFLECT)
    extra = _blur(np.clip(_A1 * (busy - _ACT_FLAT), 0.0, _AMAX - _A0) * luma, 3)
    # MSE of the full-size residual ≈ k · mean((m + g·extra)²) + rounding (k: what bilinear upsampling keeps of a
    # random chip pattern); solve the quadratic for the extra gain g
    k = _interp_energy(shape[0], c.shape[0]) * _interp_energy(shape[1], c.shape[1])
    mse = 255.0**2 / 10 ** (_PSNR_AIM / 10) - _ROUNDING_MSE
    qa, qb, qc = float(np.mean(extra * extra)), 2 * float(np.mean(m * extra)), float(np.mean(m * m)) - mse / k
    g = (-qb + np.sqrt(max(qb * qb - 4 * qa * qc, 0.0))) / (2 * qa) if qa > 1e-12 else 0.0
    return m + np.float32(np.clip(g, 0.0, _GAIN_MAX)) * extra


def _headroom_shift(c: np.ndarray, m: np.ndarray, cap: float) -> np.ndarray:
    """Offset (at most ``cap``) that keeps ``c ± m`` inside 0..255: near white the mark darkens, near black brightens.

    Without it a chip pointing past 255 is clipped away, so white pages and screenshots carried no mark at all. Only
    canvas pixels within ``m`` of a limit move (a flat area at 250 is untouched). The cap is the flat-area amplitude:
    flat white becomes one-sided (-2m..0, under 1.5 grey levels), while textured cells such as text on white, whose
    dark pixels carry the mark both ways, get no more than that extra darkening of their white pixels.
    """
    return np.clip(np.minimum(0, (255 - c) - m) + np.maximum(0, m - c), -cap, cap)


def _fill_estimate(m: np.ndarray, shape: tuple[int, int]) -> float:
    """The budget fill's first guess, on the canvas (as the texture gain's): the map's factor for _FILL_AIM."""
    k = _interp_energy(shape[0], CANVAS) * _interp_energy(shape[1], CANVAS)
    mse = 255.0**2 / 10 ** (_FILL_AIM / 10) - _ROUNDING_MSE
    return min(float(np.sqrt(mse / k / max(float(np.mean(m * m)), 1e-12))), _FILL_MAX)


def _fill(
    c: np.ndarray, m: np.ndarray, mark: np.ndarray, cap: float, shape: tuple[int, int], most: float, db: float
) -> np.ndarray:
    """The full-size residual (offset by 128) of a picture under _FILL_BELOW, its mark scaled (by at most ``most``)
    until the PSNR measured on the rounded residual is _FILL_AIM, and never under _PSNR_FLOOR.

    On such pictures the texture gain left the budget unused (flat pictures measured 46-50 dB for an aim of 43: there
    is little texture to raise), and JPEG 30/50 and a halving + JPEG 75 remove the mark. The whole map (flat areas too,
    chips 1.5-3 px) rises, the shape of the masking unchanged. The measure is exact up to clipping at 0 and 255, which
    only raises the PSNR. ``mark``: the canvas residual + 128, its headroom shift recomputed for each scale; ``db``:
    what ``strength`` adds (the aim and the floor are strength 1's: a JPEG output asks for more on purpose).
    """
    h, w = shape
    shift = _headroom_shift(c, m, cap)
    f, rounds, aim, floor = 1.0, 0, max(_FILL_AIM, _PSNR_FLOOR + 0.1) - db, _PSNR_FLOOR - db
    while True:
        resid = cv2.resize(mark, (w, h), interpolation=cv2.INTER_LINEAR)
        mean, sd = cv2.meanStdDev(cv2.convertScaleAbs(resid))  # the written plane: rint(residual) + 128
        p = 10 * np.log10(255.0**2 / max(float(sd[0, 0] ** 2 + (mean[0, 0] - 128) ** 2), 1e-9))
        r, rounds = min(10 ** ((p - aim) / 20), most / f), rounds + 1
        if p >= floor and (abs(r - 1) < 0.01 or rounds >= _FILL_ROUNDS):
            return resid
        if rounds >= _FILL_ROUNDS:  # still under the floor: step down until it holds
            r = min(r, 0.9)
        f *= r
        new = _headroom_shift(c, m * np.float32(f), cap)
        mark = (mark - np.float32(128) - shift) * np.float32(r) + new + np.float32(128)
        shift = new


# informed embedding (see _informed): water-filling rounds; each bit lifted to at least what the mark alone gives it
# (× TARGET), by at most × MAX; no bit given back to under × FLOOR (a bit the host helps loses that help in a crop)
_INFORM_ROUNDS, _INFORM_TARGET, _INFORM_MAX, _INFORM_FLOOR = 6, 1.0, 4.0, 0.9


@lru_cache(maxsize=8)
def _round_trip(n: int, size: int = CANVAS) -> np.ndarray:
    """What the canvas sees of a canvas residual after the bilinear upsampling to ``n`` pixels (embed) and the box
    average back (detect), along one axis: a band matrix, as its diagonals -2..2 (5, size). On a small picture the
    chips are under 2 px and this blurs them noticeably."""
    u = np.clip((np.arange(n) + 0.5) * (size / n) - 0.5, 0, size - 1)
    i0 = np.minimum(np.floor(u).astype(np.intp), size - 2)
    t = u - i0
    up = np.zeros((n, size))
    up[np.arange(n), i0] = 1 - t
    up[np.arange(n), i0 + 1] += t
    lo, hi = _cells(n, size)
    cs = np.vstack([np.zeros((1, size)), np.cumsum(up, axis=0)])
    full = (cs[hi] - cs[lo]) / (hi - lo)[:, None]
    # a band matrix (the bilinear tent under a box): its diagonals -2..2, row i's coefficient of canvas pixel i + d
    band = np.zeros((5, size), np.float32)
    for d in range(-2, 3):
        i = np.arange(max(0, -d), min(size, size - d))
        band[d + 2, i] = full[i, i + d]
    band.setflags(write=False)
    return band


def _informed(
    c: np.ndarray, m: np.ndarray, shift: np.ndarray, payload: bytes, key: bytes | None, shape: tuple[int, int]
) -> np.ndarray:
    """The modulated canvas, each coded bit's chips given their own gain (informed embedding, same total energy).

    The host picture projects onto each bit's chips too (its whitened content, folded over the copies): on a small
    picture that interference, as much as the attack, is what decoding fails on, and the embedder knows it. The
    detector's despread value of every bit is predicted (the canvas it will see: the bilinear upsampling and the box
    average back, as a mean 5-tap filter per axis; whitening linearised around the host's local RMS); bits the host
    opposes get more amplitude, up to what the mark alone would give them, the rest give some back so that the
    energy (PSNR) is unchanged. The shape stays the strength map's: extra amplitude goes only where texture hides it.
    The detector is unchanged (so is its false-positive bound); the pilots keep gain 1.
    """
    _, data_pos, data_bit, _, _ = layout(key)
    tile = payload_tile(payload, key).ravel()
    reps = (CANVAS // TILE, CANVAS // TILE)
    nb = core.CODED_BITS
    bit_of = np.full(CHIPS, nb, np.intp)  # pilots: an extra slot whose gain stays 1
    bit_of[data_pos] = data_bit
    want = np.zeros(CHIPS, np.float32)
    want[data_pos] = tile[data_pos]  # the sign each data chip was given (key sign × coded bit)
    base = np.tile(tile.reshape(TILE, TILE), reps) * m
    kr, kc = (_round_trip(n).mean(axis=1) for n in shape)

    def seen(x: np.ndarray) -> np.ndarray:  # a canvas residual as the detector's canvas will hold it
        return cv2.sepFilter2D(x, -1, kc, kr, borderType=cv2.BORDER_REFLECT)

    def folded(x: np.ndarray) -> np.ndarray:  # per coded bit (and the pilots' slot), signed to the bit's value
        f = x.reshape(reps[0], TILE, reps[1], TILE).sum(axis=(0, 2)).ravel()
        return np.bincount(bit_of, weights=f * want, minlength=nb + 1)

    mine = seen(base)
    x = c + mine + seen(shift)
    hp = x - _blur(x, 3)
    rms = np.sqrt(np.maximum(_blur(hp * hp, 7), 0.0)) + 0.5
    unit = np.maximum(folded((mine - _blur(mine, 3)) / rms), 1e-6)  # what gain 1 gives each bit
    host = folded(np.clip(hp / rms, -2.5, 2.5)) - unit  # the rest: the host's projection
    sq = (base * base).reshape(reps[0], TILE, reps[1], TILE).sum(axis=(0, 2)).ravel()
    energy = np.bincount(bit_of, weights=sq, minlength=nb + 1)  # each bit's share of the plain mark's energy
    need = np.minimum(_INFORM_TARGET - host / unit, _INFORM_MAX)  # the gain that lifts a bit to the target
    gain = np.ones(nb + 1)
    for _ in range(_INFORM_ROUNDS):  # water-filling: lift the weak bits, scale the data back to the plain energy
        gain = np.maximum(gain, need)
        gain[:-1] *= np.sqrt(energy[:-1].sum() / np.sum(gain[:-1] ** 2 * energy[:-1]))
        np.maximum(gain, _INFORM_FLOOR, out=gain)
        gain[-1] = 1.0
    return base * np.tile(gain[bit_of].astype(np.float32).reshape(TILE, TILE), reps) + shift


def embed_image(
    pixels: np.ndarray,
    payload: bytes,
    *,
    key: bytes | None = None,
    strength: float = 1.0,
    min_pixels: int = MIN_PIXELS,
    texture_gain: bool = True,
    informed: bool = True,
    fill: bool = True,
) -> np.ndarray:
    """Return a copy of ``pixels`` carrying the 64-bit ``payload`` as an invisible, keyed watermark.

    ``pixels``: H×W (grey), H×W×3 (RGB) or H×W×4 (RGBA, alpha untouched) uint8. ``key=None`` uses
    :data:`DEFAULT_KEY` (publicly detectable). ``strength`` scales the amplitude (1.0 ≈ 43 dB PSNR on photos, more on
    smooth images; under 0.5 Mpx 42.3 dB, see :func:`_fill`). ``texture_gain=False`` leaves out the extra amplitude in
    texture that brings photos to 43 dB, for a caller that sets the amplitude itself with ``strength`` (a lossy
    animation: on its smooth frames the gain went into the warning's text, which VP8 and AV1 at the source's rate do
    not keep). ``informed=False`` gives every bit
    the same gain (see :func:`_informed`): for video frames, whose residual is resized and capped after this and
    read averaged over frames, so the per-picture prediction does not hold (measured: a 240-px CRF 38 key frame it
    decoded became undecodable). ``fill=False`` leaves out the budget fill of pictures under 0.5 Mpx (see
    :func:`_fill`; so do ``informed=False`` and ``texture_gain=False``): for animation frames, whose file size the
    extra noise grows. Raises
    :class:`~kzlabel.errors.CapacityError` for images under 256 px on a side or under ``min_pixels`` (the still-image
    floor; video frames, read back averaged over many frames, pass their own) and
    :class:`~kzlabel.errors.LimitExceeded` above 250 Mpx.
    """
    a = _check(pixels)
    if not isinstance(payload, (bytes, bytearray)) or len(payload) != core.PAYLOAD_BYTES:
        raise ValueError(f"watermark payload must be exactly {core.PAYLOAD_BYTES} bytes")
    if not (strength > 0 and np.isfinite(strength)):
        raise ValueError("strength must be a positive finite number")
    h, w = a.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise CapacityError(f"{w}×{h} image is too small for the watermark (needs >= {MIN_SIDE} px on each side)")
    if h * w < min_pixels:
        raise CapacityError(
            f"{w}×{h} image is too small to carry the 64-bit watermark reliably (needs >= {min_pixels:,} pixels: "
            "on smaller pictures a JPEG re-encode at quality 75 or a halving loses it)"
        )
    c = _canvas(a).astype(np.float32)  # float32 halves the filtering work; the map only scales a ±1 chip pattern
    m = _strength_map(c, (h, w), texture_gain)
    fill = fill and informed and texture_gain and h * w < _FILL_BELOW  # the budget fill (see _fill)
    f0 = _fill_estimate(m, (h, w)) if fill else 1.0  # on the map at strength 1
    m *= np.float32(strength * f0)
    # the residual travels as a uint8 plane offset by 128 (|residual| stays far below 127 at any sane strength)
    shift = _headroom_shift(c, m, _AMIN * strength)
    if informed:
        mark = _informed(c, m, shift, bytes(payload), key, (h, w))
    else:
        mark = np.tile(payload_tile(bytes(payload), key), (CANVAS // TILE, CANVAS // TILE)) * m + shift
    mark += np.float32(128.0)
    filled = _fill(c, m, mark, _AMIN * strength, (h, w), _FILL_MAX / f0, 20 * np.log10(strength)) if fill else None
    out = np.empty_like(a)
    channels = 1 if a.ndim == 2 else a.shape[2]
    sx, sy = CANVAS / w, CANVAS / h
    step = max(1, _BAND_PIXELS // w)
    for y0 in range(0, h, step):  # one band up to 16 Mpx; bands bound the temporary planes of larger images
        y1 = min(h, y0 + step)
        if filled is not None:  # measured by _fill (one band: the picture is under _FILL_BELOW)
            resid = filled
        elif y1 - y0 == h:
            resid = cv2.resize(mark, (w, h), interpolation=cv2.INTER_LINEAR)  # bilinear, pixel centres aligned
        else:  # the same bilinear map for rows y0..y1 only
            warp = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, (y0 + 0.5) * sy - 0.5]])
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            resid = cv2.warpAffine(mark, warp, (w, y1 - y0), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        plane, dst = cv2.convertScaleAbs(resid), out[y0:y1]  # plane: rint(residual) + 128 as uint8
        if channels == 3:
            plane = cv2.cvtColor(plane, cv2.COLOR_GRAY2RGB, dst=dst)  # staged in the output: no fresh 3-byte plane
        elif channels == 4:
            plane = cv2.cvtColor(plane, cv2.COLOR_GRAY2RGBA, dst=dst)
            plane[..., 3] = 128  # alpha unchanged
        # saturating a + plane - 128 = clip(a + rint(residual)): the same delta on R, G and B moves luma only
        cv2.addWeighted(a[y0:y1], 1.0, plane, 1.0, -128.0, dst=dst)
    return out


# ------------------------------------------------------------------------------------------------------- detect


def _whiten(c: np.ndarray) -> np.ndarray:
    hp = c - _blur(c, 3)
    s = np.sqrt(np.maximum(_blur(hp * hp, 7), 0.0))
    w = hp / (s + 0.5)
    np.clip(w, -2.5, 2.5, out=w)
    return w


def _upsampled(a: np.ndarray) -> np.ndarray:
    """The view the detector reads: ``a`` itself, or, when its shorter side is under _UPSAMPLE_BELOW (a shrunk copy,
    a halved thumbnail), ``a`` at twice its size, bicubic. Near or under the canvas's size the canvas's cells fill by
    nearest neighbour (one pixel repeated across cells), which the whitening reads as steps; interpolated cells keep
    the chips' shape (docs/watermark.md, Small pictures). One deterministic view replaces the other, so the number of
    tests, and with it the false-positive bound, is unchanged."""
    if min(a.shape[:2]) >= _UPSAMPLE_BELOW:
        return a
    return cv2.resize(a, (2 * a.shape[1], 2 * a.shape[0]), interpolation=cv2.INTER_CUBIC)


def detect_image(pixels: np.ndarray, *, key: bytes | None = None, list_decoding: bool = True) -> WatermarkResult:
    """Look for a kzlabel watermark made with ``key`` (None = the public :data:`DEFAULT_KEY`).

    Robust to JPEG, resizing, cropping, noise, blur, brightness/contrast changes and small rotations; needs no
    knowledge of the original size. Images under 64 px on a side return ``found=False`` without searching.
    ``list_decoding=False`` reads only the best path: for a caller that wants a margin (a mark that decodes on its
    own), not the last word.
    """
    a = _check(pixels)
    h, w_ = a.shape[:2]
    if min(h, w_) < 64:
        return WatermarkResult(False, None, None, 1.0)
    a = _upsampled(a)
    fine = lru_cache(maxsize=1)(lambda: _whiten(_canvas(a, 2 * CANVAS)))
    z, payload, ok, soft = search(_whiten(_canvas(a)), (h, w_), key, fine=fine)
    p = p_value(z, ok)
    if list_decoding and not ok and soft is not None and core.rademacher_pvalue(z, N_TESTS) <= core.LIST_GATE:
        # the pilot says a mark is there but the best path failed the MAC: try the next best paths
        listed = core.list_decode(soft, key)
        if listed is not None:
            payload, ok = listed, True
            p = min(1.0, 2.0 * min(core.rademacher_pvalue(z, N_TESTS), core.list_pvalue()))
    found = bool(ok and p < P_THRESHOLD)
    bits = None if soft is None else soft.astype(np.float32)
    return WatermarkResult(found, payload if found else None, bits, p, unreadable=not found and p < P_THRESHOLD)


def survival_class(height: int, width: int) -> tuple[str, str]:
    """The measured survival class of a still picture's mark at this size, and what a mark report should add to its
    JPEG 75 line: "full" from FULL_PIXELS up, "reduced" between MIN_PIXELS and it (docs/watermark.md, Limits)."""
    if height * width >= FULL_PIXELS:
        return "full", ""
    return "reduced", (
        f"size class reduced ({width}×{height}, under {FULL_PIXELS / 1e6:g} Mpx): on pictures this small the mark "
        "held JPEG down to quality 30, WebP, resizes, rotations and crops in the benchmark, but a halving followed by "
        "JPEG 75 removed it from 1 in 5 (at 0.24 Mpx) to 2 in 3 (at 0.2 Mpx) of the pictures"
    )


def detect_after_jpeg(
    pixels: np.ndarray, *, key: bytes | None = None, quality: int = SURVIVAL_JPEG_QUALITY
) -> WatermarkResult:
    """:func:`detect_image` after a JPEG re-encode at ``quality``, as a platform would re-encode an upload. Only the
    luma is encoded: the detector reads nothing else, and a colour JPEG quantises its luma with the same table (the
    benchmark photo's p-values agree exactly), for a third of the codec time of a colour round trip."""
    ok, encoded = cv2.imencode(".jpg", _luma(_check(pixels)), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    degraded = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE) if ok else None
    if degraded is None:  # OpenCV's own JPEG codec failed on a valid uint8 plane: not the input's fault
        raise RuntimeError("OpenCV could not JPEG-encode and decode a luma plane")
    return detect_image(degraded, key=key)
