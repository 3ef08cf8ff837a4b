"""Audio: WAV (PCM 16/24-bit, float), MP3, FLAC, Ogg (Opus; Vorbis), M4A/AAC.

Samples are decoded and re-encoded with PyAV (FFmpeg's codecs, already a dependency for video: one codec stack for
every lossy and lossless format, no libsndfile gap for MP3/AAC/Opus); sample rate, channel layout and bit depth are
kept, lossy formats are re-encoded at the source's bit rate. Tags are read and written with mutagen, in each
container's own slot, so exiftool and ffprobe read them back: ID3v2 ``TXXX`` frames (MP3, and the ``id3`` chunk of
WAV), Vorbis comments (FLAC, Ogg), iTunes freeform atoms ``----:com.apple.iTunes:…`` (M4A). The tag names are those
of STANDARDS.md: ``AIGC`` (GB 45438 JSON), ``kzlabel`` (the signed label), ``DigitalSourceType`` (IPTC URI),
``AISystemUsed``, and the training tags of :mod:`kzlabel.optout`.

The whole decoded signal is held in memory as float32 (about 1.4 GB for 3 hours of 48 kHz stereo): files over
:attr:`Limits.max_duration_s` are refused before decoding.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import CorruptInput, KzlabelError, LimitExceeded
from ..label import Label, Training, TrainingSignal
from ..layers import audible
from ..layers.metadata import label_values, training_values
from . import Findings, Handler, Input, LabelMatch, Limits, MarkOptions, register
from ._av import AV_ERRORS, av, need_av, source, temp_output

TAG_AIGC = "AIGC"
TAG_LABEL = "kzlabel"
TAG_SOURCE = "DigitalSourceType"
TAG_SYSTEM = "AISystemUsed"
_ITUNES = "----:com.apple.iTunes:"
_DETECT_SECONDS = 25.0  # audio decoded for verification (the tone plus ~20 s for the watermark)


@dataclass
class AudioDoc:
    inp: Input
    samples: np.ndarray  # float32 (n, channels)
    rate: int
    layout: str
    codec: str
    bit_rate: int | None
    sample_fmt: str
    metadata: dict[str, str]
    label_fields: dict[str, Any] = field(default_factory=dict)


def decode(inp: Input, limits: Limits, fmt_id: str, seconds: float | None = None) -> AudioDoc:
    """The first audio stream as float32 (n, channels); ``seconds`` stops early (verification reads a prefix)."""
    need_av("audio")
    try:
        with av.open(source(inp), "r") as container:
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
            layout = ctx.layout.name if ctx.layout else ("mono" if ctx.channels == 1 else "stereo")
            resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)
            chunks: list[np.ndarray] = []
            total = 0
            stop = None if seconds is None else int(seconds * rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    a = out.to_ndarray().reshape(-1, len(out.layout.channels))
                    chunks.append(a)
                    total += len(a)
                if total > limits.max_duration_s * rate:
                    raise LimitExceeded(f"audio longer than {limits.max_duration_s:.0f} s", source=inp.source, format=fmt_id)
                if stop is not None and total >= stop:
                    break
            meta = {str(k): str(v) for k, v in {**stream.metadata, **container.metadata}.items()}
            doc = AudioDoc(
                inp=inp,
                samples=np.concatenate(chunks) if chunks else np.zeros((0, max(1, ctx.channels)), np.float32),
                rate=rate,
                layout=layout,
                codec=ctx.name,
                bit_rate=ctx.bit_rate or container.bit_rate or None,
                sample_fmt=ctx.format.name if ctx.format else "s16",
                metadata=meta,
            )
    except KzlabelError:
        raise
    except AV_ERRORS as exc:
        raise CorruptInput(f"unreadable audio: {exc}", source=inp.source, format=fmt_id) from None
    if len(doc.samples) == 0:
        raise CorruptInput("the audio stream has no decodable samples", source=inp.source, format=fmt_id)
    return doc


# encoder and container per format id; WAV/FLAC keep the source's sample format
_PCM = {"s16": "pcm_s16le", "s16p": "pcm_s16le", "s32": "pcm_s24le", "s32p": "pcm_s24le", "flt": "pcm_f32le", "fltp": "pcm_f32le", "dbl": "pcm_f32le", "u8": "pcm_s16le"}


def _encoder(doc: AudioDoc, fmt_id: str) -> tuple[str, str, dict[str, Any]]:
    """(container format, codec, stream settings) that keep what can be kept of the source."""
    if fmt_id == "wav":
        codec = {"pcm_s24le": "pcm_s24le", "pcm_f32le": "pcm_f32le", "pcm_s32le": "pcm_s24le"}.get(doc.codec, _PCM.get(doc.sample_fmt, "pcm_s16le"))
        return "wav", codec, {}
    if fmt_id == "flac":
        return "flac", "flac", {"format": "s32" if doc.sample_fmt.startswith("s32") else "s16"}
    if fmt_id == "mp3":
        return "mp3", "libmp3lame", {"bit_rate": doc.bit_rate or 192_000}
    if fmt_id == "m4a":
        return "ipod", "aac", {"bit_rate": doc.bit_rate or 192_000}
    if doc.codec == "opus":
        return "ogg", "libopus", {"bit_rate": doc.bit_rate or 128_000}
    return "ogg", "vorbis", {"bit_rate": doc.bit_rate or 160_000}


def encode_samples(doc: AudioDoc, samples: np.ndarray, fmt_id: str) -> bytes:
    """Encode float32 (n, channels) samples in the source's format; written through a temp file, returned as bytes."""
    need_av("audio")
    container_fmt, codec, settings = _encoder(doc, fmt_id)
    try:
        with temp_output("." + fmt_id) as tmp:
            with av.open(tmp, "w", format=container_fmt) as out:
                rate = doc.rate
                if codec == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
                    rate = 48000
                stream = out.add_stream(codec, rate=rate, layout=doc.layout)
                if codec == "vorbis":
                    stream.codec_context.options = {"strict": "experimental"}
                if "format" in settings:
                    stream.format = settings["format"]
                if "bit_rate" in settings:
                    stream.bit_rate = int(settings["bit_rate"])
                for k, v in doc.metadata.items():
                    if k.lower() not in ("encoder", "major_brand", "minor_version", "compatible_brands", "language", "handler_name", "vendor_id"):
                        out.metadata[k] = v
                        if container_fmt == "ogg":  # Ogg keeps tags in the stream's comment header
                            stream.metadata[k] = v
                resampler = av.AudioResampler(format="flt", layout=doc.layout, rate=rate) if rate != doc.rate else None
                block = 1 << 15
                pts = 0
                for start in range(0, len(samples), block):
                    chunk = np.ascontiguousarray(samples[start : start + block], dtype=np.float32)
                    frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout=doc.layout)
                    frame.sample_rate = doc.rate
                    frame.pts = pts
                    pts += len(chunk)
                    frames = resampler.resample(frame) if resampler is not None else [frame]
                    for f in frames:
                        if resampler is not None:
                            f.pts = None
                        for packet in stream.encode(f):
                            out.mux(packet)
                for packet in stream.encode(None):
                    out.mux(packet)
            with open(tmp, "rb") as fh:
                return fh.read()
    except KzlabelError:
        raise
    except AV_ERRORS as exc:
        raise CorruptInput(f"could not encode {fmt_id}: {exc}", format=fmt_id) from None


