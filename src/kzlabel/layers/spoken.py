"""The spoken audio warning: the label's notice read aloud in each chosen language, before the content.

The clips are pre-rendered at development time (scripts/make_spoken_notices.py: eSpeak NG, 16 kHz mono FLAC in
kzlabel/assets/) from the same notice texts the label carries, so no speech engine is needed at run time. They are
joined with short pauses, resampled to the content's rate and set to its loudness (3 dB under the content's active
RMS, like a presenter's voice over a bed), and inserted before the content — never mixed over it.

Detection cross-correlates the opening seconds with the expected clip sequence on an 8 kHz grid, normalised by the
energy of each window (gain-independent); MP3/AAC/Opus re-encoding and resampling keep the waveform close enough
that the peak stays far above what unrelated audio gives.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from math import gcd

import numpy as np

from ..errors import CapacityError
from ..media_av import need_av

__all__ = ["THRESHOLD", "available", "clip", "detect", "find", "locate", "seconds"]

THRESHOLD = 0.5  # normalised correlation; unrelated audio stays under ~0.15
GAP_S = 0.35  # pause between languages
_CLIP_RATE = 16000
_RATE = 8000  # detection grid
_SEARCH_S = 3.0  # how far into the file the clip may start (e.g. after an opening tone)


def _kind(source_type: str) -> str:
    return "modified" if source_type.endswith("compositeWithTrainedAlgorithmicMedia") else "generated"


@lru_cache(maxsize=16)
def _load(kind: str, lang: str) -> np.ndarray | None:
    """The clip as float32 mono at 16 kHz, or None when none ships for this language."""
    res = resources.files("kzlabel") / "assets" / f"notice-{kind}-{lang}.flac"
    if not res.is_file():
        return None
    av = need_av("spoken notices")
    with resources.as_file(res) as path, av.open(str(path)) as container:
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    x = np.concatenate(frames).astype(np.float32)
    if x.dtype.kind == "i" or np.abs(x).max() > 1.5:  # s16 planes come back as integers
        x = x / 32768.0
    x.setflags(write=False)
    return x


def available(languages: tuple[str, ...], source_type: str) -> tuple[str, ...]:
    """The languages of ``languages`` that have a shipped clip."""
    return tuple(lang for lang in languages if _load(_kind(source_type), lang) is not None)


@lru_cache(maxsize=8)
def _sequence(languages: tuple[str, ...], source_type: str) -> np.ndarray:
    """The clips of ``languages`` joined by pauses, 16 kHz mono, peak-normalised."""
    kind = _kind(source_type)
    parts: list[np.ndarray] = []
    for lang in languages:
        x = _load(kind, lang)
        if x is not None:
            parts += [x, np.zeros(int(GAP_S * _CLIP_RATE), np.float32)]
    if not parts:
        raise CapacityError(
            f"no spoken notice ships for {', '.join(languages) or 'no language'} (built in: kk, ru, en)"
        )
    seq = np.concatenate(parts[:-1])
    seq = seq / (np.abs(seq).max() + 1e-12)
    seq.setflags(write=False)
    return seq


def seconds(languages: tuple[str, ...], source_type: str) -> float:
    return len(_sequence(available(languages, source_type), source_type)) / _CLIP_RATE


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    from scipy import signal  # ~0.9 s to import: loaded when audio is marked or checked, not by every command

    g = gcd(int(src), int(dst))
    return signal.resample_poly(x.astype(np.float64), int(dst) // g, int(src) // g)


def clip(languages: tuple[str, ...], source_type: str, rate: int, channels: int, tone_level: float) -> np.ndarray:
    """The notice as float32 (n, channels) at ``rate``, its loudness set from the tone level the content asks for
    (:func:`..audible.level_for`: a peak 6 dB under the content's active RMS·√2, so active RMS = level·√2)."""
    seq = _resample(_sequence(available(languages, source_type), source_type), _CLIP_RATE, rate)
    active = np.abs(seq) > 0.05
    rms = float(np.sqrt(np.mean(seq[active] ** 2))) if active.any() else 1.0
    target = tone_level * np.sqrt(2) * 10 ** (-3 / 20)
    x = np.clip(seq * (target / rms), -0.95, 0.95).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def detect(samples: np.ndarray, rate: int, languages: tuple[str, ...], source_type: str) -> float:
    """Best normalised correlation (0..1) of the expected notice within the first seconds of ``samples``."""
    return locate(samples, rate, languages, source_type)[0]


def _opening(samples: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    """The first ``seconds`` as mono on the 8 kHz detection grid."""
    mono = samples if samples.ndim == 1 else samples.mean(axis=1)
    return _resample(mono[: int(seconds * rate)], rate, _RATE) if rate > 0 else np.zeros(0)


@lru_cache(maxsize=32)
def _reference(languages: tuple[str, ...], source_type: str) -> np.ndarray:
    ref = _resample(_sequence(languages, source_type), _CLIP_RATE, _RATE)
    ref.setflags(write=False)
    return ref


def _locate8(x: np.ndarray, languages: tuple[str, ...], source_type: str) -> tuple[float, float]:
    """:func:`locate` on audio already on the 8 kHz grid."""
    langs = available(languages, source_type)
    if not langs:
        return 0.0, 0.0
    ref = _reference(langs, source_type)
    x = x[: len(ref) + int(_SEARCH_S * _RATE)]
    if len(x) < len(ref):
        return 0.0, 0.0
    from scipy import signal  # ~0.9 s to import: loaded when audio is checked, not by every kzlabel command

    num = signal.correlate(x, ref, mode="valid", method="fft")
    energy = np.concatenate([[0.0], np.cumsum(x * x)])
    win = energy[len(ref) :] - energy[: len(x) - len(ref) + 1]
    corr = num / (np.sqrt(np.maximum(win, 1e-12)) * np.linalg.norm(ref))
    i = int(np.argmax(corr))
    return float(max(0.0, corr[i])), (i + len(ref)) / _RATE


def locate(samples: np.ndarray, rate: int, languages: tuple[str, ...], source_type: str) -> tuple[float, float]:
    """(best normalised correlation, where the notice ends in seconds) within the first seconds of ``samples``."""
    langs = available(languages, source_type)
    if not langs or rate <= 0:
        return 0.0, 0.0
    return _locate8(
        _opening(samples, rate, len(_sequence(langs, source_type)) / _CLIP_RATE + _SEARCH_S), langs, source_type
    )


def find(
    samples: np.ndarray, rate: int, languages: tuple[str, ...], source_types: tuple[str, ...]
) -> tuple[tuple[str, ...], float]:
    """Without a label to say which notice to expect: the languages heard one after another from the start (any
    of ``languages``, any of ``source_types``' wordings) and where the last one ends, in seconds (``(), 0.0``: none).
    The opening is put on the detection grid once; each language is then one FFT correlation."""
    samples_max = max(
        (sum(len(_sequence((lang,), st)) for lang in available(languages, st)) for st in source_types), default=0
    )
    longest = samples_max / _CLIP_RATE
    x = _opening(samples, rate, longest + _SEARCH_S * (len(languages) + 1))
    best: tuple[tuple[str, ...], float] = ((), 0.0)
    for source_type in source_types:
        heard: list[str] = []
        pos = 0.0
        while True:
            rest = x[int(pos * _RATE) :]
            located = [(_locate8(rest, (lang,), source_type), lang) for lang in languages if lang not in heard]
            hits = [(end, lang) for (score, end), lang in located if score >= THRESHOLD]
            if not hits:
                break
            end, lang = min(hits)  # the one that comes first
            heard.append(lang)
            pos += end
        if len(heard) > len(best[0]):
            best = (tuple(heard), pos)
    return best
