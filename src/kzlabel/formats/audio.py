"""Audio: WAV (PCM 16/24-bit, float), MP3, FLAC, Ogg (Opus; Vorbis), M4A/AAC.

Samples are decoded and re-encoded with PyAV (FFmpeg's codecs, already a dependency for video: one codec stack for
every lossy and lossless format, no libsndfile gap for MP3/AAC/Opus); sample rate, channel layout and bit depth are
kept, lossy formats are re-encoded at the source's bit rate. Tags are read and written with mutagen, in each
container's own slot, so exiftool and ffprobe read them back: ID3v2 ``TXXX`` frames (MP3, and the ``id3`` chunk of
WAV), Vorbis comments (FLAC, Ogg), iTunes freeform atoms ``----:com.apple.iTunes:…`` (M4A). The tag names are those
of STANDARDS.md: ``AIGC`` (GB 45438 JSON), ``kzlabel`` (the signed label), ``DigitalSourceType`` (IPTC URI),
``AISystemUsed``, and the training tags of :mod:`kzlabel.rights.vocab`.

Marking streams: samples are decoded in blocks of :data:`BLOCK_TILES` watermark tiles (30.72 s), toned,
watermarked with the block's offset on the watermark's grid and encoded block by block to a temp file, so memory holds
about two blocks of float32 whatever the length (docs/audio.md has the figures). The encoded
file stays on disk, tags are edited there (mutagen in place; WAV chunks by a streamed copy) and the pipeline signs
it file to file. Verification decodes only the opening :data:`_DETECT_SECONDS` and, when the label records a tone at
the end, the last seconds after one seek; tags are read from the file without loading it.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import CapacityError, CorruptInput, KzlabelError, LimitExceeded
from ..label import DEFAULT_LANGUAGES, IPTC_COMPOSITE, IPTC_TRAINED, Label, Training, TrainingSignal
from ..layers import audible, spoken
from ..layers.metadata import label_values, training_values
from ..io import Input, Limits, temp_beside
from ..rights.vocab import TrainingPolicy, container_tags, signals_from_tags
from . import register
from .base import Findings, Handler, LabelMatch, MarkOptions
from ..media_av import av_errors, block_samples, layout_name, mux_samples, need_av, read_audio, source

TAG_AIGC = "AIGC"
TAG_LABEL = "kzlabel"
TAG_SOURCE = "DigitalSourceType"
TAG_SYSTEM = "AISystemUsed"
_ITUNES = "----:com.apple.iTunes:"
_DETECT_SECONDS = 35.0  # audio decoded for verification (tone + spoken notice, ~11 s, plus ~20 s for the watermark)
_TAIL_SECONDS = 6.0  # audio decoded at the end when the label records a tone there (the detector looks at 4 s)
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
            rate = int(ctx.sample_rate or stream.rate or 0)
            if rate <= 0:
                raise CorruptInput("audio stream has no sample rate", source=inp.source, format=fmt_id)
            duration = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0
            if not duration and container.duration:
                duration = container.duration / 1_000_000
            if duration > limits.max_duration_s:
                raise LimitExceeded(f"{duration:.0f} s of audio is over the {limits.max_duration_s:.0f} s limit", source=inp.source, format=fmt_id)
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
                            raise LimitExceeded(f"audio longer than {limits.max_duration_s:.0f} s", source=inp.source, format=fmt_id)
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
    doc = AudioDoc(inp=inp, info=info, head=head, rest=blocks, block=block_samples(info.rate, BLOCK_TILES))
    doc.loudness.add(head)
    return doc


def _output_blocks(doc: AudioDoc) -> Iterator[np.ndarray]:
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
            b = _watermark_module().embed_audio(b, doc.rate, doc.payload, key=doc.key, offset_s=done / doc.rate)
        done += len(b)
        yield b
    if doc.tone_at in ("end", "both"):
        yield audible.tone(doc.rate, channels, doc.loudness.level())  # level of the whole content, known by now


_MIN_MARK_BLOCK = 0.064  # a last block shorter than one watermark slot carries nothing


# encoder and container per format id; WAV/FLAC keep the source's sample format
_PCM = {"s16": "pcm_s16le", "s16p": "pcm_s16le", "s32": "pcm_s24le", "s32p": "pcm_s24le", "flt": "pcm_f32le", "fltp": "pcm_f32le", "dbl": "pcm_f32le", "u8": "pcm_s16le"}


def _encoder(info: AudioInfo, fmt_id: str) -> tuple[str, str, dict[str, Any]]:
    """(container format, codec, stream settings) that keep what can be kept of the source."""
    if fmt_id == "wav":
        codec = {"pcm_s24le": "pcm_s24le", "pcm_f32le": "pcm_f32le", "pcm_s32le": "pcm_s24le"}.get(info.codec, _PCM.get(info.sample_fmt, "pcm_s16le"))
        return "wav", codec, {}
    if fmt_id == "flac":
        return "flac", "flac", {"format": "s32" if info.sample_fmt.startswith("s32") else "s16"}
    if fmt_id == "mp3":
        return "mp3", "libmp3lame", {"bit_rate": info.bit_rate or 192_000}
    if fmt_id == "m4a":
        return "ipod", "aac", {"bit_rate": info.bit_rate or 192_000}
    if info.codec == "opus":
        return "ogg", "libopus", {"bit_rate": info.bit_rate or 128_000}
    return "ogg", "vorbis", {"bit_rate": info.bit_rate or 160_000}


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
            if codec == "vorbis":
                stream.codec_context.options = {"strict": "experimental"}
            if "format" in settings:
                stream.format = settings["format"]
            if "bit_rate" in settings:
                stream.bit_rate = int(settings["bit_rate"])
            for k, v in info.metadata.items():
                if k.lower() not in ("encoder", "major_brand", "minor_version", "compatible_brands", "language", "handler_name", "vendor_id"):
                    out.metadata[k] = v
                    if container_fmt == "ogg":  # Ogg keeps tags in the stream's comment header
                        stream.metadata[k] = v
            resampler = av.AudioResampler(format="flt", layout=info.layout, rate=rate) if rate != info.rate else None
            pts = 0
            for block in blocks:
                if resampler is None:
                    pts = mux_samples(out, stream, block, info.layout, rate, pts)
                    continue
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, np.float32).reshape(1, -1), format="flt", layout=info.layout)
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


# ------------------------------------------------------------------------------------------------------------ tags


def _mutagen_errors() -> tuple[type[BaseException], ...]:
    """mutagen's own error type, plus what its parsers let through on truncated or malformed tag structures."""
    from mutagen import MutagenError  # mutagen loads with the first audio file, not with every kzlabel command
    return (MutagenError, struct.error, EOFError, ValueError, IndexError, OSError)


