"""PyAV plumbing shared by the audio and video handlers: the import, its error types, sources, temp outputs, and
bounded reads and encodes of audio samples.

PyAV takes ~140 ms to import, so it is imported on first need (:func:`need_av`), not with this module: verifying a
JPEG or a text file never loads it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MissingDependency
from .io import Input, temp_beside

__all__ = [
    "audio_blocks",
    "av_errors",
    "block_samples",
    "layout_name",
    "mux_samples",
    "need_av",
    "read_audio",
    "source",
    "temp_output",
]

# the Python errors PyAV's wrappers let through on damaged or unexpected media
# AssertionError: PyAV's frame conversions assert on frames that do not fit the target format (an odd-height frame
# read as yuv420p), which a damaged stream can produce
_PYTHON_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    OSError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    AssertionError,
)


def need_av(what: str) -> Any:
    """The ``av`` module, imported on first call; MissingDependency naming ``what`` when PyAV is not installed."""
    try:
        import av  # heavy (FFmpeg bindings, ~140 ms): loaded by the first audio or video file only
    except ImportError as exc:
        raise MissingDependency(f"{what} needs PyAV: pip install av") from exc
    return av


@functools.cache
def av_errors() -> tuple[type[BaseException], ...]:
    """What PyAV raises on damaged or unexpected media (FFmpeg errors plus the Python errors its wrappers let through).

    For ``except av_errors():`` — an except clause is evaluated only once something was raised, and the code it
    guards has called :func:`need_av` already.
    """
    try:
        import av  # already loaded by need_av in every caller; absent only when PyAV is not installed
    except ImportError:
        return _PYTHON_ERRORS
    return (av.error.FFmpegError, *_PYTHON_ERRORS)


def source(inp: Input) -> Any:
    """A path when there is one (streamed from disk), else the bytes."""
    if inp.path is not None and inp._data is None:
        return str(inp.path)
    return io.BytesIO(inp.data)


@contextmanager
def temp_output(suffix: str) -> Iterator[str]:
    """A temp file path for a muxer that needs a seekable file (in the system temp folder, named so a later run sweeps
    it if this process is killed); removed afterwards whatever happens."""
    tmp = str(temp_beside(Path(tempfile.gettempdir()) / f"kzlabel{suffix}"))
    try:
        yield tmp
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


# --------------------------------------------------------------------------------------------------- audio samples

ENCODE_BLOCK = 1 << 15  # samples per frame handed to an encoder (it re-chunks them to its own frame size)


def block_samples(rate: int, tiles: int = 10) -> int:
    """Samples per streamed block when marking: whole watermark tiles (10 × 3.072 s by default).

    A block boundary inside a tile would split keyed groups between two blocks, each moving only its share of the
    group to the lattice: the mark weakens or is lost. 30.72 s is a whole number of samples at any rate that is a
    multiple of 25 Hz.
    """
    from .watermark.audio import TILE_SECONDS  # the audio watermark loads scipy.signal (~0.9 s): audio paths only

    return int(round(tiles * TILE_SECONDS * rate))


def layout_name(ctx: Any) -> str:
    """The channel layout of a decoder context, or mono/stereo from the channel count when it has none."""
    return ctx.layout.name if ctx.layout else ("mono" if ctx.channels == 1 else "stereo")


def read_audio(src: Any, seconds: float, *, from_end: bool = False) -> tuple[np.ndarray, int] | None:
    """At most ``seconds`` of the first audio stream as float32 (n, channels) and its rate; None without audio.

    Verification reads a bounded excerpt: the opening seconds, or (``from_end``) the last ones after one seek, so a
    long file is never decoded whole to check its ends.
    """
    av = need_av("audio")
    with av.open(src, metadata_errors="ignore") as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        rate = int(ctx.sample_rate or 0) if ctx is not None else 0  # no context: an unknown or damaged codec header
        if rate <= 0:
            return None
        if from_end:
            total = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
            total = total or (container.duration / 1_000_000 if container.duration else 0.0)
            if total > seconds + 1.0 and stream.time_base:
                container.seek(int((total - seconds - 1.0) / stream.time_base), stream=stream, backward=True)
        keep = int(seconds * rate)
        resampler = av.AudioResampler(format="flt", layout=layout_name(ctx), rate=rate)
        chunks: list[np.ndarray] = []
        total_n = 0
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1, len(out.layout.channels)))
                total_n += len(chunks[-1])
            if from_end:
                while len(chunks) > 1 and total_n - len(chunks[0]) >= keep:  # drop what the last seconds no longer need
                    total_n -= len(chunks.pop(0))
            elif total_n >= keep:
                break
    if not chunks:
        return None
    samples = np.concatenate(chunks)
    return (samples[-keep:] if from_end else samples[:keep]), rate


def audio_blocks(src: Any) -> Iterator[Any]:
    """The first audio stream decoded whole, streamed: yields (rate, channels), then float32 (n, channels) arrays one
    decoded frame each; yields nothing when there is no audio stream."""
    av = need_av("audio")
    with av.open(src, metadata_errors="ignore") as container:
        if not container.streams.audio:
            return
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        rate = int(ctx.sample_rate or 0) if ctx is not None else 0
        if rate <= 0:
            return
        layout = layout_name(ctx)
        channels = len(av.AudioLayout(layout).channels)
        yield rate, channels
        resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                yield out.to_ndarray().reshape(-1, channels)
        for out in resampler.resample(None):
            yield out.to_ndarray().reshape(-1, channels)


def mux_samples(out: Any, stream: Any, samples: np.ndarray, layout: str, rate: int, pts: int) -> int:
    """Encode float32 (n, channels) samples from ``pts`` (in 1/rate) and mux the packets; returns the next pts."""
    av = need_av("audio")
    for start in range(0, len(samples), ENCODE_BLOCK):
        chunk = np.ascontiguousarray(samples[start : start + ENCODE_BLOCK], dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout=layout)
        frame.sample_rate = rate
        frame.time_base = Fraction(1, rate)
        frame.pts = pts
        pts += len(chunk)
        for packet in stream.encode(frame):
            out.mux(packet)
    return pts
