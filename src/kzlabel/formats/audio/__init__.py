"""Audio: WAV (PCM 16/24-bit, float), MP3, FLAC, Ogg (Opus; Vorbis), M4A/AAC.

Samples are decoded and re-encoded with PyAV (FFmpeg's codecs, already a dependency for video: one codec stack for
every lossy and lossless format, no libsndfile gap for MP3/AAC/Opus); sample rate, channel layout and bit depth are
kept, lossy formats are re-encoded at the source's bit rate. Tags are read and written with mutagen, in each
container's own slot, so exiftool and ffprobe read them back: ID3v2 ``TXXX`` frames (MP3, with the label's XMP in a
``PRIV`` frame, and the ``id3`` chunk of WAV), Vorbis comments (FLAC, Ogg), iTunes freeform atoms
``----:com.apple.iTunes:…`` (M4A). The tag names are those of STANDARDS.md: ``AIGC`` (GB 45438 JSON), ``kzlabel``
(the signed label), ``DigitalSourceType`` (IPTC URI), ``AISystemUsed``, and the training tags of
:mod:`kzlabel.rights.vocab`.

Marking streams: samples are decoded in blocks of :data:`BLOCK_TILES` watermark tiles (30.72 s), toned,
watermarked with the block's offset on the watermark's grid and encoded block by block to a temp file, so memory holds
about two blocks of float32 whatever the length (docs/audio.md has the figures). The encoded
file stays on disk, tags are edited there (mutagen in place; WAV chunks by a streamed copy) and the pipeline signs
it file to file. Verification decodes the opening :data:`DETECT_SECONDS` for the watermark and the notices and, when
the label records a tone at the end, the last seconds after one seek; tags are read from the file without loading
it. A label that binds the content (:mod:`.binding`) is checked by one more streamed decode of the whole file.

Modules: :mod:`.codec` (probing, block-wise decoding and encoding, excerpts), :mod:`.tags` (container tags and WAV
chunks), :mod:`.binding` (the content binding); the handlers are here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ...containers import riff
from ...errors import CapacityError, CorruptInput
from ...io import Input, Limits, id3_end, temp_beside
from ...label import DEFAULT_LANGUAGES, IPTC_COMPOSITE, IPTC_TRAINED, Label, Training, TrainingSignal
from ...layers import audible, spoken
from ...layers.c2pa_embed import Slot
from ...layers.metadata import label_values, training_values
from ...rights.vocab import TrainingPolicy, container_tags, signals_from_tags
from .. import register
from ..base import Findings, Handler, LabelMatch, MarkOptions
from . import id3slot
from .binding import audio_binding, audio_matches
from .codec import (
    DETECT_SECONDS,
    TAIL_SECONDS,
    AudioDoc,
    encode_blocks,
    encoding_line,
    open_stream,
    output_blocks,
    read_excerpt,
    rechunk,
    watermark_audio,
)
from .tags import (
    TAG_AIGC,
    TAG_LABEL,
    TAG_SOURCE,
    TAG_SYSTEM,
    read_tags,
    read_wav_values,
    rewrite_wav_chunks,
    set_tags,
    write_tags,
    write_wav_chunks,
)

__all__ = ["Flac", "M4a", "Mp3", "Ogg", "Wav", "rechunk"]


@dataclass(frozen=True)
class Undecodable:
    """Findings state of a labelled file whose audio no longer decodes."""

    reason: str


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
        min_rate = watermark_audio().MIN_RELIABLE_RATE
        if doc.rate < min_rate:
            raise CapacityError(
                f"{doc.rate} Hz audio is too narrow for the watermark (its bands reach 5.7 kHz; needs ≥ {min_rate} Hz)",
                source=doc.inp.source,
            )
        doc.first = watermark_audio().embed_audio(doc.head, doc.rate, payload, key=key)
        doc.payload, doc.key = payload, key

    def encode(self, doc: AudioDoc, opts: MarkOptions, out: Path) -> None:
        encode_blocks(doc.info, output_blocks(doc), self.id, out)
        doc.encoding = {"audio": encoding_line(doc.info, out)}

    def encoding(self, doc: AudioDoc) -> Mapping[str, str]:
        return doc.encoding

    def bind(self, doc: AudioDoc, out: Path) -> Mapping[str, Any]:
        """The notices recorded, and the content between them bound to the label (decoded from the written file as
        verify decodes it)."""
        tone = audible.tone_seconds()
        start_s = (tone if doc.tone_at in ("start", "both") else 0.0) + (
            len(doc.speech) / doc.rate if doc.speech is not None else 0.0
        )
        tail_s = tone if doc.tone_at in ("end", "both") else 0.0
        binding = audio_binding(Input(path=out), doc.limits, self.id, start_s, tail_s)
        return dict(doc.label_fields) | {"binding": binding}

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

    def inspect(self, inp: Input, limits: Limits, key: bytes | None, watermark: bool = True) -> Findings:
        tags = {k.lower(): v for k, v in self._read_inp(inp).items()}
        tokens = [(f"{self.name} tag kzlabel", tags[TAG_LABEL.lower()])] if TAG_LABEL.lower() in tags else []
        fields = {k: tags[k.lower()] for k in (TAG_AIGC, TAG_SOURCE) if k.lower() in tags}
        try:
            samples, rate = read_excerpt(inp, self.id, DETECT_SECONDS)
        except CorruptInput as exc:
            if not tokens:
                raise
            # a label in audio that no longer decodes: the content was damaged after signing (tampered), which is
            # evidence, not an unusable input
            return Findings(tokens=tokens, fields=fields, warning_found=False, state=Undecodable(exc.message))
        wm = watermark_audio()
        start = audible.detect(samples, rate, "start") >= audible.THRESHOLD
        # the notices carry no mark: when the mark is not found from the start, retry on the content after them
        heard, speech_end = spoken.find(samples, rate, DEFAULT_LANGUAGES, (IPTC_TRAINED, IPTC_COMPOSITE))
        speech_found = bool(heard)
        skips = [int(audible.tone_seconds() * rate)] + ([int(speech_end * rate)] if speech_found else [])
        mark = wm.detect_audio(samples, rate, key=key) if watermark else None
        for skip in skips:
            if mark is None or mark.found or len(samples) <= skip + wm.MIN_SECONDS * rate:
                break
            mark = wm.detect_audio(samples[skip:], rate, key=key)
        whole = len(samples) < int(DETECT_SECONDS * rate)  # the excerpt is the whole file: its end is here too
        tail = samples[-int(TAIL_SECONDS * rate) :] if whole else None
        return Findings(
            tokens=tokens,
            fields=fields,
            watermark=mark,
            warning_found=start or speech_found,
            state=(inp, start, samples, tail, rate, limits),
        )

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        """The notices the label records, each where it says: start/end tone, spoken notice in its languages."""
        if isinstance(findings.state, Undecodable):
            return LabelMatch(False, False, f"the audio no longer decodes ({findings.state.reason})")
        inp, start, head, tail, rate, limits = findings.state
        try:
            match = audio_matches(inp, limits, self.id, label.binding)
        except CorruptInput as exc:
            match = LabelMatch(False, None, f"the audio no longer decodes after its opening seconds ({exc.message})")
        warning = label.warning or {}
        checks: list[bool] = []
        if "tone" in warning.get("kind", "tone"):
            where = warning.get("at", "start")
            if where in ("start", "both"):
                checks.append(start)
            if where in ("end", "both"):
                if tail is None:  # a long file: decode its last seconds only
                    tail, tail_rate = read_excerpt(inp, self.id, TAIL_SECONDS, from_end=True)
                else:
                    tail_rate = rate
                checks.append(audible.detect(tail, tail_rate, "end") >= audible.THRESHOLD)
        if isinstance(warning.get("speech"), dict):
            langs = tuple(str(x) for x in warning["speech"].get("langs", ()))
            checks.append(spoken.detect(head, rate, langs, label.source_type) >= spoken.THRESHOLD)
        return LabelMatch(match.content, bool(checks) and all(checks), match.detail, match.exact, match.data)

    def read_training(self, inp: Input, limits: Limits) -> list[TrainingSignal]:
        return signals_from_tags(self._read_inp(inp), f"{self.name} tag")

    def write_training(self, data: bytes, policy: Any, limits: Limits) -> bytes:
        read_excerpt(Input(data), self.id, 0.1)  # refuse what does not decode as audio
        return self._write(data, container_tags(policy), training_values(policy))


def _after_id3(header: bytes) -> bytes:
    """The 4 bytes after a leading ID3v2 tag (the sniffed header reaches past it: ``io.sniff_length``)."""
    end = id3_end(header)
    return header[end : end + 4]


class Wav(_AudioHandler):
    id = "wav"
    name = "WAV audio"
    mime = "audio/wav"
    extensions = (".wav", ".wave")

    def score(self, header: bytes, name: str | None) -> int:
        return 100 if header[:4] == b"RIFF" and header[8:12] == b"WAVE" else 0

    def _write(self, data: bytes, tags: Mapping[str, str], xmp: Mapping[tuple[str, str], str]) -> bytes:
        return write_wav_chunks(data, tags, xmp)

    def _write_file(self, path: Path, tags: Mapping[str, str], xmp: Mapping[tuple[str, str], str]) -> None:
        """Every RIFF carrier (ID3 chunk, XMP, AIGC) in one streamed copy that replaces the file."""
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

    # the manifest in a top-level RIFF ``C2PA`` chunk, last (C2PA 2.x, "Embedding manifests into RIFF-based assets");
    # its exclusion is the chunk's header and body, as c2pa-rs writes it (the pad byte of an odd size is hashed)
    c2pa_streamed = True

    def c2pa_reserve(self, src: IO[bytes], dst: IO[bytes], size: int) -> Slot:
        c = riff.reserve(src, dst, b"C2PA", size)
        return Slot(c.body, c.size, (c.start, 8 + c.size))

    def c2pa_slot(self, content: IO[bytes]) -> Slot | None:
        found = [c for c in riff.chunks(content) if c.kind == b"C2PA"]
        return Slot(found[-1].body, found[-1].size, (found[-1].start, 8 + found[-1].size)) if found else None


class _Id3Slot(_AudioHandler):
    """The manifest in a GEOB frame of the leading ID3 tag (C2PA: MP3; FLAC as c2pa-rs writes it), signed and read
    in a stream (formats/audio/id3slot)."""

    c2pa_streamed = True

    def c2pa_reserve(self, src: IO[bytes], dst: IO[bytes], size: int) -> Slot:
        return id3slot.reserve(src, dst, size)

    def c2pa_slot(self, content: IO[bytes]) -> Slot | None:
        return id3slot.find(content)


class Mp3(_Id3Slot):
    id = "mp3"
    name = "MP3 audio"
    mime = "audio/mpeg"
    extensions = (".mp3",)

    # the label's XMP too, in the ID3 tag's PRIV "XMP" frame (exiftool: XMP-iptcExt:DigitalSourceType)
    def _write(self, data: bytes, tags: Mapping[str, str], xmp: Mapping[tuple[str, str], str]) -> bytes:
        return write_tags(data, tags, xmp)

    def _write_file(self, path: Path, tags: Mapping[str, str], xmp: Mapping[tuple[str, str], str]) -> None:
        with open(path, "r+b") as fh:
            set_tags(fh, tags, xmp)

    def score(self, header: bytes, name: str | None) -> int:
        if header[:3] == b"ID3":
            return 0 if _after_id3(header) == b"fLaC" else 90  # ID3-prefixed FLAC is FLAC
        if len(header) >= 2 and header[0] == 0xFF and (header[1] & 0xE0) == 0xE0 and ((header[1] >> 1) & 3) == 1:
            return 80
        return 0


class Flac(_Id3Slot):
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
