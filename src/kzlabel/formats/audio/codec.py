"""PyAV plumbing of the audio handlers: probing, block-wise decoding and encoding, bounded excerpts for verify."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import CorruptInput, KzlabelError, LimitExceeded
from ...io import Input, Limits
from ...layers import audible
from ...media_av import av_errors, block_samples, layout_name, mux_samples, need_av, read_audio, source
from ...media_rate import StreamRate, audio_bit_rate, audio_options, describe, measure

DETECT_SECONDS = 35.0  # audio decoded for verification (tone + spoken notice, ~11 s, plus ~20 s for the watermark)
TAIL_SECONDS = 6.0  # audio decoded at the end when the label records a tone there (the detector looks at 4 s)
# Blocks hold a whole number of watermark tiles: a tile's keyed groups are embedded as a whole, whereas a block edge
# inside a tile splits groups and each half lands on the lattice separately (measured: 10-s excerpts across a 32-s
# edge, MP3 64k, 19/24 found; across a 30.72-s edge 24/24, as without blocks).
BLOCK_TILES = 10


@dataclass
class AudioInfo:
    """What the encoder needs to keep of the source's first audio stream."""

    rate: int
    layout: str
    channels: int
    codec: str
    bit_rate: int | None
    sample_fmt: str
    metadata: dict[str, str]
    measured: StreamRate | None = None  # the stream's own bytes over its duration (kzlabel.media_rate.measure)


@dataclass
class AudioDoc:
    """A file being marked: its first block decoded, the rest still to stream (consumed once, by ``encode``)."""

    inp: Input
    info: AudioInfo
    head: np.ndarray  # the first content block, float32 (n, channels)
    rest: Iterator[np.ndarray]  # the following content blocks, decoded on demand
    block: int  # samples per block
    loudness: audible.Loudness = field(default_factory=audible.Loudness)
    tone_at: str | None = None
    tone_level: float = 0.0
    speech: np.ndarray | None = None  # the spoken notice, inserted at the start (after a start tone)
    payload: bytes | None = None
    key: bytes | None = None
    first: np.ndarray | None = None  # ``head`` watermarked (set by embed_watermark)
    label_fields: dict[str, Any] = field(default_factory=dict)
    encoding: dict[str, str] = field(default_factory=dict)  # the mark report's account of the re-encode
    limits: Limits = field(default_factory=Limits)  # the mark's limits, for reading its own output back

    @property
    def rate(self) -> int:
        return self.info.rate


def stream_blocks(inp: Input, limits: Limits, fmt_id: str, block_s: float | None = None) -> Iterator[Any]:
    """Yield the stream's :class:`AudioInfo`, then its samples as float32 (n, channels) blocks of
    :func:`block_samples` (``block_s`` seconds when given); the last block may be shorter.

    Memory holds one block plus one decoded frame. A damaged stream raises :class:`CorruptInput` at the point it
    is reached, a stream longer than ``limits.max_duration_s`` raises :class:`LimitExceeded` (before decoding when
    the container states its duration).
    """
    av = need_av("audio")
    try:
        with av.open(source(inp), "r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise CorruptInput("no audio stream", source=inp.source, format=fmt_id)
            stream = container.streams.audio[0]
            ctx = stream.codec_context
            if ctx is None:  # an unknown or damaged codec header
                raise CorruptInput("the audio stream has no codec parameters", source=inp.source, format=fmt_id)
            rate = int(ctx.sample_rate or stream.rate or 0)
            if rate <= 0:
                raise CorruptInput("audio stream has no sample rate", source=inp.source, format=fmt_id)
            duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
            if not duration and container.duration:
                duration = container.duration / 1_000_000
            if duration > limits.max_duration_s:
                raise LimitExceeded(
                    f"{duration:.0f} s of audio is over the {limits.max_duration_s:.0f} s limit",
                    source=inp.source,
                    format=fmt_id,
                )
            layout = layout_name(ctx)
            channels = len(av.AudioLayout(layout).channels)
            yield AudioInfo(
                rate=rate,
                layout=layout,
                channels=channels,
                codec=ctx.name,
                bit_rate=ctx.bit_rate or container.bit_rate or None,
                sample_fmt=ctx.format.name if ctx.format else "s16",
                metadata={str(k): str(v) for k, v in {**stream.metadata, **container.metadata}.items()},
            )
            n = block_samples(rate, BLOCK_TILES) if block_s is None else max(1, int(block_s * rate))
            cap = int(limits.max_duration_s * rate)
            resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)

            def frames() -> Iterator[np.ndarray]:
                total = 0
                for frame in container.decode(stream):
                    for out in resampler.resample(frame):
                        a = out.to_ndarray().reshape(-1, channels)
                        total += len(a)
                        if total > cap:
                            raise LimitExceeded(
                                f"audio longer than {limits.max_duration_s:.0f} s", source=inp.source, format=fmt_id
                            )
                        yield a
                for out in resampler.resample(None):
                    yield out.to_ndarray().reshape(-1, channels)

            yield from rechunk(frames(), n)
    except KzlabelError:
        raise
    except av_errors() as exc:
        raise CorruptInput(f"unreadable audio: {_why(exc)}", source=inp.source, format=fmt_id) from None