def _mutagen_file(fh: IO[bytes]) -> Any:
    """mutagen's view of the file ``fh`` (rewound before and after): it reads the tag areas, not the samples."""
    import mutagen  # loaded with the first audio file, not with every kzlabel command
    fh.seek(0)
    try:
        f = mutagen.File(fh)
    except _mutagen_errors() as exc:
        raise CorruptInput(f"unreadable audio tags: {exc}") from exc
    if f is None:
        raise CorruptInput("mutagen does not recognise this audio container")
    fh.seek(0)
    return f


def _file(content: bytes | IO[bytes]) -> IO[bytes]:
    return io.BytesIO(content) if isinstance(content, (bytes, bytearray)) else content


def read_tags(content: bytes | IO[bytes]) -> dict[str, str]:
    """Every text tag as name → value (ID3 TXXX by description, Vorbis comments, iTunes freeform by name)."""
    try:
        f = _mutagen_file(_file(content))
    except CorruptInput:
        return {}
    tags = f.tags
    out: dict[str, str] = {}
    if tags is None:
        return out
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags

    if isinstance(tags, ID3):
        for frame in tags.getall("TXXX"):
            out[frame.desc] = str(frame.text[0]) if frame.text else ""
    elif isinstance(tags, MP4Tags):
        for key, values in tags.items():
            if key.startswith(_ITUNES) and values:
                v = values[0]
                out[key[len(_ITUNES) :]] = bytes(v).decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v)
    else:  # Vorbis comments
        for key, values in tags.items():
            if values:
                out[key] = str(values[0])
    return out


