"""The perceptible audio warning (Art. 21(2) "or other form of warning"): the "AI" rhythm as a soft tone.

The rhythm is short-long-short-short (Morse · − · ·, as STANDARDS.md names it) on an 880 Hz tone with 10 ms
raised-cosine ramps (no clicks), a 100 ms unit, 0.25 s of silence around it, at a level set relative to the content's
own loudness so it is heard over quiet speech and does not blast over quiet music. It is inserted before the content
(and/or after it), never mixed over it, so nothing of the original is masked.

Detection is a matched filter: the 880 Hz band's share of the energy in 10 ms frames is correlated with the on/off
template over a few seconds at the start (or end); a lossy codec, a resampler or a gain change leave it intact.
"""

from __future__ import annotations

from math import gcd

import numpy as np

__all__ = ["FREQ", "PATTERN", "Loudness", "detect", "level_for", "tone", "tone_seconds"]

FREQ = 880.0
UNIT_S = 0.1
PATTERN = (1, 0, 1, 1, 1, 0, 1, 0, 1)  # · − · · in units: dot, gap, dash (3), gap, dot, gap, dot
PAD_S = 0.25
RAMP_S = 0.01
THRESHOLD = 0.75  # normalised correlation with the template
_RATE = 8000  # analysis rate of the detector
_HOP = 80  # 10 ms


def tone_seconds() -> float:
    return len(PATTERN) * UNIT_S + 2 * PAD_S


def _frame_rms(content: np.ndarray) -> np.ndarray:
    """RMS of 1024-sample frames of the mono mix (the whole signal as one frame when shorter)."""
    mono = content if content.ndim == 1 else content.mean(axis=1)
    frames = mono[: len(mono) // 1024 * 1024].reshape(-1, 1024) if len(mono) >= 1024 else mono[None, :]
    return np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))


def _level(rms: np.ndarray) -> float:
    if rms.size == 0:
        return 10 ** (-20 / 20)
    active = rms[rms > 0.1 * rms.max()] if rms.max() > 0 else rms
    level = float(np.sqrt((active**2).mean()) * np.sqrt(2) * 10 ** (-6 / 20)) if active.size else 0.0
    return float(np.clip(level, 10 ** (-40 / 20), 10 ** (-12 / 20)))


def level_for(content: np.ndarray) -> float:
    """Peak amplitude of the tone: 6 dB under the content's active RMS×√2, within [-40, -12] dBFS."""
    if content.size == 0:
        return _level(np.zeros(0))
    return _level(_frame_rms(content))


class Loudness:
    """:func:`level_for` over content seen block by block, so a streamed file keeps only frame RMS values
    (8 bytes per 1024 samples: 4 MB for 3 hours at 48 kHz), never the samples."""

    def __init__(self) -> None:
        self._rms: list[np.ndarray] = []

    def add(self, block: np.ndarray) -> None:
        if len(block):
            self._rms.append(_frame_rms(block))

    def level(self) -> float:
        return _level(np.concatenate(self._rms) if self._rms else np.zeros(0))


def _envelope(rate: int) -> np.ndarray:
    unit = int(round(UNIT_S * rate))
    on = np.repeat(np.array(PATTERN, np.float32), unit)
    ramp = int(RAMP_S * rate)
    if ramp:  # raised-cosine edges: smooth the on/off envelope with a Hann kernel
        kernel = np.hanning(2 * ramp + 1)
        on = np.convolve(on, kernel / kernel.sum(), mode="same").astype(np.float32)
    pad = np.zeros(int(PAD_S * rate), np.float32)
    return np.concatenate([pad, on, pad])


def tone(rate: int, channels: int, level: float) -> np.ndarray:
    """The warning as float32 samples shaped (n, channels)."""
    env = _envelope(rate)
    t = np.arange(len(env)) / rate
    x = (level * env * np.sin(2 * np.pi * FREQ * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def _template() -> np.ndarray:
    unit = int(round(UNIT_S * _RATE / _HOP))
    return np.repeat(np.array(PATTERN, np.float64), unit)


def detect(samples: np.ndarray, rate: int, where: str = "start", seconds: float = 4.0) -> float:
    """Best normalised correlation (0..1) of the tone pattern within ``seconds`` at the start or end."""
    mono = samples if samples.ndim == 1 else samples.mean(axis=1)
    n = int(seconds * rate)
    seg = mono[:n] if where == "start" else mono[-n:]
    if len(seg) < int(tone_seconds() * rate * 0.8):
        return 0.0
    from scipy import signal  # ~0.9 s to import: loaded when audio is checked, not by every kzlabel command

    g = gcd(int(rate), _RATE)
    x = signal.resample_poly(seg.astype(np.float64), _RATE // g, int(rate) // g)
    f, _, z = signal.stft(x, fs=_RATE, nperseg=2 * _HOP, noverlap=_HOP, boundary=None, padded=False)
    p = np.abs(z) ** 2
    band = p[np.abs(f - FREQ) <= 60].sum(axis=0)
    share = band / (p.sum(axis=0) + 1e-12)  # tonality at 880 Hz: independent of level
    tpl = _template()
    if len(share) < len(tpl):
        return 0.0
    tpl = tpl - tpl.mean()
    win = np.lib.stride_tricks.sliding_window_view(share, len(tpl))
    win = win - win.mean(axis=1, keepdims=True)
    corr = win @ tpl / (np.linalg.norm(win, axis=1) * np.linalg.norm(tpl) + 1e-12)
    return float(max(0.0, corr.max()))