def _why(exc: BaseException) -> str:
    """FFmpeg's own words for a failure, without the errno and the temp/stream name PyAV appends."""
    return str(getattr(exc, "strerror", None) or exc or type(exc).__name__)


def rechunk(parts: Iterable[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """Arrays of exactly ``n`` rows (the last one shorter) from arrays of any length; holds at most ``n`` rows
    plus one part."""
    buf: list[np.ndarray] = []
    have = 0
    for part in parts:
        if not len(part):
            continue
        buf.append(part)
        have += len(part)
        while have >= n:
            whole = np.concatenate(buf) if len(buf) > 1 else buf[0]
            rest = whole[n:]
            yield whole[:n]
            buf, have = ([rest] if len(rest) else []), len(rest)
    if have:
        yield np.concatenate(buf) if len(buf) > 1 else buf[0]


def open_stream(inp: Input, limits: Limits, fmt_id: str) -> AudioDoc:
    """Decode the first block (a file without decodable samples fails here, before anything is written)."""
    blocks = stream_blocks(inp, limits, fmt_id)
    info = next(blocks)
    head = next(blocks, None)
    if head is None:
        raise CorruptInput("the audio stream has no decodable samples", source=inp.source, format=fmt_id)
    try:
        info.measured = measure(source(inp)).get("audio")
    except av_errors() as exc:
        raise CorruptInput(f"unreadable audio: {_why(exc)}", source=inp.source, format=fmt_id) from None
    doc = AudioDoc(
        inp=inp, info=info, head=head, rest=blocks, block=block_samples(info.rate, BLOCK_TILES), limits=limits
    )
    doc.loudness.add(head)
    return doc


def output_blocks(doc: AudioDoc) -> Iterator[np.ndarray]:
    """Start tone, the content blocks (each watermarked at its offset, so the blocks continue one grid), end tone.

    The tones are inserted unmarked: the watermark's per-cell gains would ripple the tone's envelope and blur the
    rhythm the detector matches (measured: correlation 0.88 → 0.77 on one music sample, under the threshold after
    AAC 48k), and a few seconds of tone carry little of the mark anyway.
    """
    channels = doc.info.channels
    if doc.tone_at in ("start", "both"):
        yield audible.tone(doc.rate, channels, doc.tone_level)
    if doc.speech is not None:
        yield doc.speech
    yield doc.head if doc.first is None else doc.first
    done = len(doc.head)
    for b in doc.rest:
        doc.loudness.add(b)
        if doc.payload is not None and len(b) >= _MIN_MARK_BLOCK * doc.rate:
            b = watermark_audio().embed_audio(b, doc.rate, doc.payload, key=doc.key, offset_s=done / doc.rate)
        done += len(b)
        yield b
    if doc.tone_at in ("end", "both"):
        yield audible.tone(doc.rate, channels, doc.loudness.level())  # level of the whole content, known by now


_MIN_MARK_BLOCK = 0.064  # a last block shorter than one watermark slot carries nothing


# encoder and container per format id; WAV/FLAC keep the source's sample format
_PCM = {
    "s16": "pcm_s16le",
    "s16p": "pcm_s16le",
    "s32": "pcm_s24le",
    "s32p": "pcm_s24le",
    "flt": "pcm_f32le",
    "fltp": "pcm_f32le",
    "dbl": "pcm_f32le",
    "u8": "pcm_s16le",
}


def _encoder(info: AudioInfo, fmt_id: str) -> tuple[str, str, dict[str, Any]]:
    """(container format, codec, stream settings) that keep what can be kept of the source: WAV and FLAC stay
    lossless in the source's sample format, lossy formats get the source's measured rate (kzlabel.media_rate)."""
    if fmt_id == "wav":
        codec = {"pcm_s24le": "pcm_s24le", "pcm_f32le": "pcm_f32le", "pcm_s32le": "pcm_s24le"}.get(
            info.codec, _PCM.get(info.sample_fmt, "pcm_s16le")
        )
        return "wav", codec, {}
    if fmt_id == "flac":
        return "flac", "flac", {"format": "s32" if info.sample_fmt.startswith("s32") else "s16"}
    container, codec, default = {
        "mp3": ("mp3", "libmp3lame", 192_000),
        "m4a": ("ipod", "aac", 192_000),
    }.get(fmt_id, ("ogg", "libopus", 128_000) if info.codec == "opus" else ("ogg", "vorbis", 160_000))
    return container, codec, {"bit_rate": audio_bit_rate(codec, info.measured, info.channels, info.bit_rate or default)}


def encoding_line(info: AudioInfo, path: str | os.PathLike) -> str:
    """The mark report's line for the written file: its measured rate beside the source's (lossless: its codec)."""
    written = measure(str(path)).get("audio")
    line = describe("audio", written, info.measured)
    return (
        f"lossless, as the source: {line}" if info.codec in ("flac", "alac") or info.codec.startswith("pcm_") else line
    )


def encode_blocks(info: AudioInfo, blocks: Iterable[np.ndarray], fmt_id: str, dest: str | os.PathLike) -> None:
    """Encode float32 (n, channels) blocks in the source's format, block by block into the file ``dest`` (memory
    holds one block)."""
    av = need_av("audio")
    container_fmt, codec, settings = _encoder(info, fmt_id)
    try:
        # Ogg draws a random stream serial number unless bitexact is set: the same input marked twice (or as a path,
        # bytes and a file object) gave different bytes
        options = {"fflags": "+bitexact"} if container_fmt == "ogg" else {}
        with av.open(str(dest), "w", format=container_fmt, options=options) as out:
            rate = info.rate
            if codec == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
                rate = 48000
            stream = out.add_stream(codec, rate=rate, layout=info.layout)
            stream.codec_context.options = audio_options(codec)
            if "format" in settings:
                stream.format = settings["format"]
            if "bit_rate" in settings:
                stream.bit_rate = int(settings["bit_rate"])
            for k, v in info.metadata.items():
                if k.lower() not in (
                    "encoder",
                    "major_brand",
                    "minor_version",
                    "compatible_brands",
                    "language",
                    "handler_name",
                    "vendor_id",
                ):
                    out.metadata[k] = v
                    if container_fmt == "ogg":  # Ogg keeps tags in the stream's comment header
                        stream.metadata[k] = v
            resampler = av.AudioResampler(format="flt", layout=info.layout, rate=rate) if rate != info.rate else None
            pts = 0
            for block in blocks:
                if resampler is None:
                    pts = mux_samples(out, stream, block, info.layout, rate, pts)
                    continue
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(block, np.float32).reshape(1, -1), format="flt", layout=info.layout
                )
                frame.sample_rate = info.rate
                for f in resampler.resample(frame):
                    pts = mux_samples(out, stream, f.to_ndarray().reshape(-1, info.channels), info.layout, rate, pts)
            if resampler is not None:
                for f in resampler.resample(None):
                    pts = mux_samples(out, stream, f.to_ndarray().reshape(-1, info.channels), info.layout, rate, pts)
            for packet in stream.encode(None):
                out.mux(packet)
    except KzlabelError:
        raise
    except av_errors() as exc:
        raise CorruptInput(f"could not encode {fmt_id}: {_why(exc)}", format=fmt_id) from None


def read_excerpt(inp: Input, fmt_id: str, seconds: float, *, from_end: bool = False) -> tuple[np.ndarray, int]:
    """The opening (or closing) ``seconds`` of the audio as float32 (n, channels) and the rate; never the whole file."""
    need_av("audio")
    try:
        got = read_audio(source(inp), seconds, from_end=from_end)
    except av_errors() as exc:
        raise CorruptInput(f"unreadable audio: {_why(exc)}", source=inp.source, format=fmt_id) from None
    if got is None or not len(got[0]):
        raise CorruptInput("the audio stream has no decodable samples", source=inp.source, format=fmt_id)
    return got


def watermark_audio() -> Any:
    """kzlabel.watermark.audio, imported on first need: it loads scipy.signal (~0.9 s), which image and text runs never
    need."""
    from ...watermark import audio as wm

    return wm