def set_tags(fh: IO[bytes], values: Mapping[str, str]) -> None:
    """Set ``values`` as text tags in the container's own tag slot of the file ``fh`` (opened ``r+b``, or a BytesIO),
    existing tags kept. mutagen edits in place, moving the samples in bounded reads when the tag area grows."""
    from mutagen.id3 import ID3, TXXX
    from mutagen.mp4 import MP4, MP4FreeForm

    f = _mutagen_file(fh)
    if f.tags is None:
        f.add_tags()
    tags = f.tags
    if isinstance(tags, ID3):
        for k, v in values.items():
            tags.delall(f"TXXX:{k}")
            tags.add(TXXX(encoding=3, desc=k, text=[v]))
    elif isinstance(f, MP4):
        for k, v in values.items():
            tags[_ITUNES + k] = [MP4FreeForm(v.encode("utf-8"))]
    else:
        for k, v in values.items():
            tags[k] = [v]
    try:
        f.save(fh)
    except _mutagen_errors() as exc:
        raise CorruptInput(f"could not write audio tags: {exc}") from exc


def write_tags(data: bytes, values: Mapping[str, str]) -> bytes:
    """``data`` with ``values`` set as text tags (:func:`set_tags` on a copy in memory)."""
    bio = io.BytesIO(data)
    set_tags(bio, values)
    return bio.getvalue()


_RIFF_META_MAX = 64 << 20  # a metadata chunk read into memory (LIST/INFO, XMP); the samples are only ever copied
_COPY = 1 << 20


def _riff_index(fh: IO[bytes]) -> list[tuple[bytes, int, int]]:
    """(id, offset of the body, body size) of every chunk of a RIFF/WAVE file, from the chunk headers alone."""
    end = fh.seek(0, os.SEEK_END)
    fh.seek(0)
    head = fh.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise CorruptInput("not a RIFF/WAVE file")
    out, i = [], 12
    while i + 8 <= end:
        fh.seek(i)
        h = fh.read(8)
        cid, n = h[:4], int.from_bytes(h[4:8], "little")
        if i + 8 + n > end:
            raise CorruptInput(f"truncated RIFF chunk {cid!r}")
        out.append((cid, i + 8, n))
        i += 8 + n + (n & 1)
    return out


def _body(fh: IO[bytes], offset: int, size: int) -> bytes:
    if size > _RIFF_META_MAX:
        raise CorruptInput(f"RIFF metadata chunk of {size} bytes (over {_RIFF_META_MAX})")
    fh.seek(offset)
    return fh.read(size)


def rewrite_wav_chunks(src: IO[bytes], out: IO[bytes], values: Mapping[str, str], xmp: Mapping[tuple[str, str], str]) -> None:
    """Copy the RIFF/WAVE file ``src`` to ``out`` with the WAV carriers exiftool and ffprobe read: XMP in a ``_PMX``
    chunk (merged with any existing packet), the ``AIGC`` JSON as its own RIFF chunk (GB 45438 practice) and every
    value as a ``LIST/INFO`` entry (ffprobe). The sample data is copied in 1 MiB reads, never held."""
    from ..layers.metadata import merge_xmp

    chunks = _riff_index(src)
    old_xmp = next((_body(src, off, n) for cid, off, n in chunks if cid == b"_PMX"), None)
    packet = merge_xmp(old_xmp, xmp, tuple(xmp))
    info = b""
    for k, v in values.items():
        raw = v.encode("utf-8") + b"\0"
        info += k.encode("ascii")[:4].ljust(4, b" ") + len(raw).to_bytes(4, "little") + raw + (b"\0" if len(raw) & 1 else b"")
    mine = {k.encode("ascii")[:4].ljust(4, b" ") for k in values}

    def put(cid: bytes, body: bytes | None, offset: int = 0, size: int = 0) -> None:
        size = len(body) if body is not None else size
        out.write(cid + size.to_bytes(4, "little"))
        if body is not None:
            out.write(body)
        else:
            src.seek(offset)
            left = size
            while left:
                piece = src.read(min(_COPY, left))
                if not piece:
                    raise CorruptInput(f"truncated RIFF chunk {cid!r}")
                out.write(piece)
                left -= len(piece)
        if size & 1:
            out.write(b"\0")

    out.write(b"RIFF\0\0\0\0WAVE")
    merged_info = False
    for cid, off, n in chunks:
        if cid in (b"_PMX", b"AIGC"):
            continue
        if cid == b"LIST" and not merged_info and _body(src, off, min(n, 4)) == b"INFO":
            c = _body(src, off, n)
            kept, i = b"", 4
            while i + 8 <= len(c):
                sid, m = c[i : i + 4], int.from_bytes(c[i + 4 : i + 8], "little")
                if sid not in mine:
                    kept += c[i : i + 8 + m + (m & 1)]
                i += 8 + m + (m & 1)
            put(cid, b"INFO" + kept + info)
            merged_info = True
            continue
        put(cid, None, off, n)
    if not merged_info:
        put(b"LIST", b"INFO" + info)
    if TAG_AIGC in values:
        put(b"AIGC", values[TAG_AIGC].encode("utf-8"))
    put(b"_PMX", packet)
    total = out.tell()
    out.seek(4)
    out.write((total - 8).to_bytes(4, "little"))
    out.seek(total)


