"""Invisible audio watermark: keyed dither modulation of log band power on a fixed 16 kHz time-frequency grid.

Embedding (vectorised; cost per second of audio ~independent of the sample rate):

1. the channels are averaged and resampled to the canonical 16 kHz rate (polyphase), so the mark lives on a grid
   fixed in *seconds and hertz*: resampling 44.1 ↔ 48 ↔ 16 kHz only changes how it is sampled;
2. an STFT (512-sample frames, hop 256) is cut into cells of 4 hops (64 ms) × 6 bins (187.5 Hz; a partial's main
   lobe fits in one band) between 310 Hz and 5.7 kHz, where every lossy codec keeps the signal; a periodic tile of
   48 slots (3.07 s) × 29 bands = 1392 cells is split into 232 keyed groups of 6 cells with balanced signs
   (three +, three −), group ``g`` carrying coded bit ``g mod 188`` of :mod:`.core`;
3. a cell's log-power is floored (:func:`_floor`): 30 dB under its frame's mean band power plus 20 dB under the
   excerpt's. What lies under the floor is what added noise or a low-rate codec (Vorbis q3 at 16 kHz is ~24 kbit/s)
   replaces, so the mark must not live there;
4. a group's statistic is ``p = Σ sign · (cell log-power) / 6``: a constant gain cancels (balanced signs), and the
   host's own value is *used*, not fought: ``p`` is moved to the nearest point of the keyed lattice
   ``dither + bit·Q/2 + Q·ℤ`` (dither modulation, Chen & Wornell; Q = 1.5) — this informed embedding is what lets
   64 bits fit in 10 s under a 30 dB SNR. The move is *shared unequally* among the group's cells: ∝ each cell's
   responsiveness ``b / (b + floor)`` (a cell at the floor cannot move its floored log-power) over the square root
   of its power (a loud cell's change costs the most residual energy), at most 4× the mean share. On speech this
   buys a lattice step 1.8× the equal-share one (0.85) at about the same SNR;
5. the per-cell change becomes a gain on the STFT bins, inverse-transformed; two refinement passes re-measure the
   achieved statistics (neighbouring slots blur through the window overlap) and correct them. The residual is
   resampled back and added to every channel (a mono downmix keeps it). It is multiplicative: silence stays
   silent; the signal-to-watermark ratio stays above :data:`MIN_SNR_DB`;
6. the budget is kept *by group*, never by scaling: only whole groups are embedded (a group cut by the content's
   end, i.e. nearly every group of the last, partial tile copy, is left alone: the detector drops it anyway), and
   when the residual still exceeds the budget the costliest groups are left alone (:func:`_drop_costliest`; a few
   per cent on eSpeak NG speech: 40 of ~900 on 12 s of Kazakh) while the others keep their whole move. Why: both
   used to end in one global scale of the residual (the safety net in :func:`embed_audio`), and a scale leaves
   *every* group off its lattice point — the phase search then lost the mark although it still decoded at the
   right phase. Partial groups pushed to a lattice point meant for six cells took up to half the residual's
   energy, so whether a clip kept its mark depended on its length modulo the tile (3.07 s): eSpeak speech lost it
   at 7–8 s and 9.7–10.9 s (0–13 % of clips found), kept it near 9 and 12 s (bench_audio.py ``--tts``,
   benchmarks/README.md).

Detection (no knowledge of start, length or level; ~300× realtime on one core, see benchmarks/bench_audio.py):

1. downmix, resample to 16 kHz (a short filter: only the mark's band must be clean), STFT with a hop of 64
   samples; the band log-powers of the frames at the 3 offsets in between (16, 32, 48) are interpolated, so cell
   log-powers exist for every 1 ms start. Interpolation is good enough to *rank* phases, not to decode;
2. search: every tile phase (3072, 1 ms apart) is scored on every tile copy of the excerpt. At the right phase
   the group statistics sit on the lattice (either bit), elsewhere they are uniformly spread; each group scores
   the triangle wave ``1 − 4|r|`` of its distance to the lattice in half-steps (as discriminating as a cosine and
   far cheaper). The search is one vectorised pass over runs of the band columns (``_search``);
3. the 8 best phases are re-scored exactly with ``cos(4π (p − dither) / Q)``, weighted as in 4.: a phase only
   uses frames that start ≡ it modulo the 256-sample hop, so one residue class (1/16 of a 1 ms STFT) per phase is
   transformed. The best 3 distinct peaks are refined by ±16 then ±8 samples (on pitched sound the lattice is
   lost within ~1 ms), lazily: the next peak only if the previous one did not decode. Every phase is scored on
   all tile copies, including the partial copy before it;
4. at those phases each group gives a soft bit ``cos(2π (p − dither) / Q)``, weighted by the mean reliability
   ``1 − exp(−h)`` of its cells (``h``: height above the floor in the received audio, log-power per frame; a
   group in the floor after a codec or noise votes at random, so it is weighted towards 0), summed over copies
   and repeats, Viterbi-decoded, and the keyed MAC checked. ``found`` needs the MAC (p-value from
   :func:`.core.combined_pvalue` with 3 decodes: at most 3.6·10⁻⁷ by chance).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from math import gcd

import numpy as np
from scipy import fft as sfft
from scipy import signal

from ..errors import CapacityError, CorruptInput
from . import core
from .core import WatermarkResult

__all__ = [
    "CHECK_SECONDS",
    "MIN_RELIABLE_RATE",
    "MIN_SECONDS",
    "MIN_SNR_DB",
    "RATE",
    "TILE_SECONDS",
    "detect_audio",
    "embed_audio",
]

RATE = 16_000  # canonical rate of the mark's grid
_N = 512  # STFT frame
_HOP = 256  # embedding hop
_SLOT_HOPS = 4  # a cell lasts 4 hops = 64 ms
_SLOT = _HOP * _SLOT_HOPS  # 1024 samples
_BIN0, _BIN_W, BANDS = 10, 6, 29  # bins 10..183 (310 Hz – 5.7 kHz) in 29 bands of 6 bins
SLOTS = 48  # slots per tile: 48 × 64 ms = 3.07 s
TILE_SECONDS = SLOTS * _SLOT / RATE
CELLS = SLOTS * BANDS  # 1392
GROUP = 6  # cells per group (3 positive, 3 negative signs)
GROUPS = CELLS // GROUP  # 232
Q = 1.5  # lattice step of the group statistic (log-power): the group moves at most Q/2
FLOOR = 1e-3  # bands 30 dB under the frame's mean band power are flattened: they carry nothing a codec keeps
FLOOR_EXCERPT = 1e-2  # ... and bands 20 dB under the excerpt's mean band power: noise and codecs replace them
_COST_EXP = 0.5  # a group's change is shared among its cells ∝ responsiveness / (cell power)^0.5 (see _residual)
_SHARE_CAP = 4.0  # no cell takes more than 4× the group's mean change
_MAX_GAIN = 3.0  # accumulated log-power change per cell (4 frames): at most ±3.3 dB per frame
MIN_SECONDS = 2.0  # shorter content cannot carry a decodable mark
# Content shorter than this is read back after embedding and refused (CapacityError) when the mark is not found.
# Measured (session 5, bench_audio.py --excerpts): random excerpts of a marked signal: music 6/6 from 6 s, speech 6/6
# at 10 s (5/6 at 6-8 s); whole clips marked from their start do better (2.5 s: none). So a short clip is not
# reported as watermarked on trust. Longer content is not checked (any 10 s suffice).
CHECK_SECONDS = 10.0
# Under 11 kHz the top third of the mark's bands (up to 5.7 kHz) is above Nyquist: embed_audio accepts 8 kHz, but
# measured on synthetic music the mark was then found for some signals and not others (seed 3: never, 6–12 s), so
# file handlers label such audio without it (reported as skipped) rather than claim it.
MIN_RELIABLE_RATE = 11025
MIN_SNR_DB = 30.0
_SNR_MARGIN_DB = 0.2  # the embedder's own budget is this much tighter (the 16 kHz residual vs the source's rate)
_REFINE = 2  # correction passes after the first embedding
_DET_HOP = 16  # detection phase step (1 ms): the lattice tolerates well under 1 ms of misalignment on pitched sound
_BASE_HOP = 64  # the detection STFT's hop: every 4th phase is measured, the 3 between are interpolated for the search
_UP = _BASE_HOP // _DET_HOP
_INTERP_HALF = 3  # interpolation taps each side: short, log band power is far from band-limited
# polyphase interpolator: row j-1 holds the taps of sub-position j (1.._UP-1) over the neighbours -2..3
_INTERP = (
    _UP
    * signal.firwin(2 * _INTERP_HALF * _UP + 1, 1.0 / _UP, window=("kaiser", 6.0))[
        _INTERP_HALF * _UP + np.arange(1, _UP)[:, None] - _UP * np.arange(1 - _INTERP_HALF, _INTERP_HALF + 1)[None, :]
    ]
).astype(np.float32)
_RESIDUES = _HOP // _DET_HOP  # 16 classes of frames: a phase only uses frames ≡ its phase (mod the embedding hop)
_CHUNK = 512  # phases per vectorised block of the search
_BLOCK = 128  # frames per FFT block
_DET_PER_SLOT = _SLOT // _DET_HOP  # 64
_TILE_DET = SLOTS * _DET_PER_SLOT  # 3072 detection phases per tile
_SHORTLIST = 8  # phases kept from the interpolated search for the exact pass
_N_DECODE = 3  # phases decoded at most (enters the MAC's share of the p-value)
_REFINE_STEPS = (16, 8)  # samples: sub-step refinement around the best phase
N_TESTS = _TILE_DET + 2 * len(_REFINE_STEPS) * _N_DECODE  # phases whose sync score can be the reported maximum
MAX_DETECT_SECONDS = 20.0  # detect_audio looks at most at this much audio (any 10 s suffice)
_WINDOW = np.sqrt(signal.get_window("hann", _N, fftbins=True)).astype(np.float32)


# --------------------------------------------------------------------------------------------------------- keying


@lru_cache(maxsize=32)
def _layout(key: bytes | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Keyed tile layout: per cell (SLOTS×BANDS) its group and sign; per group its coded-bit index and dither."""
    g = core.rng(key, "audio-layout")
    group = np.empty(CELLS, np.int64)
    group[g.permutation(CELLS)] = np.arange(CELLS) // GROUP
    sign = np.empty(CELLS, np.float32)
    order = np.argsort(group, kind="stable").reshape(GROUPS, GROUP)  # cells of each group
    balanced = np.tile(np.array([1, 1, 1, -1, -1, -1], np.float32), (GROUPS, 1))
    sign[order] = g.permuted(balanced, axis=1)
    bit = np.arange(GROUPS) % core.CODED_BITS
    dither = g.uniform(0, Q, GROUPS)
    for a in (group, sign, bit, dither):
        a.setflags(write=False)
    return group.reshape(SLOTS, BANDS), sign.reshape(SLOTS, BANDS), bit, dither


