"""Invisible audio watermark: keyed dither modulation of log band power on a fixed 16 kHz time-frequency grid.

Embedding (vectorised; cost per second of audio ~independent of the sample rate):

1. the channels are averaged and resampled to the canonical 16 kHz rate (polyphase), so the mark lives on a grid
   fixed in *seconds and hertz*: resampling 44.1 ↔ 48 ↔ 16 kHz only changes how it is sampled;
2. an STFT (512-sample frames, hop 256) is cut into cells of 4 hops (64 ms) × 6 bins (187.5 Hz; a partial's main
   lobe fits in one band) between 310 Hz and 5.7 kHz, where every lossy codec keeps the signal; a periodic tile of
   48 slots (3.07 s) × 29 bands = 1392 cells is split into 232 keyed groups of 6 cells with balanced signs
   (three +, three −), group ``g`` carrying coded bit ``g mod 188`` of :mod:`.core`;
3. a group's statistic is ``p = Σ sign · (cell log-power) / 6``: a constant gain cancels (balanced signs), and the
   host's own value is *used*, not fought: ``p`` is moved to the nearest point of the keyed lattice
   ``dither + bit·Q/2 + Q·ℤ`` (dither modulation, Chen & Wornell), which costs at most ``Q/2`` per cell whatever
   the music is — this informed embedding is what lets 64 bits fit in 10 s under a 30 dB SNR;
4. the per-cell change becomes a gain on the STFT bins, inverse-transformed; two refinement passes re-measure the
   achieved statistics (neighbouring slots blur through the window overlap) and correct them. The residual is
   resampled back and added to every channel (a mono downmix keeps it). It is multiplicative: silence stays
   silent, loud bands carry more; the signal-to-watermark ratio stays above :data:`MIN_SNR_DB`.

Detection (no knowledge of start, length or level):

1. downmix, resample to 16 kHz, STFT with a hop of 64 samples (¼ of the embedding hop, so any trim or encoder
   delay lands within 2 ms of a grid point), cell log-powers for every start frame;
2. synchronisation: for every tile phase (768 of them, coarse then fine) the group statistics of every tile copy
   are compared with the keyed dithers; at the right phase they sit on the lattice (either bit), elsewhere they are
   uniformly spread — the sum of ``cos(4π (p − dither) / Q)`` peaks;
3. at the best phases each group gives a soft bit ``cos(2π (p − dither) / Q)``, summed over copies and repeats,
   Viterbi-decoded, and the keyed MAC checked. ``found`` needs the MAC (p-value from :func:`.core.combined_pvalue`).
"""

from __future__ import annotations

from functools import lru_cache
from math import gcd

import numpy as np
from scipy import fft as sfft
from scipy import signal

from ..errors import CapacityError, CorruptInput
from . import core
from .core import WatermarkResult

