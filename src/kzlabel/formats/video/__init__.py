"""Video: MP4/MOV (H.264/H.265) and Matroska/WebM (VP9/AV1), streamed frame by frame with PyAV.

Frames are decoded, passed through the per-frame operations the layers queued (burned-in warning, watermark), and
re-encoded with the same codec family, resolution, frame rate, pixel format and rotation. Audio packets are copied
untouched, unless the soundtrack is asked for (a tone position in ``MarkOptions.position``, see
:func:`split_position`): then it is decoded in blocks, gets the "AI" tone and the audio watermark, and is re-encoded
with the same codec, rate and channels. Memory stays bounded by a few frames and one audio block whatever the
length. Container tags (``AIGC``, ``kzlabel``, IPTC source type) are written by a second, stream-copy remux once the
label is signed: MP4/MOV as ``udta`` keys (``movflags use_metadata_tags``) that ffprobe and exiftool read;
Matroska/WebM as global tags.

Modules: :mod:`.codec` (probing, tags, frame sampling, the per-frame watermark), :mod:`.warning` (the burned-in
warning), :mod:`.soundtrack` (tone and audio watermark in the soundtrack), :mod:`.transcode` (the frame-by-frame
re-encode), :mod:`.scan` (one pass over packets, frames and soundtrack), :mod:`.binding` (the content binding: every
frame and the soundtrack; :mod:`.binding_v1` for ``kz-video-1`` labels); the handlers are here.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ...errors import CapacityError, CorruptInput
from ...io import Input, Limits
from ...label import Label, Training, TrainingSignal
from ...layers import LAYERS, Layer, audible
from ...rights.vocab import TrainingPolicy, container_tags, signals_from_tags
from .. import register
from ..base import Findings, Handler, LabelMatch, MarkOptions, Survival, rewrite
from .binding import video_binding, video_matches
from .codec import (
    TAG_AIGC,
    TAG_LABEL,
    TAG_SOURCE,
    FrameOp,
    SoundtrackPlan,
    VideoInfo,
    detect_watermark,
    probe,
    read_tags,
    remux_with_tags,
    watermark_op,
)
from .ratematch import RateOutcome, encode_matched
from .soundtrack import check_soundtrack, split_position
from .warning import check_warning, find_warning, warning_op


@dataclass(frozen=True)
class Undecodable:
    """Findings state of a labelled video that no longer decodes."""

    reason: str


@dataclass
class VideoDoc:
    inp: Input
    info: VideoInfo
    ops: list[FrameOp] = field(default_factory=list)
    label_fields: dict[str, Any] = field(default_factory=dict)
    soundtrack: SoundtrackPlan = field(default_factory=SoundtrackPlan)
    limits: Limits = field(default_factory=Limits)  # the mark's limits, for reading its own output back
    mark: tuple[bytes, bytes | None] | None = None  # the watermark's payload and key, proven at each rate tried
    rate: RateOutcome = field(default_factory=RateOutcome)


class _VideoHandler(Handler[VideoDoc]):
    layers: ClassVar[frozenset[Layer]] = frozenset(LAYERS)
    container: str = ""

    def load(self, inp: Input, limits: Limits) -> VideoDoc:
        return VideoDoc(inp, probe(inp, limits, self.id), limits=limits)

    def draw_warning(self, doc: VideoDoc, label: Label, opts: MarkOptions) -> None:
        op, record = warning_op(label, doc.info, opts)
        doc.ops.append(op)
        _, tone_at = split_position(opts.position)
        if tone_at and doc.info.has_audio:
            doc.soundtrack.tone_at = tone_at
            record["tone"] = {"kind": "tone", "pattern": "·−··", "freq": audible.FREQ, "at": tone_at, "mixed": True}
        doc.label_fields["warning"] = record

    def embed_watermark(self, doc: VideoDoc, payload: bytes, key: bytes | None) -> None:
        if min(doc.info.width, doc.info.height) < 256:
            raise CapacityError(
                f"{doc.info.width}×{doc.info.height} frames are too small for the watermark (min 256 px)"
            )
        doc.ops.append(watermark_op(payload, key, doc.info.height))
        doc.soundtrack.payload, doc.soundtrack.key = payload, key  # used only if encode() is asked to mark the audio
        doc.mark = (payload, key)

    def encode(self, doc: VideoDoc, opts: MarkOptions, out: Path) -> None:
        plan = doc.soundtrack
        if split_position(opts.position)[1] is None or not doc.info.has_audio:
            plan = SoundtrackPlan()  # the soundtrack is copied untouched
        if not doc.ops:  # neither the warning nor the watermark (both of which the soundtrack's layers ride on)
            with doc.inp.open() as fh, open(out, "wb") as dest:
                shutil.copyfileobj(fh, dest, 1 << 20)
            return
        doc.rate = encode_matched(
            doc.inp, doc.ops, doc.info, plan, out, mark=doc.mark, limits=doc.limits, fmt_id=self.id
        )

    def encoding(self, doc: VideoDoc) -> Mapping[str, str]:
        return doc.rate.lines

    def survival(self, doc: VideoDoc, out: Path, payload: bytes, key: bytes | None) -> Survival | None:
        """The check the rate-matched encode ran on the written video (H.264 CRF 28, ≤ 480 px, its opening)."""
        return doc.rate.survival

    def bind(self, doc: VideoDoc, out: Path) -> Mapping[str, Any]:
        """The warning recorded, and the frames and soundtrack bound to the label (decoded from the written file as
        verify decodes it)."""
        written = Input(path=out)
        binding = video_binding(written, probe(written, doc.limits, self.id), doc.label_fields.get("warning"))
        return dict(doc.label_fields) | {"binding": binding}

    def write_metadata(self, out: Path, label: Label, token: str) -> None:
        tags = {TAG_AIGC: label.aigc_json(token), TAG_LABEL: token, TAG_SOURCE: label.source_type}
        if label.system:
            tags["AISystemUsed"] = label.system + (f" {label.system_version}" if label.system_version else "")
        if label.training == Training.NOT_ALLOWED:
            tags |= container_tags(TrainingPolicy.from_lists(deny=["all"]))
        rewrite(out, lambda data: remux_with_tags(data, tags))

    def inspect(self, inp: Input, limits: Limits, key: bytes | None, watermark: bool = True) -> Findings:
        tags = {k.lower(): v for k, v in read_tags(inp).items()}
        tokens = [("container tag kzlabel", tags[TAG_LABEL.lower()])] if TAG_LABEL.lower() in tags else []
        fields = {k: tags[k.lower()] for k in (TAG_AIGC, TAG_SOURCE) if k.lower() in tags}
        try:
            info = probe(inp, limits, self.id)
        except CorruptInput as exc:
            if not tokens:
                raise
            # a label in a video that no longer decodes: the content was damaged after signing (tampered), which is
            # evidence, not an unusable input
            return Findings(tokens=tokens, fields=fields, warning_found=False, state=Undecodable(exc.message))
        try:
            mark = detect_watermark(inp, info, key) if watermark and "watermark" in self.layers else None
        except CorruptInput:
            if not tokens:
                raise
            mark = None  # frames the detector reads no longer decode: "could not be checked"; the binding says why
        parts = {"audio": check_soundtrack(inp, key)} if info.has_audio else {}
        # without a label (re-encoders drop the tags), look for kzlabel's built-in warning on its own
        seen, how = find_warning(inp, info) if not tokens else (None, "")
        return Findings(
            tokens=tokens,
            fields=fields,
            watermark=mark,
            warning_found=seen,
            warning_detail=how,
            state=(inp, info),
            parts=parts,
        )

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        if isinstance(findings.state, Undecodable):
            return LabelMatch(False, False, f"the video no longer decodes ({findings.state.reason})")
        inp, info = findings.state
        try:
            seen = check_warning(inp, info, label)
        except CorruptInput as exc:
            seen = LabelMatch(None, False, f"the warning could not be checked ({exc.message})")
        try:
            match = video_matches(inp, info, label.binding, label.warning)
        except CorruptInput as exc:
            match = LabelMatch(False, None, f"the video no longer decodes ({exc.message})", exact=False)
        detail = "; ".join(filter(None, (match.detail, seen.detail)))
        return LabelMatch(match.content, seen.warning, detail, match.exact, match.data)

    def read_training(self, inp: Input, limits: Limits) -> list[TrainingSignal]:
        return signals_from_tags(read_tags(inp))

    def write_training(self, data: bytes, policy: Any, limits: Limits) -> bytes:
        probe(Input(data), limits, self.id)
        return remux_with_tags(data, container_tags(policy))


def _ftyp_brand(header: bytes) -> bytes | None:
    return header[8:12] if header[4:8] == b"ftyp" else None


_NOT_VIDEO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis", b"crx "}


class Mp4(_VideoHandler):
    id = "mp4"
    name = "MP4 video"
    mime = "video/mp4"
    extensions = (".mp4", ".m4v")

    def score(self, header: bytes, name: str | None) -> int:
        brand = _ftyp_brand(header)
        if brand is None or brand in _NOT_VIDEO_BRANDS or brand == b"qt  ":
            return 0
        return 90


class Mov(_VideoHandler):
    id = "mov"
    name = "QuickTime video"
    mime = "video/quicktime"
    extensions = (".mov", ".qt")

    def score(self, header: bytes, name: str | None) -> int:
        if _ftyp_brand(header) == b"qt  ":
            return 100
        # old QuickTime files start with a moov/mdat/wide atom and have no ftyp
        return 60 if header[4:8] in (b"moov", b"mdat", b"wide", b"free") and len(header) >= 8 else 0


class Matroska(_VideoHandler):
    id = "mkv"
    name = "Matroska video"
    mime = "video/x-matroska"
    extensions = (".mkv",)

    def score(self, header: bytes, name: str | None) -> int:
        if not header.startswith(b"\x1a\x45\xdf\xa3"):
            return 0
        return 100 if b"matroska" in header[:64] else 0


class WebM(_VideoHandler):
    id = "webm"
    name = "WebM video"
    mime = "video/webm"
    extensions = (".webm",)

    def score(self, header: bytes, name: str | None) -> int:
        if not header.startswith(b"\x1a\x45\xdf\xa3"):
            return 0
        return 100 if b"webm" in header[:64] else 0


for _handler in (Mp4(), Mov(), Matroska(), WebM()):
    register(_handler)