# ------------------------------------------------------------------------------------------------------------ tags


def _mutagen_file(data: bytes) -> tuple[Any, io.BytesIO]:
    import mutagen

    bio = io.BytesIO(data)
    try:
        f = mutagen.File(bio)
    except Exception as exc:  # noqa: BLE001 - mutagen raises many types for damaged tags
        raise CorruptInput(f"unreadable audio tags: {exc}") from None
    if f is None:
        raise CorruptInput("mutagen does not recognise this audio container")
    bio.seek(0)
    return f, bio


def read_tags(data: bytes) -> dict[str, str]:
    """Every text tag as name → value (ID3 TXXX by description, Vorbis comments, iTunes freeform by name)."""
    try:
        f, _ = _mutagen_file(data)
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


def write_tags(data: bytes, values: Mapping[str, str]) -> bytes:
    """``data`` with ``values`` set as text tags in the container's own tag slot (existing tags kept)."""
    from mutagen.id3 import ID3, TXXX
    from mutagen.mp4 import MP4, MP4FreeForm

    f, bio = _mutagen_file(data)
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
        f.save(bio)
    except Exception as exc:  # noqa: BLE001
        raise CorruptInput(f"could not write audio tags: {exc}") from None
    return bio.getvalue()


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise CorruptInput("not a RIFF/WAVE file")
    out, i = [], 12
    while i + 8 <= len(data):
        cid, n = data[i : i + 4], int.from_bytes(data[i + 4 : i + 8], "little")
        if i + 8 + n > len(data):
            raise CorruptInput(f"truncated RIFF chunk {cid!r}")
        out.append((cid, data[i + 8 : i + 8 + n]))
        i += 8 + n + (n & 1)
    return out