def write_wav_chunks(data: bytes, values: Mapping[str, str], xmp: Mapping[tuple[str, str], str]) -> bytes:
    """:func:`rewrite_wav_chunks` in memory."""
    out = io.BytesIO()
    rewrite_wav_chunks(io.BytesIO(data), out, values, xmp)
    return out.getvalue()


def read_wav_values(content: bytes | IO[bytes]) -> dict[str, str]:
    """The XMP and INFO values :func:`rewrite_wav_chunks` wrote (for a file without ID3 tags); reads the chunk
    headers and the XMP packet only."""
    from ..layers.metadata import xmp_values

    fh = _file(content)
    try:
        chunks = _riff_index(fh)
        packets = [_body(fh, off, n) for cid, off, n in chunks if cid == b"_PMX"]
    except CorruptInput:
        return {}
    out: dict[str, str] = {}
    for packet in packets:
        vals = xmp_values(packet)
        for src, dst in (
            ("kzlabel:Label", TAG_LABEL),
            ("TC260:AIGC", TAG_AIGC),
            ("Iptc4xmpExt:DigitalSourceType", TAG_SOURCE),
            ("plus:DataMining", "DataMining"),
            ("tdm:reservation", "tdm-reservation"),
            ("tdm:policy", "tdm-policy"),
        ):
            if src in vals:
                out.setdefault(dst, vals[src])
    return out


# --------------------------------------------------------------------------------------------------------- handler


def _watermark_module() -> Any:
    from ..watermark import audio as wm  # imported on first need: it loads scipy.signal (~0.9 s)

    return wm


