"""Audio transformations: what streaming, podcast, messenger and speech platforms do to an upload.

Each is a recipe (codec, bit rate, sample rate, channels, a time window) run by PyAV: the labelled file is decoded
block by block, resampled with FFmpeg's resampler when the recipe says so, and encoded into a new file, so a long
podcast is never held in memory. :meth:`AudioRecipe.attack` runs the same recipe on an array for
benchmarks/bench_audio.py (written through a temp file and decoded back). The codec rows keep the source's rate and
channels so they show the codec alone; the resample and trim rows write WAV (lossless) so they show the resample or
the cut alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import CorruptInput
from ...media_av import audio_blocks, av_errors, mux_samples, need_av, temp_output
from . import NotApplicable, Original, Transform

__all__ = ["RECIPES", "TRANSFORMS", "AudioRecipe", "decode_file", "decoded"]

# FFmpeg's default layout per channel count (audio_blocks gives the count; the resampler needs a layout to downmix)
LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
# the container each output suffix is written as (given explicitly: temp files end in .kztmp)
CONTAINERS = {".mp3": "mp3", ".m4a": "ipod", ".ogg": "ogg", ".wav": "wav", ".flac": "flac"}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # the only rates libopus encodes at


@dataclass(frozen=True)
class AudioRecipe:
    """An encoder and what happens to the samples before it."""

    codec: str  # a PyAV (FFmpeg) encoder name
    suffix: str  # the output's extension, which picks the container
    bit_rate: int | None = None
    rate: int | None = None  # resample to this rate (None: the source's)
    mono: bool = False  # downmix to one channel
    middle_s: float | None = None  # keep only the middle this many seconds

    def write(self, original: Original, work: Path, name: str) -> Path:
        """Encode ``original`` with this recipe into ``work/NAME.SUFFIX``."""
        need_av("audio")
        total = _duration_samples(original.path) if self.middle_s is not None else None
        blocks = decoded(original.path)
        rate, channels = next(blocks)
        out = work / f"{name}{self.suffix}"
        self.encode(blocks, rate, channels, out, total)
        return out

    def attack(self, samples: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
        """The same recipe on float32 samples (n,) or (n, channels): encoded to a temp file and decoded back."""
        x = np.ascontiguousarray(samples, dtype=np.float32)
        mono_in = x.ndim == 1
        x2 = x.reshape(-1, 1) if mono_in else x
        with temp_output(self.suffix) as tmp:
            self.encode(iter([x2]), rate, x2.shape[1], Path(tmp), len(x2))
            y, out_rate = decode_file(Path(tmp))
        return (y[:, 0] if mono_in and y.shape[1] == 1 else y), out_rate

    def encode(
        self, blocks: Iterable[np.ndarray], rate: int, channels: int, out_path: Path, total: int | None = None
    ) -> None:
        """Encode float32 (n, channels) blocks at ``rate`` into ``out_path``; ``total`` (samples) places the middle
        window."""
        av = need_av("audio")
        in_layout = LAYOUTS.get(channels)
        if in_layout is None:
            raise CorruptInput(f"{channels} audio channels: no standard layout to downmix from")
        out_channels = 1 if self.mono or channels == 1 else 2  # what every platform codec here carries
        out_layout = "mono" if out_channels == 1 else "stereo"
        out_rate = self.rate or rate
        if self.codec == "libopus" and out_rate not in OPUS_RATES:
            out_rate = 48000
        window = self._window(rate, total)
        # Ogg draws a random stream serial number unless bitexact is set: the same input would give other bytes
        options = {"fflags": "+bitexact"} if self.suffix == ".ogg" else {}
        with av.open(str(out_path), "w", format=CONTAINERS[self.suffix], options=options) as out:
            stream = out.add_stream(self.codec, rate=out_rate, layout=out_layout)
            if self.bit_rate:
                stream.bit_rate = self.bit_rate
            resampler = av.AudioResampler(format="flt", layout=out_layout, rate=out_rate)
            pts = 0
            for block in _windowed(blocks, window):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(block, np.float32).reshape(1, -1), format="flt", layout=in_layout
                )
                frame.sample_rate = rate
                for f in resampler.resample(frame):
                    pts = mux_samples(out, stream, f.to_ndarray().reshape(-1, out_channels), out_layout, out_rate, pts)
            for f in resampler.resample(None):
                pts = mux_samples(out, stream, f.to_ndarray().reshape(-1, out_channels), out_layout, out_rate, pts)
            for packet in stream.encode(None):
                out.mux(packet)

    def _window(self, rate: int, total: int | None) -> tuple[int, int] | None:
        """(first sample, samples kept) of the middle window, or None for the whole file."""
        if self.middle_s is None:
            return None
        keep = int(round(self.middle_s * rate))
        if total is None or total <= keep:
            length = "unknown" if total is None else f"{total / rate:.1f} s"
            raise NotApplicable(f"the audio ({length}) is not longer than {self.middle_s:g} s")
        return (total - keep) // 2, keep


def _windowed(blocks: Iterable[np.ndarray], window: tuple[int, int] | None) -> Iterator[np.ndarray]:
    if window is None:
        yield from blocks
        return
    start, keep = window
    pos, end = 0, start + keep
    for block in blocks:
        lo, hi = max(start - pos, 0), min(end - pos, len(block))
        if lo < hi:
            yield block[lo:hi]
        pos += len(block)
        if pos >= end:
            return


def decoded(path: Path) -> Iterator[Any]:
    """:func:`media_av.audio_blocks` of a file, its decoding errors as CorruptInput (the input's fault); an encoder's
    error downstream is not caught here, so it stays what it is: a kzlabel bug."""
    try:
        blocks = audio_blocks(str(path))
        head = next(blocks, None)
        if head is None:
            raise CorruptInput("no audio stream", source=str(path))
        yield head
        yield from blocks
    except av_errors() as exc:
        raise CorruptInput(f"the audio could not be decoded: {exc}", source=str(path)) from None


def _duration_samples(path: Path) -> int | None:
    """The length of the first audio stream in samples: from the container when it says, else counted."""
    av = need_av("audio")
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.audio[0] if container.streams.audio else None
            rate = int(stream.codec_context.sample_rate or 0) if stream is not None else 0
            if stream is not None and stream.duration and stream.time_base and rate:
                return int(stream.duration * stream.time_base * rate)
            if container.duration and rate:
                return int(container.duration / 1_000_000 * rate)
    except av_errors() as exc:
        raise CorruptInput(f"the audio could not be read: {exc}", source=str(path)) from None
    blocks = decoded(path)
    next(blocks)
    return sum(len(b) for b in blocks)


def decode_file(path: Path) -> tuple[np.ndarray, int]:
    """A whole (short) audio file as float32 (n, channels) and its rate: the benchmarks' read-back."""
    blocks = decoded(path)
    rate, channels = next(blocks)
    parts = list(blocks)
    return (np.concatenate(parts) if parts else np.zeros((0, channels), np.float32)), rate


# report order; module-level so the benchmarks run the very same recipes (RECIPES[name][1].attack(x, rate))
RECIPES: dict[str, tuple[str, AudioRecipe]] = {
    "mp3-128k": ("MP3 128 kbit/s", AudioRecipe("libmp3lame", ".mp3", 128_000)),
    "aac-96k": ("AAC 96 kbit/s (M4A)", AudioRecipe("aac", ".m4a", 96_000)),
    "opus-32k": ("Opus 32 kbit/s (Ogg)", AudioRecipe("libopus", ".ogg", 32_000)),
    "16k-mono": ("resample to 16 kHz mono (WAV)", AudioRecipe("pcm_s16le", ".wav", rate=16000, mono=True)),
    "middle-10s": ("the middle 10 s only (WAV)", AudioRecipe("pcm_s16le", ".wav", middle_s=10.0)),
}


def _transform(name: str, title: str, recipe: AudioRecipe) -> Transform:
    return Transform(name, title, lambda original, work: recipe.write(original, work, name))


TRANSFORMS: list[Transform] = [_transform(name, title, recipe) for name, (title, recipe) in RECIPES.items()]