def _riff(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(cid + len(c).to_bytes(4, "little") + c + (b"\0" if len(c) & 1 else b"") for cid, c in chunks)
    return b"RIFF" + (len(body) + 4).to_bytes(4, "little") + b"WAVE" + body


def write_wav_chunks(data: bytes, values: Mapping[str, str], xmp: Mapping[tuple[str, str], str]) -> bytes:
    """WAV carriers exiftool and ffprobe read: XMP in a ``_PMX`` chunk (merged with any existing packet), the
    ``AIGC`` JSON as its own RIFF chunk (GB 45438 practice) and every value as a ``LIST/INFO`` entry (ffprobe)."""
    from ..layers.metadata import merge_xmp

    chunks = _riff_chunks(data)
    old_xmp = next((c for cid, c in chunks if cid == b"_PMX"), None)
    packet = merge_xmp(old_xmp, xmp, tuple(xmp))
    info = b""
    for k, v in values.items():
        raw = v.encode("utf-8") + b"\0"
        info += k.encode("ascii")[:4].ljust(4, b" ") + len(raw).to_bytes(4, "little") + raw + (b"\0" if len(raw) & 1 else b"")
    mine = {k.encode("ascii")[:4].ljust(4, b" ") for k in values}
    out: list[tuple[bytes, bytes]] = []
    merged_info = False
    for cid, c in chunks:
        if cid in (b"_PMX", b"AIGC"):
            continue
        if cid == b"LIST" and c[:4] == b"INFO" and not merged_info:
            kept, i = b"", 4
            while i + 8 <= len(c):
                sid, n = c[i : i + 4], int.from_bytes(c[i + 4 : i + 8], "little")
                if sid not in mine:
                    kept += c[i : i + 8 + n + (n & 1)]
                i += 8 + n + (n & 1)
            c = b"INFO" + kept + info
            merged_info = True
        out.append((cid, c))
    if not merged_info:
        out.append((b"LIST", b"INFO" + info))
    if TAG_AIGC in values:
        out.append((b"AIGC", values[TAG_AIGC].encode("utf-8")))
    out.append((b"_PMX", packet))
    return _riff(out)


def read_wav_values(data: bytes) -> dict[str, str]:
    """The XMP and INFO values :func:`write_wav_chunks` wrote (for a file without ID3 tags)."""
    from ..layers.metadata import xmp_values

    try:
        chunks = _riff_chunks(data)
    except CorruptInput:
        return {}
    out: dict[str, str] = {}
    for cid, c in chunks:
        if cid == b"_PMX":
            vals = xmp_values(c)
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
    from ..watermark import audio as wm

    return wm


class _AudioHandler(Handler):
    layers = frozenset({"visible", "watermark", "metadata", "c2pa"})

    def load(self, inp: Input, limits: Limits) -> AudioDoc:
        return decode(inp, limits, self.id)

    def draw_warning(self, doc: AudioDoc, label: Label, opts: MarkOptions) -> None:
        where = opts.position if opts.position in ("start", "end", "both") else "start"
        t = audible.tone(doc.rate, doc.samples.shape[1], audible.level_for(doc.samples))
        parts = [t] if where in ("start", "both") else []
        parts.append(doc.samples)
        if where in ("end", "both"):
            parts.append(t)
        doc.samples = np.concatenate(parts)
        doc.label_fields["warning"] = {"kind": "tone", "pattern": "·−··", "freq": audible.FREQ, "at": where}

    def embed_watermark(self, doc: AudioDoc, payload: bytes, key: bytes | None) -> None:
        wm = _watermark_module()
        doc.samples = wm.embed_audio(doc.samples, doc.rate, payload, key=key)

    def encode(self, doc: AudioDoc, opts: MarkOptions) -> bytes:
        return encode_samples(doc, doc.samples, self.id)

    def bind(self, doc: AudioDoc, encoded: bytes) -> Mapping[str, Any]:
        return dict(doc.label_fields)

    def write_metadata(self, data: bytes, label: Label, token: str) -> bytes:
        tags = {TAG_AIGC: label.aigc_json(token), TAG_LABEL: token, TAG_SOURCE: label.source_type}
        if label.system:
            tags[TAG_SYSTEM] = label.system + (f" {label.system_version}" if label.system_version else "")
        xmp = label_values(label, token)
        if label.training == Training.NOT_ALLOWED:
            from ..optout import TrainingPolicy, container_tags

            policy = TrainingPolicy.from_lists(deny=["all"])
            tags |= container_tags(policy)
            xmp |= training_values(policy)
        return self._write(data, tags, xmp)

    def _write(self, data: bytes, tags: Mapping[str, str], xmp: Mapping[tuple[str, str], str]) -> bytes:
        return write_tags(data, tags)

    def _read(self, data: bytes) -> dict[str, str]:
        return read_tags(data)

    def inspect(self, inp: Input, limits: Limits, key: bytes | None) -> Findings:
        doc = decode(inp, limits, self.id, seconds=_DETECT_SECONDS)
        tags = {k.lower(): v for k, v in self._read(inp.data).items()}
        tokens = [(f"{self.name} tag kzlabel", tags[TAG_LABEL.lower()])] if TAG_LABEL.lower() in tags else []
        fields = {k: tags[k.lower()] for k in (TAG_AIGC, TAG_SOURCE) if k.lower() in tags}
        wm = _watermark_module()
        skip = int(audible.tone_seconds() * doc.rate)  # the tone is marked too, but music is a better carrier
        mark = wm.detect_audio(doc.samples, doc.rate, key=key)
        if not mark.found and len(doc.samples) > skip + wm.MIN_SECONDS * doc.rate:
            mark = wm.detect_audio(doc.samples[skip:], doc.rate, key=key)
        start = audible.detect(doc.samples, doc.rate, "start") >= audible.THRESHOLD
        return Findings(tokens=tokens, fields=fields, watermark=mark, warning_found=start, state=(inp, limits, start))

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        inp, limits, start = findings.state
        where = (label.warning or {}).get("at", "start")
        ok = start if where in ("start", "both") else None
        if where in ("end", "both"):
            full = decode(inp, limits, self.id)
            end = audible.detect(full.samples, full.rate, "end") >= audible.THRESHOLD
            ok = end if ok is None else (ok and end)
        return LabelMatch(content=None, warning=bool(ok))

    def read_training(self, inp: Input, limits: Limits) -> list[TrainingSignal]:
        from ..optout import signals_from_tags

        return signals_from_tags(self._read(inp.data), f"{self.name} tag")

    def write_training(self, data: bytes, policy: Any, limits: Limits) -> bytes:
        from ..layers.metadata import training_values
        from ..optout import container_tags

        decode(Input(data), limits, self.id, seconds=0.1)
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

    def _read(self, data: bytes) -> dict[str, str]:
        return read_wav_values(data) | read_tags(data)


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