class _AudioHandler(Handler[AudioDoc]):
    layers = frozenset({"visible", "watermark", "metadata", "c2pa"})

    def load(self, inp: Input, limits: Limits) -> AudioDoc:
        return open_stream(inp, limits, self.id)

    def draw_warning(self, doc: AudioDoc, label: Label, opts: MarkOptions) -> None:
        """Queue the tone and/or the spoken notice; they are inserted as the blocks stream (at the start their level
        follows the first block, at the end the whole content)."""
        level = doc.loudness.level()
        record: dict[str, Any] = {"kind": {"both": "tone+speech"}.get(opts.audio_notice, opts.audio_notice)}
        if opts.audio_notice in ("tone", "both"):
            doc.tone_at = opts.position if opts.position in ("start", "end", "both") else "start"
            doc.tone_level = level
            record |= {"pattern": "·−··", "freq": audible.FREQ, "at": doc.tone_at}
        if opts.audio_notice in ("speech", "both"):
            langs = spoken.available(label.languages, label.source_type)
            doc.speech = spoken.clip(langs, label.source_type, doc.rate, doc.info.channels, level)
            record["speech"] = {"langs": list(langs), "at": "start", "seconds": round(len(doc.speech) / doc.rate, 3)}
        doc.label_fields["warning"] = record

    def embed_watermark(self, doc: AudioDoc, payload: bytes, key: bytes | None) -> None:
        """Mark the first block now, so content too short or too narrow for the mark is reported here
        (CapacityError: the pipeline then skips the layer); the other blocks are marked as they stream."""
        min_rate = _watermark_module().MIN_RELIABLE_RATE
        if doc.rate < min_rate:
            raise CapacityError(
                f"{doc.rate} Hz audio is too narrow for the watermark (its bands reach 5.7 kHz; needs ≥ {min_rate} Hz)",
                source=doc.inp.source,
            )
        doc.first = _watermark_module().embed_audio(doc.head, doc.rate, payload, key=key)
        doc.payload, doc.key = payload, key

    def encode(self, doc: AudioDoc, opts: MarkOptions, out: Path) -> None:
        encode_blocks(doc.info, _output_blocks(doc), self.id, out)

    def bind(self, doc: AudioDoc, out: Path) -> Mapping[str, Any]:
        return dict(doc.label_fields)

    def write_metadata(self, out: Path, label: Label, token: str) -> None:
        self._write_file(out, *self._label_tags(label, token))

    def _label_tags(self, label: Label, token: str) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
        """(container tags, XMP values) that carry the label."""
        tags = {TAG_AIGC: label.aigc_json(token), TAG_LABEL: token, TAG_SOURCE: label.source_type}
        if label.system:
            tags[TAG_SYSTEM] = label.system + (f" {label.system_version}" if label.system_version else "")
        xmp = label_values(label, token)
        if label.training == Training.NOT_ALLOWED:
            policy = TrainingPolicy.from_lists(deny=["all"])
            tags |= container_tags(policy)
            xmp |= training_values(policy)
        return tags, xmp

    def _write(self, data: bytes, tags: Mapping[str, str], xmp: Mapping[tuple[str, str], str]) -> bytes:
        return write_tags(data, tags)

    def _write_file(self, path: Path, tags: Mapping[str, str], xmp: Mapping[tuple[str, str], str]) -> None:
        with open(path, "r+b") as fh:
            set_tags(fh, tags)

    def _read(self, content: bytes | IO[bytes]) -> dict[str, str]:
        return read_tags(content)

    def _read_inp(self, inp: Input) -> dict[str, str]:
        with inp.open() as fh:  # the tag areas only, not the whole file
            return self._read(fh)

    def inspect(self, inp: Input, limits: Limits, key: bytes | None) -> Findings:
        samples, rate = read_excerpt(inp, self.id, _DETECT_SECONDS)
        tags = {k.lower(): v for k, v in self._read_inp(inp).items()}
        tokens = [(f"{self.name} tag kzlabel", tags[TAG_LABEL.lower()])] if TAG_LABEL.lower() in tags else []
        fields = {k: tags[k.lower()] for k in (TAG_AIGC, TAG_SOURCE) if k.lower() in tags}
        wm = _watermark_module()
        start = audible.detect(samples, rate, "start") >= audible.THRESHOLD
        # the notices carry no mark: when the mark is not found from the start, retry on the content after them
        heard, speech_end = spoken.find(samples, rate, DEFAULT_LANGUAGES, (IPTC_TRAINED, IPTC_COMPOSITE))
        speech_found = bool(heard)
        skips = [int(audible.tone_seconds() * rate)] + ([int(speech_end * rate)] if speech_found else [])
        mark = wm.detect_audio(samples, rate, key=key)
        for skip in skips:
            if mark.found or len(samples) <= skip + wm.MIN_SECONDS * rate:
                break
            mark = wm.detect_audio(samples[skip:], rate, key=key)
        whole = len(samples) < int(_DETECT_SECONDS * rate)  # the excerpt is the whole file: its end is here too
        tail = samples[-int(_TAIL_SECONDS * rate) :] if whole else None
        return Findings(tokens=tokens, fields=fields, watermark=mark, warning_found=start or speech_found,
                        state=(inp, start, samples, tail, rate))

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        """The notices the label records, each where it says: start/end tone, spoken notice in its languages."""
        inp, start, head, tail, rate = findings.state
        warning = label.warning or {}
        checks: list[bool] = []
        if "tone" in warning.get("kind", "tone"):
            where = warning.get("at", "start")
            if where in ("start", "both"):
                checks.append(start)
            if where in ("end", "both"):
                if tail is None:  # a long file: decode its last seconds only
                    tail, tail_rate = read_excerpt(inp, self.id, _TAIL_SECONDS, from_end=True)
                else:
                    tail_rate = rate
                checks.append(audible.detect(tail, tail_rate, "end") >= audible.THRESHOLD)
        if isinstance(warning.get("speech"), dict):
            langs = tuple(str(x) for x in warning["speech"].get("langs", ()))
            checks.append(spoken.detect(head, rate, langs, label.source_type) >= spoken.THRESHOLD)
        return LabelMatch(content=None, warning=bool(checks) and all(checks))

    def read_training(self, inp: Input, limits: Limits) -> list[TrainingSignal]:
        return signals_from_tags(self._read_inp(inp), f"{self.name} tag")

    def write_training(self, data: bytes, policy: Any, limits: Limits) -> bytes:
        from ..layers.metadata import training_values
        read_excerpt(Input(data), self.id, 0.1)  # refuse what does not decode as audio
        return self._write(data, container_tags(policy), training_values(policy))