# ------------------------------------------------------------------------------------------------------ signals
# ------------------------------------------------------------------------------------------------------ signals


def _as_float(samples: np.ndarray) -> np.ndarray:
    a = np.asarray(samples)
    if a.ndim not in (1, 2) or a.size == 0:
        raise CorruptInput(f"audio watermark expects samples shaped (n,) or (n, channels), got {a.shape}")
    if a.dtype.kind == "i":
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
    elif a.dtype.kind != "f":
        raise CorruptInput(f"audio watermark expects float or integer samples, got {a.dtype}")
    return a.astype(np.float32, copy=False)


def _mono(a: np.ndarray) -> np.ndarray:
    """Channel average (a matrix-vector product: ~20× faster than ``mean(axis=1)`` on interleaved frames)."""
    return a if a.ndim == 1 else a @ np.full(a.shape[1], 1.0 / a.shape[1], np.float32)


def _resample(x: np.ndarray, src: int, dst: int, *, short: bool = False) -> np.ndarray:
    """Polyphase resampling. ``short`` (detection) uses a filter 2.5× shorter than scipy's default: its wider
    transition band (above 6.5 kHz at 16 kHz) lies outside the mark's 310 Hz – 5.7 kHz."""
    if src == dst:
        return x.astype(np.float32, copy=False)
    g = gcd(src, dst)
    up, down = dst // g, src // g
    window = _short_filter(up, down) if short else ("kaiser", 5.0)
    return signal.resample_poly(x, up, down, window=window).astype(np.float32)