__all__ = ["RATE", "MIN_SECONDS", "MIN_SNR_DB", "TILE_SECONDS", "detect_audio", "embed_audio"]

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
Q = 0.85  # lattice step of the group statistic (log-power): the embedding distortion is at most Q/2 per cell
FLOOR = 1e-3  # bands 30 dB under the frame's mean band power are flattened: they carry nothing a codec keeps
MIN_SECONDS = 2.0  # shorter content cannot carry a decodable mark
MIN_SNR_DB = 30.0
_REFINE = 2  # correction passes after the first embedding
_DET_HOP = 16  # detection hop (1 ms): the lattice tolerates only a few ms of misalignment, so every 16th sample is tried
_DET_PER_SLOT = _SLOT // _DET_HOP  # 64
_TILE_DET = SLOTS * _DET_PER_SLOT  # 3072 detection phases per tile
_SHORTLIST = 8  # phases kept from the one-copy pass for the all-copies pass
_N_DECODE = 3  # phases decoded at most (enters the MAC's share of the p-value)
N_TESTS = _TILE_DET
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
    return a if a.ndim == 1 else a.mean(axis=1, dtype=np.float32)


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst:
        return x.astype(np.float32, copy=False)
    g = gcd(src, dst)
    return signal.resample_poly(x, dst // g, src // g).astype(np.float32)


def _frames(x: np.ndarray, hop: int) -> np.ndarray:
    """Windowed frames (n_frames, _N) as a strided view copy; the signal is zero-padded to whole frames."""
    n = max(1, -(-(len(x) - _N) // hop) + 1) if len(x) > _N else 1
    need = (n - 1) * hop + _N
    if need > len(x):
        x = np.concatenate([x, np.zeros(need - len(x), np.float32)])
    view = np.lib.stride_tricks.sliding_window_view(x, _N)[::hop][:n]
    return view * _WINDOW


def _band_logpower(spec: np.ndarray) -> np.ndarray:
    """Log of |X|² summed per band of 6 bins → (frames, BANDS), floored relative to the frame and the excerpt."""
    p = spec.real**2 + spec.imag**2
    band = p[:, _BIN0 : _BIN0 + BANDS * _BIN_W].reshape(len(p), BANDS, _BIN_W).sum(axis=2)
    level = band.mean(axis=1, keepdims=True)
    # codec-zeroed and masked bands sit at a floor instead of -inf; relative floors keep the feature gain-free
    floor = FLOOR * level + 0.1 * FLOOR * float(level.mean()) + 1e-20
    return np.log(band + floor)


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

    lp = _band_logpower(spec)
    p = stats(_cells(lp, n_slots))
    off = offset_g[np.arange(n_g) % GROUPS]
    target = off + Q * np.round((p - off) / Q)
    gains = np.zeros((n_slots, BANDS))  # accumulated log-power change per cell
    for it in range(_REFINE + 1):
        step = (target - p)[gid].reshape(n_slots, BANDS) * cell_sign  # each cell moves the group by (target - p)
        gains = np.clip(gains + step, -2.0, 2.0)
        # log-power change per cell spread over its 4 frames → amplitude factor exp(Δ/8) on the cell's bins
        amp = np.exp(np.repeat(gains, _SLOT_HOPS, axis=0) / (2 * _SLOT_HOPS)).astype(np.float32)
        g_full = np.ones(spec.shape, np.float32)
        g_full[: n_slots * _SLOT_HOPS, _BIN0 : _BIN0 + BANDS * _BIN_W] = np.repeat(amp, _BIN_W, axis=1)
        if it == _REFINE:
            break
        r = _istft(spec * (g_full - 1), len(x16))
        p = stats(_cells(_band_logpower(_stft(x16 + r, _HOP)), n_slots))
    return _istft(spec * (g_full - 1), len(x16))[lead:]


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
    multiple of 0.064 s, e.g. whole minutes, so the grid stays exact). Raises
    :class:`~kzlabel.errors.CapacityError` for content shorter than :data:`MIN_SECONDS` or sampled under 8 kHz.
    """
    if len(payload) != core.PAYLOAD_BYTES:
        raise ValueError(f"payload must be {core.PAYLOAD_BYTES} bytes, got {len(payload)}")
    a = _as_float(samples)
    if sample_rate < 8000:
        raise CapacityError(f"{sample_rate} Hz audio is below the 8 kHz the watermark needs")
    if a.shape[0] < MIN_SECONDS * sample_rate and offset_s == 0.0:
        raise CapacityError(f"{a.shape[0] / sample_rate:.2f} s of audio is too short for the watermark (min {MIN_SECONDS} s)")
    mono = _mono(a)
    r16 = _residual(_resample(mono, sample_rate, RATE), payload, key, int(round(offset_s * RATE)))
    r = _resample(r16, RATE, sample_rate)[: a.shape[0]]
    if len(r) < a.shape[0]:
        r = np.concatenate([r, np.zeros(a.shape[0] - len(r), np.float32)])
    # a safety net: the lattice bounds the distortion, but never let the mark exceed the SNR budget
    e_sig, e_wm = float(np.dot(mono, mono)) + 1e-20, float(np.dot(r, r)) + 1e-30
    r *= min(1.0, float(np.sqrt(e_sig / e_wm * 10 ** (-MIN_SNR_DB / 10))))
    out = a + (r if a.ndim == 1 else r[:, None])
    return np.clip(out, -1.0, 1.0, out=out)


# --------------------------------------------------------------------------------------------------------- detect


@lru_cache(maxsize=32)
def _gather(key: bytes | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group (GROUPS, GROUP): the detection-frame offset of each cell in the tile, its band, its sign."""
    group, sign, _, _ = _layout(key)
    order = np.argsort(group.ravel(), kind="stable")
    return (
        (_DET_PER_SLOT * (order // BANDS)).reshape(GROUPS, GROUP),
        (order % BANDS).reshape(GROUPS, GROUP),
        sign.ravel()[order].reshape(GROUPS, GROUP),
    )


def _group_stats(
    c: np.ndarray, phases: np.ndarray, key: bytes | None, copies: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Group statistics for each phase and tile copy → (phases, copies, GROUPS), and which groups lie wholly
    inside the excerpt (a group cut by the excerpt's ends is dropped: its balanced signs would no longer cancel)."""
    frame_of, band_of, sg = _gather(key)
    n_copies = len(c) // _TILE_DET + 1 if copies is None else copies
    frame = phases[:, None, None, None] + _TILE_DET * np.arange(n_copies)[None, :, None, None] + frame_of
    inside = frame < len(c)
    np.minimum(frame, len(c) - 1, out=frame)
    vals = c.ravel()[frame * BANDS + band_of]  # (phases, copies, GROUPS, GROUP)
    return np.einsum("pcgk,gk->pcg", vals, sg) / GROUP, inside.all(axis=-1)


def detect_audio(samples: np.ndarray, sample_rate: int, *, key: bytes | None = None) -> WatermarkResult:
    """Look for a kzlabel audio watermark made with ``key`` (None = the public default key).

    Any excerpt of ~10 s is enough; at most the first :data:`MAX_DETECT_SECONDS` are used. Robust to lossy codecs,
    resampling, downmixing, gain changes and trimming at either end.
    """
    a = _as_float(samples)
    mono = _mono(a)[: int(MAX_DETECT_SECONDS * sample_rate)]
    if len(mono) < MIN_SECONDS * sample_rate or sample_rate < 8000:
        return WatermarkResult(False, None, None, 1.0)
    x16 = _resample(mono, sample_rate, RATE)
    lp = _band_logpower(_stft(x16, _DET_HOP))
    # cell log-power starting at every detection frame: frames f, f+16, f+32, f+48 (the embedding hop's 4 frames)
    step = _HOP // _DET_HOP
    n = len(lp) - step * (_SLOT_HOPS - 1)
    if n < _TILE_DET:  # less than one tile: pad with flat cells (they carry nothing, they just make the maths regular)
        lp = np.concatenate([lp, np.repeat(lp[-1:], _TILE_DET - n, axis=0)])
        n = _TILE_DET
    c = sum(lp[k * step : k * step + n] for k in range(_SLOT_HOPS))
    _, _, bit, dither = _layout(key)

    def sync(phases: np.ndarray, copies: int | None) -> np.ndarray:
        s, ok = _group_stats(c, phases, key, copies)
        return (np.cos((4 * np.pi / Q) * (s - dither)) * ok).sum(axis=(1, 2)) / np.sqrt(np.maximum(ok.sum(axis=(1, 2)), 1))

    # every phase on one tile copy (cheap), then the best few on all copies
    sc = sync(np.arange(_TILE_DET), 1)
    shortlist = np.argsort(sc)[::-1][:_SHORTLIST]
    sf = sync(shortlist, None)
    candidates = shortlist[np.argsort(sf)[::-1][:_N_DECODE]]
    z_best = float(sf.max())
    best_soft, best_payload, ok = None, b"", False
    for tried, phase in enumerate(candidates, start=1):
        s, inside = _group_stats(c, np.array([phase]), key)
        soft_g = (np.cos((2 * np.pi / Q) * (s[0] - dither)) * inside[0]).sum(axis=0)
        soft = np.bincount(bit, weights=soft_g, minlength=core.CODED_BITS)
        soft /= np.std(soft) + 1e-12
        payload, ok = core.decode_payload(soft, key)
        if best_soft is None or ok:
            best_soft, best_payload = soft, payload
        if ok:
            break
    # the sync statistic is a sum of bounded terms, but copies of one group share a dither: its Hoeffding bound is
    # loose, so the decision rests on the keyed MAC (at most _N_DECODE decodes per call)
    p = core.combined_pvalue(z_best / np.sqrt(max(1.0, len(c) / _TILE_DET)), N_TESTS, ok, _N_DECODE)
    found = bool(ok and p < core.P_THRESHOLD)
    bits = None if best_soft is None else best_soft.astype(np.float32)
    return WatermarkResult(found, best_payload if found else None, bits, p)