def _after_id3(header: bytes) -> bytes:
    """The 4 bytes after a leading ID3v2 tag (its size is a 28-bit syncsafe integer)."""
    size = int.from_bytes(bytes(b & 0x7F for b in header[6:10]), "big") + 10
    return header[size : size + 4]


class Wav(_AudioHandler):
    id = "wav"
    name = "WAV audio"
    mime = "audio/wav"
    extensions = (".wav", ".wave")

    def score(self, header: bytes, name: str | None) -> int:
        return 100 if header[:4] == b"RIFF" and header[8:12] == b"WAVE" else 0

    def _write(self, data: bytes, tags: Mapping[str, str], xmp: Mapping[tuple[str, str], str]) -> bytes:
        return write_wav_chunks(write_tags(data, tags), tags, xmp)

    def _write_file(self, path: Path, tags: Mapping[str, str], xmp: Mapping[tuple[str, str], str]) -> None:
        """ID3 chunk by mutagen in place, then the RIFF carriers by a streamed copy that replaces the file."""
        super()._write_file(path, tags, xmp)
        tmp = temp_beside(path)
        try:
            with open(path, "rb") as src, open(tmp, "wb") as out:
                rewrite_wav_chunks(src, out, tags, xmp)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _read(self, content: bytes | IO[bytes]) -> dict[str, str]:
        return read_wav_values(content) | read_tags(content)


class Mp3(_AudioHandler):
    id = "mp3"
    name = "MP3 audio"
    mime = "audio/mpeg"
    extensions = (".mp3",)

    def score(self, header: bytes, name: str | None) -> int:
        if header[:3] == b"ID3":
            return 0 if _after_id3(header) == b"fLaC" else 90  # ID3-prefixed FLAC is FLAC
        if len(header) >= 2 and header[0] == 0xFF and (header[1] & 0xE0) == 0xE0 and ((header[1] >> 1) & 3) == 1:
            return 80
        return 0


class Flac(_AudioHandler):
    id = "flac"
    name = "FLAC audio"
    mime = "audio/flac"
    extensions = (".flac",)

    def score(self, header: bytes, name: str | None) -> int:
        if header[:4] == b"fLaC":
            return 100
        if header[:3] == b"ID3":
            return 95 if _after_id3(header) == b"fLaC" else 0
        return 0


class Ogg(_AudioHandler):
    id = "ogg"
    name = "Ogg audio"
    mime = "audio/ogg"
    extensions = (".ogg", ".opus", ".oga")

    def score(self, header: bytes, name: str | None) -> int:
        if header[:4] != b"OggS":
            return 0
        return 100 if (b"OpusHead" in header[:128] or b"\x01vorbis" in header[:128]) else 0


class M4a(_AudioHandler):
    id = "m4a"
    name = "M4A audio"
    mime = "audio/mp4"
    extensions = (".m4a", ".m4b", ".aac")

    def score(self, header: bytes, name: str | None) -> int:
        return 100 if header[4:8] == b"ftyp" and header[8:12] in (b"M4A ", b"M4B ", b"M4P ") else 0


for _handler in (Wav(), Mp3(), Flac(), Ogg(), M4a()):
    register(_handler)