@lru_cache(maxsize=8)
def _short_filter(up: int, down: int) -> np.ndarray:
    rate = max(up, down)
    return signal.firwin(2 * 4 * rate + 1, 1.0 / rate, window=("kaiser", 5.0))


def _frame_view(x: np.ndarray, hop: int) -> np.ndarray:
    """Unwindowed frames (n_frames, _N) as a strided view; the signal is zero-padded to whole frames."""
    n = max(1, -(-(len(x) - _N) // hop) + 1) if len(x) > _N else 1
    need = (n - 1) * hop + _N
    if need > len(x):
        x = np.concatenate([x, np.zeros(need - len(x), np.float32)])
    return np.lib.stride_tricks.sliding_window_view(x, _N)[::hop][:n]


def _frames(x: np.ndarray, hop: int) -> np.ndarray:
    """Windowed frames (n_frames, _N)."""
    return _frame_view(x, hop) * _WINDOW


def _band_power_at(x: np.ndarray, hop: int) -> np.ndarray:
    """:func:`_band_power` of the STFT with ``hop``, computed in blocks of _BLOCK frames: the frames and their
    spectrum stay in cache (a whole-excerpt STFT at a small hop is tens of MB and twice as slow)."""
    view = _frame_view(x, hop)
    out = np.empty((len(view), BANDS), np.float32)
    buf = np.empty((min(_BLOCK, len(view)), _N), np.float32)
    for i in range(0, len(view), _BLOCK):  # a loop over blocks of frames, each block one vectorised FFT
        k = min(_BLOCK, len(view) - i)
        np.multiply(view[i : i + k], _WINDOW, out=buf[:k])
        out[i : i + k] = _band_power(sfft.rfft(buf[:k], axis=1))
    return out


def _band_power(spec: np.ndarray) -> np.ndarray:
    """|X|² summed per band of 6 bins → (frames, BANDS) float32; only the bins the mark uses are touched."""
    v = spec[:, _BIN0 : _BIN0 + BANDS * _BIN_W].view(spec.real.dtype)  # (re, im) pairs: 12 floats per band
    v = v.reshape(len(spec), BANDS, 2 * _BIN_W)
    return np.einsum("fbk,fbk->fb", v, v)


def _floor(band: np.ndarray, level_mean: float | None = None) -> np.ndarray:
    """The power floor of each frame → (frames, 1): FLOOR under the frame's mean band power plus FLOOR_EXCERPT
    under the excerpt's. ``level_mean`` (the excerpt's mean band power) is passed when frames of one excerpt are
    computed in several batches, so they all share one floor."""
    level = band.mean(axis=1, keepdims=True)
    level_mean = float(level.mean()) if level_mean is None else level_mean
    # codec-zeroed, masked and noise-filled bands sit at a floor instead of -inf; relative floors keep it gain-free
    return FLOOR * level + np.float32(FLOOR_EXCERPT * level_mean + 1e-20)


def _log_floor(band: np.ndarray, level_mean: float | None = None) -> np.ndarray:
    """Floored log band power ``log(band + floor)``."""
    return np.log(band + _floor(band, level_mean))


def _band_logpower(spec: np.ndarray) -> np.ndarray:
    """Log of |X|² summed per band of 6 bins → (frames, BANDS), floored relative to the frame and the excerpt."""
    return _log_floor(_band_power(spec))


def _stft(x: np.ndarray, hop: int) -> np.ndarray:
    return sfft.rfft(_frames(x, hop), axis=1)


def _istft(spec: np.ndarray, length: int) -> np.ndarray:
    frames = sfft.irfft(spec, n=_N, axis=1).astype(np.float32) * _WINDOW
    n = len(frames)
    out = np.zeros((n + 1) * _HOP, np.float32)
    out[: n * _HOP] += frames[:, :_HOP].reshape(-1)  # 50% overlap: the two halves of every frame, two adds
    out[_HOP : (n + 1) * _HOP] += frames[:, _HOP:].reshape(-1)
    out = out[:length]
    return out if len(out) == length else np.concatenate([out, np.zeros(length - len(out), np.float32)])


# ---------------------------------------------------------------------------------------------------------- embed


def _cells(logp: np.ndarray, n_slots: int) -> np.ndarray:
    """Cell log-power: the sum of the 4 frames of each slot → (n_slots, BANDS)."""
    return logp[: n_slots * _SLOT_HOPS].reshape(n_slots, _SLOT_HOPS, BANDS).sum(axis=1)


def _residual(x16: np.ndarray, payload: bytes, key: bytes | None, offset: int) -> np.ndarray:
    """The watermark signal at 16 kHz for the mono canonical signal ``x16`` that starts ``offset`` samples into the
    grid (a long file processed in blocks keeps one continuous pattern)."""
    lead = offset % _SLOT  # start the frames on the grid's previous slot boundary
    if lead:
        x16 = np.concatenate([np.zeros(lead, np.float32), x16])
    first_slot = offset // _SLOT
    spec = _stft(x16, _HOP)
    n_slots = len(spec) // _SLOT_HOPS
    if n_slots == 0:
        return np.zeros(len(x16) - lead, np.float32)
    group, sign, bit, dither = _layout(key)
    coded = core.encode_payload(payload, key).astype(np.float64)
    slots = first_slot + np.arange(n_slots)
    ts, copy = slots % SLOTS, slots // SLOTS
    cell_sign = sign[ts]  # (n_slots, BANDS)
    gid = ((copy - copy[0])[:, None] * GROUPS + group[ts]).ravel()
    n_g = int(gid.max()) + 1
    offset_g = dither + coded[bit] * (Q / 2)  # the lattice of each group: offset_g + Q·ℤ

    def stats(cells: np.ndarray) -> np.ndarray:
        return np.bincount(gid, weights=(cell_sign * cells).ravel(), minlength=n_g) / GROUP

    band = _band_power(spec)
    floor = _floor(band)
    p = stats(_cells(np.log(band + floor), n_slots))
    off = offset_g[np.arange(n_g) % GROUPS]
    target = off + Q * np.round((p - off) / Q)
    # Who moves the group: a cell near the floor barely changes its floored log-power (responsiveness
    # b / (b + floor) → 0), and a loud cell costs the most signal-to-watermark ratio (the residual's energy is the
    # cell's power × the squared log change). Shares ∝ responsiveness / √power (mean 1 per group, at most
    # _SHARE_CAP) put the change in the moderate cells that codecs keep; the lattice step Q = 1.5 then fits the
    # 30 dB budget (an equal share for every cell fitted only Q = 0.85).
    respond = _cells(band / (band + floor), n_slots) / _SLOT_HOPS
    power = _cells(band, n_slots) / (_SLOT_HOPS * float(band.mean()) + 1e-20)
    share = respond / (power + 1e-3) ** _COST_EXP
    mean_share = np.bincount(gid, weights=share.ravel(), minlength=n_g) / GROUP
    share = np.minimum(share / (mean_share[gid].reshape(n_slots, BANDS) + 1e-9), _SHARE_CAP)
    # A group cut by the end (the partial tile copy) is left alone: the detector drops it (its balanced signs no
    # longer cancel), and pushing its few cells to a lattice point meant for six cost up to half the residual's energy
    # (clipped gains on loud cells), which the SNR safety net then took from every other group.
    kept = np.bincount(gid, minlength=n_g) == GROUP
    share *= kept[gid].reshape(n_slots, BANDS)
    cell_power = _cells(band, n_slots)
    budget = float(np.dot(x16, x16)) * 10 ** (-(MIN_SNR_DB + _SNR_MARGIN_DB) / 10)

    def residual(gains: np.ndarray) -> np.ndarray:
        # log-power change per cell spread over its 4 frames → amplitude factor exp(Δ/8) on the cell's bins
        amp = np.exp(np.repeat(gains, _SLOT_HOPS, axis=0) / (2 * _SLOT_HOPS)).astype(np.float32)
        g_full = np.zeros(spec.shape, np.float32)
        g_full[: n_slots * _SLOT_HOPS, _BIN0 : _BIN0 + BANDS * _BIN_W] = np.repeat(amp - 1, _BIN_W, axis=1)
        return _istft(spec * g_full, len(x16))

    gains = np.zeros((n_slots, BANDS))  # accumulated log-power change per cell
    for it in range(_REFINE + 1):
        step = (target - p)[gid].reshape(n_slots, BANDS) * cell_sign * share  # moves the group by ~(target - p)
        gains = np.clip(gains + step, -_MAX_GAIN, _MAX_GAIN)
        r = residual(gains)
        for _ in range(3):  # over the SNR budget: drop the costliest groups (see _drop_costliest)
            energy = float(np.dot(r, r))
            if energy <= budget:
                break
            cost = cell_power * np.expm1(gains / (2 * _SLOT_HOPS)) ** 2  # the cell's residual energy, up to a constant
            kept &= _drop_costliest(np.bincount(gid, weights=cost.ravel(), minlength=n_g), kept, budget / energy)
            on = kept[gid].reshape(n_slots, BANDS)
            share *= on
            gains *= on
            r = residual(gains)
        if it == _REFINE:
            break
        p = stats(_cells(_band_logpower(_stft(x16 + r, _HOP)), n_slots))
    return r[lead:]


def _drop_costliest(cost: np.ndarray, kept: np.ndarray, fraction: float) -> np.ndarray:
    """Which groups stay (bool per group) so that the kept groups' ``cost`` shrinks to ``fraction`` of its sum: the
    costliest go first. A group left alone votes at random in the detector (its soft bit and its sync term average
    0); the others keep their whole move. Scaling every move down instead (the old safety net) left every group off
    its lattice point: on eSpeak speech 3 dB over budget, a 0.71 scale took the sync score from 13.8 to 1.7 and the
    mark was lost, though the payload still decoded at the right phase."""
    cost = np.where(kept, cost, 0.0)
    order = np.argsort(cost)[::-1]
    excess = float(cost.sum()) * (1 - fraction)
    n_drop = int(np.searchsorted(np.cumsum(cost[order]), excess)) + 1
    out = np.ones(len(cost), bool)
    out[order[:n_drop]] = False
    return out


def embed_audio(
    samples: np.ndarray,
    sample_rate: int,
    payload: bytes,
    *,
    key: bytes | None = None,
    offset_s: float = 0.0,
) -> np.ndarray:
    """Return ``samples`` (float32, (n,) or (n, channels), in [-1, 1]) carrying the 64-bit ``payload``.

    ``offset_s`` is where these samples start in the whole file, for block-wise embedding of long files (use a
    multiple of 0.064 s so the grid stays exact; a multiple of :data:`TILE_SECONDS`, as the audio handler's blocks
    are, keeps every group whole: the groups a block boundary cuts are embedded in neither block). Raises
    :class:`~kzlabel.errors.CapacityError` for content shorter than :data:`MIN_SECONDS` or sampled under 8 kHz, and
    for content shorter than :data:`CHECK_SECONDS` whose mark cannot be read back (too little of it to carry 64 bits).
    """
    if len(payload) != core.PAYLOAD_BYTES:
        raise ValueError(f"payload must be {core.PAYLOAD_BYTES} bytes, got {len(payload)}")
    a = _as_float(samples)
    if sample_rate < 8000:
        raise CapacityError(f"{sample_rate} Hz audio is below the 8 kHz the watermark needs")
    if a.shape[0] < MIN_SECONDS * sample_rate and offset_s == 0.0:
        raise CapacityError(
            f"{a.shape[0] / sample_rate:.2f} s of audio is too short for the watermark (min {MIN_SECONDS} s)"
        )
    mono = _mono(a)
    r16 = _residual(_resample(mono, sample_rate, RATE), payload, key, round(offset_s * RATE))
    r = _resample(r16, RATE, sample_rate)[: a.shape[0]]
    if len(r) < a.shape[0]:
        r = np.concatenate([r, np.zeros(a.shape[0] - len(r), np.float32)])
    # a safety net: _residual keeps the budget at 16 kHz with a margin (by group); never let the mark exceed it
    e_sig, e_wm = float(np.dot(mono, mono)) + 1e-20, float(np.dot(r, r)) + 1e-30
    r *= min(1.0, float(np.sqrt(e_sig / e_wm * 10 ** (-MIN_SNR_DB / 10))))
    out = a + (r if a.ndim == 1 else r[:, None])
    np.clip(out, -1.0, 1.0, out=out)
    if offset_s == 0.0 and a.shape[0] < CHECK_SECONDS * sample_rate:
        back = detect_audio(out, sample_rate, key=key)
        if not (back.found and back.payload == bytes(payload)):
            raise CapacityError(
                f"{a.shape[0] / sample_rate:.1f} s of audio is too short to carry a watermark that can be read back"
            )
    return out


# --------------------------------------------------------------------------------------------------------- detect


@lru_cache(maxsize=32)
def _gather(key: bytes | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group (GROUPS, GROUP), its 3 positive cells first: the detection-frame offset of each cell in the tile,
    its band, its sign."""
    group, sign, _, _ = _layout(key)
    order = np.lexsort((-sign.ravel(), group.ravel()))  # by group, then + before −
    out = (
        (_DET_PER_SLOT * (order // BANDS)).reshape(GROUPS, GROUP),
        (order % BANDS).reshape(GROUPS, GROUP),
        sign.ravel()[order].reshape(GROUPS, GROUP),
    )
    for a in out:
        a.setflags(write=False)
    return out


def _group_stats(
    c: np.ndarray, phases: np.ndarray, key: bytes | None, per_slot: int = _DET_PER_SLOT, rel: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Group statistics for each phase and every tile copy → (phases, copies, GROUPS), and each group's weight:
    0 for a group not wholly inside the excerpt (a group cut by the excerpt's ends is dropped: its balanced signs
    would no longer cancel), else 1, or with ``rel`` (per cell, like ``c``) the mean reliability of its cells.
    The copies include the one that starts before the phase (a phase is a position modulo the tile).

    ``c`` holds cells starting every ``1024 / per_slot`` samples (64 per slot: every detection frame; 4: one
    residue class, see :func:`_residue_cells`); ``phases`` count its rows.
    """
    frame_of, band_of, sg = _gather(key)
    tile = SLOTS * per_slot
    copies = np.arange(-1, len(c) // tile + 1)  # from the partial copy before the phase to the one cut by the end
    frame = phases[:, None, None, None] + tile * copies[None, :, None, None] + frame_of // (_DET_PER_SLOT // per_slot)
    inside = (frame >= 0) & (frame < len(c))
    np.clip(frame, 0, len(c) - 1, out=frame)
    at = frame * BANDS + band_of
    vals = c.ravel()[at]  # (phases, copies, GROUPS, GROUP)
    weight = inside.all(axis=-1).astype(np.float32)
    if rel is not None:
        weight *= rel.ravel()[at].mean(axis=-1)
    return np.einsum("pcgk,gk->pcg", vals, sg) / GROUP, weight


def _sync(
    c: np.ndarray, phases: np.ndarray, key: bytes | None, per_slot: int = _DET_PER_SLOT, rel: np.ndarray | None = None
) -> np.ndarray:
    """Synchronisation score of a few phases on every tile copy: Σ w cos(4π (p − dither) / Q) / √(Σ w²), with the
    group weights ``w`` of :func:`_group_stats` (they depend on the audio, not the key: Hoeffding still holds)."""
    s, w = _group_stats(c, phases, key, per_slot, rel)
    dither = _layout(key)[3]
    norm = np.sqrt(np.maximum((w * w).sum(axis=(1, 2)), 1e-6))
    return (np.cos((4 * np.pi / Q) * (s - dither)) * w).sum(axis=(1, 2)) / norm


_SIGNS = np.array([1, 1, 1, -1, -1, -1], np.float32)  # a group's cell signs in :func:`_gather`'s order


def _search(c: np.ndarray, key: bytes | None) -> np.ndarray:
    """A synchronisation score for every phase of the tile at once → (_TILE_DET,), to shortlist phases.

    Like :func:`_sync`, but each group scores the triangle wave ``1 − 4 |r|`` of its distance ``r`` to the
    nearest lattice point (in half-steps, r ∈ [−½, ½)) instead of the cosine: the same detection power for a
    noisy lattice (the ratio of its mean to its spread under H0 is within 2 % of the cosine's), at a fraction of
    the cost. For a block of consecutive phases a cell's values are one contiguous run of ``c``'s band column, so
    the gather copies runs (a sliding-window view); blocks of _CHUNK phases stay in cache. This is the detector's
    inner loop: 232 groups × 6 cells × every 1 ms of the excerpt.
    """
    frame_of, band_of, _ = _gather(key)
    dither = _layout(key)[3]
    n = len(c)
    n_copies = -(-n // _TILE_DET)
    width = (n_copies + 2) * _TILE_DET + _CHUNK  # a tile of room before the excerpt (copy −1), a block after
    col = np.zeros((BANDS, width), np.float32)
    np.multiply(c.T, np.float32(2 / Q / GROUP), out=col[:, _TILE_DET : _TILE_DET + n])  # p / (Q/2), p = Σ ± cell / 6
    rows = np.lib.stride_tricks.sliding_window_view(col.ravel(), _CHUNK)
    start = band_of * width + _TILE_DET + frame_of  # (GROUPS, GROUP): where each cell's run begins, phase 0, copy 0
    lo = -frame_of.min(axis=1)  # a group is inside while lo <= phase + copy offset < hi
    hi = n - frame_of.max(axis=1)
    shift = (2 / Q * dither).astype(np.float32)[:, None]
    dist = np.zeros(_TILE_DET)  # Σ |r| over the groups inside
    cnt = np.zeros(_TILE_DET)
    for first in range(0, _TILE_DET, _CHUNK):
        for copy in range(-1, n_copies):
            at = first + copy * _TILE_DET
            if at + _CHUNK <= lo.min() or at >= hi.max():
                continue
            u = np.matmul(_SIGNS, rows[start + at])  # (GROUPS, _CHUNK): Σ ± cell, copied as contiguous runs
            u -= shift
            r = np.rint(u)
            np.subtract(u, r, out=u)
            np.abs(u, out=u)
            if at >= lo.max() and at + _CHUNK <= hi.min():  # every group inside: the common case
                dist[first : first + _CHUNK] += u.sum(axis=0)
                cnt[first : first + _CHUNK] += GROUPS
            else:
                pos = at + np.arange(_CHUNK)
                inside = (pos >= lo[:, None]) & (pos < hi[:, None])
                dist[first : first + _CHUNK] += np.einsum("gp,gp->p", u, inside, dtype=np.float32)
                cnt[first : first + _CHUNK] += inside.sum(axis=0)
    return (cnt - 4 * dist) / np.sqrt(np.maximum(cnt, 1))


def _log_frames(x16: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Floored band log-power of frames starting every _DET_HOP samples → (frames, BANDS), the log floor of the
    transformed frames (every _UP-th) and the excerpt's mean band power (the shared floor). Only every _UP-th frame
    is transformed; the others are interpolated from them (good enough to rank phases; the shortlisted ones are
    then scored on exact frames, :func:`_residue_cells`)."""
    band = _band_power_at(x16, _BASE_HOP)
    level_mean = float(band.mean())
    floor = _floor(band, level_mean)
    lp0 = np.log(band + floor)
    n = len(lp0)
    pad = np.concatenate([np.repeat(lp0[:1], _INTERP_HALF - 1, axis=0), lp0, np.repeat(lp0[-1:], _INTERP_HALF, axis=0)])
    lp = np.empty((n * _UP, BANDS), np.float32)
    lp[::_UP] = lp0
    for j, taps in enumerate(_INTERP, start=1):  # a loop over 3 sub-positions × 6 taps, each a whole-array op
        out = lp[j::_UP]
        np.multiply(pad[:n], taps[0], out=out)
        for d in range(1, len(taps)):
            out += taps[d] * pad[d : d + n]
    return lp, np.log(floor[:, 0]), level_mean


def _residue_cells(
    x16: np.ndarray, lp: np.ndarray, log_floor: np.ndarray, offset: int, level_mean: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cell log-power starting at samples ``offset + 256 m`` (one residue class modulo the embedding hop:
    all a phase ≡ ``offset`` uses, 1/16 of the frames of a 1 ms search) → (m, BANDS), and each cell's reliability
    ``1 − exp(−h)`` in [0, 1), ``h`` its mean height above the floor in log-power: a cell at the floor holds noise
    or what a codec put there, whatever the mark did (see :func:`_group_stats`). Classes on the transformed 1/4-hop
    grid are read from ``lp`` and ``log_floor`` (:func:`_log_frames`); the others are transformed."""
    if offset % _BASE_HOP == 0:
        rows = lp[offset // _DET_HOP :: _RESIDUES]
        lf = log_floor[offset // _BASE_HOP :: _RESIDUES // _UP]
    else:
        band = _band_power_at(x16[offset:], _HOP)
        floor = _floor(band, level_mean)
        rows, lf = np.log(band + floor), np.log(floor[:, 0])
    n = max(1, len(rows) - (_SLOT_HOPS - 1))
    rows = np.concatenate([rows, np.repeat(rows[-1:], n + _SLOT_HOPS - 1 - len(rows), axis=0)])
    lf = np.concatenate([lf, np.repeat(lf[-1:], n + _SLOT_HOPS - 1 - len(lf))])
    cells = rows[:n].copy()
    floors = lf[:n].copy()
    for k in range(1, _SLOT_HOPS):  # the same additions, in the same order, as sum() over the slot's hops
        cells += rows[k : k + n]
        floors += lf[k : k + n]
    height = cells - floors[:, None]
    return cells, 1 - np.exp(-height / _SLOT_HOPS)


def _cells_at(lp: np.ndarray) -> np.ndarray:
    """Cell log-power starting at every detection frame: frames f, f+16, f+32, f+48 (the embedding hop's 4 frames)."""
    step = _HOP // _DET_HOP
    n = len(lp) - step * (_SLOT_HOPS - 1)
    c = lp[:n].copy()
    for k in range(1, _SLOT_HOPS):
        c += lp[k * step : k * step + n]
    return c


def _locate(x16: np.ndarray, key: bytes | None) -> Iterator[tuple[int, float, tuple[np.ndarray, np.ndarray]]]:
    """Where the tile may start, best first: up to :data:`_N_DECODE` distinct sync peaks, each as (phase in samples
    modulo the tile, exact sync score, the residue-class cells it was scored on and their reliabilities). A
    generator: the caller stops after the first peak that decodes, so the later peaks are never refined."""
    lp, log_floor, level_mean = _log_frames(x16)
    # 1. every 1 ms phase on every tile copy, on interpolated frames: a shortlist
    shortlist = np.argsort(_search(_cells_at(lp), key))[::-1][:_SHORTLIST]
    # 2. exact frames from here on: a phase (in samples) ≡ o modulo 256 needs only residue class o
    tile = _TILE_DET * _DET_HOP
    cells: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    scores: dict[int, float] = {}

    def score(at: int) -> float:
        at %= tile
        if at not in scores:
            o = at % _HOP
            if o not in cells:
                cells[o] = _residue_cells(x16, lp, log_floor, o, level_mean)
            scores[at] = float(_sync(cells[o][0], np.array([at // _HOP]), key, _SLOT_HOPS, cells[o][1])[0])
        return scores[at]

    ranked = sorted((int(ph) * _DET_HOP for ph in shortlist), key=score, reverse=True)
    # 3. the best peaks (distinct: a peak is ~1 ms wide), each refined below the search step: ±16 then ±8 samples
    peaks: list[int] = []
    for at in ranked:
        if len(peaks) < _N_DECODE and all(min((at - q) % tile, (q - at) % tile) > 2 * _DET_HOP for q in peaks):
            peaks.append(at)
    for at in peaks:
        for step in _REFINE_STEPS:
            at = max(((at + d) % tile for d in (0, -step, step)), key=score)
        yield at, scores[at], cells[at % _HOP]


def detect_audio(samples: np.ndarray, sample_rate: int, *, key: bytes | None = None) -> WatermarkResult:
    """Look for a kzlabel audio watermark made with ``key`` (None = the public default key).

    Any excerpt of ~10 s is enough; at most the first :data:`MAX_DETECT_SECONDS` are used. Robust to lossy codecs,
    resampling, downmixing, gain changes and trimming at either end.
    """
    a = _as_float(samples)
    n_in = min(a.shape[0], int(MAX_DETECT_SECONDS * sample_rate))
    if n_in < MIN_SECONDS * sample_rate or sample_rate < 8000:
        return WatermarkResult(False, None, None, 1.0)
    x16 = _resample(_mono(a[:n_in]), sample_rate, RATE, short=True)
    _, _, bit, dither = _layout(key)
    best_soft, best_payload, ok, z_best = None, b"", False, -np.inf
    for at, z, (cells, rel) in _locate(x16, key):
        z_best = max(z_best, z)
        s, weight = _group_stats(cells, np.array([at // _HOP]), key, _SLOT_HOPS, rel)
        soft_g = (np.cos((2 * np.pi / Q) * (s[0] - dither)) * weight[0]).sum(axis=0)
        soft = np.bincount(bit, weights=soft_g, minlength=core.CODED_BITS)
        soft = soft / (np.std(soft) + 1e-12)
        payload, ok = core.decode_payload(soft, key)
        if best_soft is None or ok:
            best_soft, best_payload = soft, payload
        if ok:
            break
    # the sync statistic is a sum of bounded terms, but copies of one group share a dither: its Hoeffding bound is
    # loose, so the decision rests on the keyed MAC (at most _N_DECODE decodes per call)
    p = core.combined_pvalue(z_best / np.sqrt(max(1.0, len(x16) / (_TILE_DET * _DET_HOP))), N_TESTS, ok, _N_DECODE)
    found = bool(ok and p < core.P_THRESHOLD)
    bits = None if best_soft is None else best_soft.astype(np.float32)
    return WatermarkResult(found, best_payload if found else None, bits, p)
