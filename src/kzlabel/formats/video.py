"""Video: MP4/MOV (H.264/H.265) and Matroska/WebM (VP9/AV1), streamed frame by frame with PyAV.

Frames are decoded, passed through the per-frame operations the layers queued (burned-in warning, watermark), and
re-encoded with the same codec family, resolution, frame rate, pixel format and rotation. Audio packets are copied
untouched, unless the soundtrack is asked for (a tone position in ``MarkOptions.position``, see
:func:`split_position`): then it is decoded in blocks, gets the "AI" tone and the audio watermark, and is re-encoded
with the same codec, rate and channels. Memory stays bounded by a few frames and one audio block whatever the length. Container tags (``AIGC``, ``kzlabel``, IPTC
source type) are written by a second, stream-copy remux once the label is signed: MP4/MOV as ``udta`` keys
(``movflags use_metadata_tags``) that ffprobe and exiftool read; Matroska/WebM as global tags.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import CapacityError, CorruptInput, KzlabelError, LimitExceeded, UnsupportedFormat
from ..label import Label, Training, TrainingSignal
from ..layers import LAYERS, Layer, audible, visible
from ..io import Input, Limits
from ..rights.vocab import TrainingPolicy, container_tags, signals_from_tags
from . import register
from .base import Findings, Handler, LabelMatch, MarkOptions, rewrite
from ..media_av import av_errors, block_samples, layout_name, mux_samples, need_av, read_audio, source, temp_output

# A per-frame operation: (I420 frame as one (H*3/2, W) uint8 array — Y plane on top, then U and V —, time in
# seconds, frame index) → modifies the array in place. Working in YUV saves two colour conversions per frame, and
# both the watermark (luma) and the warning overlay (pre-converted once) are cheapest there.
FrameOp = Callable[[np.ndarray, float, int], None]

TAG_AIGC = "AIGC"
TAG_LABEL = "kzlabel"
TAG_SOURCE = "DigitalSourceType"
_ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "vp8": "libvpx", "av1": "libsvtav1"}
_FALLBACK = {"mp4": "libx264", "mov": "libx264", "matroska": "libx264", "webm": "libvpx-vp9"}
# Muxer options per output container. Matroska/WebM draw random segment and track UIDs unless bitexact is set, so
# marking the same input twice (or as a path, bytes and a file object) gave different bytes; MP4/MOV write none.
_MUX_OPTIONS: dict[str, dict[str, str]] = {
    "mp4": {"movflags": "use_metadata_tags+faststart"},
    "mov": {"movflags": "use_metadata_tags+faststart"},
    "matroska": {"fflags": "+bitexact"},
    "webm": {"fflags": "+bitexact"},
}




@dataclass
class VideoInfo:
    width: int
    height: int
    codec: str
    pix_fmt: str
    rate: Fraction
    duration: float
    frames: int
    rotation: int
    has_audio: bool
    bit_rate: int | None


@dataclass
class SoundtrackPlan:
    """What happens to the audio streams: the tone (where, or None) and the audio watermark (payload, or None)."""

    tone_at: str | None = None  # "start" | "end" | "both"
    payload: bytes | None = None
    key: bytes | None = None


@dataclass
class VideoDoc:
    inp: Input
    info: VideoInfo
    ops: list[FrameOp] = field(default_factory=list)
    label_fields: dict[str, Any] = field(default_factory=dict)
    soundtrack: SoundtrackPlan = field(default_factory=SoundtrackPlan)


def probe(inp: Input, limits: Limits, fmt_id: str) -> VideoInfo:
    """Open the container, check it has a decodable video stream within the limits; never a PyAV traceback."""
    av = need_av("video")
    try:
        with av.open(source(inp), metadata_errors="ignore") as container:
            if not container.streams.video:
                raise UnsupportedFormat("no video stream in the container", source=inp.source, format=fmt_id)
            v = container.streams.video[0]
            ctx = v.codec_context
            if ctx is None:  # a truncated moov: the stream is listed but its codec parameters are missing
                raise CorruptInput("the video stream has no codec parameters", source=inp.source, format=fmt_id)
            width, height = ctx.width, ctx.height
            duration = float(container.duration / 1_000_000) if container.duration else 0.0
            if v.duration and v.time_base:
                duration = max(duration, float(v.duration * v.time_base))
            rate = v.average_rate or v.guessed_rate or Fraction(25)
            first = next(container.decode(v), None)
            if first is None:
                raise CorruptInput("the video stream has no decodable frame", source=inp.source, format=fmt_id)
            info = VideoInfo(
                width=width or first.width,
                height=height or first.height,
                codec=ctx.name,
                pix_fmt=ctx.pix_fmt or "yuv420p",
                rate=Fraction(rate),
                duration=duration,
                frames=v.frames or int(round(duration * float(rate))),
                rotation=int(getattr(first, "rotation", 0) or 0) % 360,
                has_audio=bool(container.streams.audio),
                bit_rate=ctx.bit_rate or container.bit_rate or None,
            )
    except KzlabelError:
        raise
    except av_errors() as exc:
        raise CorruptInput(f"unreadable video: {exc}", source=inp.source, format=fmt_id) from None
    if not info.width or not info.height:
        raise CorruptInput("video has no frame size", source=inp.source, format=fmt_id)
    if info.width % 2 or info.height % 2:  # 4:2:0 frames, which the visible and watermark layers work on
        raise UnsupportedFormat(f"{info.width}×{info.height} frames: odd frame sizes are not supported",
                                source=inp.source, format=fmt_id)
    if info.width * info.height > min(limits.max_pixels, 8192 * 4352):
        raise LimitExceeded(f"{info.width}×{info.height} frames are over the limit", source=inp.source, format=fmt_id)
    if info.duration > limits.max_duration_s:
        raise LimitExceeded(f"{info.duration:.0f} s is over the {limits.max_duration_s:.0f} s limit", source=inp.source, format=fmt_id)
    return info


def _encoder_for(info: VideoInfo, fmt: str) -> str:
    name = _ENCODERS.get(info.codec, _FALLBACK.get(fmt, "libx264"))
    if name not in need_av("video").codecs_available:
        name = _FALLBACK.get(fmt, "libx264")
    return name


def _encoder_options(encoder: str, info: VideoInfo) -> dict[str, str]:
    """Quality close to a visually lossless re-encode, at a speed that keeps up with real time on two cores."""
    if encoder in ("libx264", "libx265"):
        return {"crf": "18" if encoder == "libx264" else "20", "preset": "veryfast" if encoder == "libx264" else "ultrafast"}
    if encoder == "libvpx-vp9":
        return {"crf": "31", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
    if encoder == "libsvtav1":
        return {"crf": "35", "preset": "10"}
    return {}


def _out_format(container: Any) -> str:
    names = container.format.name.split(",")
    if "mov" in names and container.metadata.get("major_brand", "").strip() == "qt":
        return "mov"
    if "mp4" in names or "mov" in names:
        return "mp4"
    if "webm" in names and any(s.codec_context.name in ("vp8", "vp9", "av1") for s in container.streams.video):
        return "webm"
    return "matroska"


def transcode(
    src: Any,
    ops: list[FrameOp],
    info: VideoInfo,
    *,
    metadata: Mapping[str, str] | None = None,
    soundtrack: SoundtrackPlan | None = None,
) -> bytes:
    """Decode → per-frame ops → encode, streamed; audio copied, or marked when ``soundtrack`` asks for it.

    Writes through a temp file and returns its bytes.
    """
    av = need_av("video")
    try:
        with temp_output(".kzvideo") as tmp:
            with av.open(src, metadata_errors="ignore") as inp:
                fmt = _out_format(inp)
                vin = inp.streams.video[0]
                vin.thread_type = "AUTO"
                options = dict(_MUX_OPTIONS.get(fmt, {}))
                with av.open(tmp, "w", format=fmt, options=options) as out:
                    out.metadata.update(dict(inp.metadata) | dict(metadata or {}))
                    encoder = _encoder_for(info, fmt)
                    vout = out.add_stream(encoder, rate=info.rate, options=_encoder_options(encoder, info))
                    vout.width, vout.height = info.width, info.height
                    vout.pix_fmt = info.pix_fmt if info.pix_fmt in ("yuv420p", "yuv420p10le", "yuv444p", "yuv422p") else "yuv420p"
                    vout.time_base = vin.time_base
                    vout.thread_type = "AUTO"
                    if info.rotation and hasattr(vout, "set_display_rotation"):
                        vout.set_display_rotation(info.rotation)  # same sign convention as frame.rotation
                    plan = soundtrack if soundtrack is not None and (soundtrack.tone_at or soundtrack.payload) else None
                    marked = {a.index: _Soundtrack(out, a, fmt, plan) for a in inp.streams.audio if plan is not None}
                    copied = {a.index: out.add_stream_from_template(a) for a in inp.streams.audio if plan is None}
                    index = 0
                    for packet in inp.demux(vin, *inp.streams.audio):
                        i = packet.stream.index
                        if i in marked:
                            marked[i].push(packet)  # the empty end-of-stream packet flushes its decoder
                        elif i in copied:
                            if packet.size:  # an empty packet is the demuxer's end-of-stream marker
                                packet.stream = copied[i]
                                out.mux(packet)
                        else:  # video; its end-of-stream packet flushes the decoder's last frames
                            for frame in packet.decode():
                                _encode_frame(out, vout, frame, ops, index)
                                index += 1
                    for track in marked.values():
                        track.finish()
                    for packet in vout.encode(None):
                        out.mux(packet)
            with open(tmp, "rb") as fh:
                return fh.read()
    except KzlabelError:
        raise
    except av_errors() as exc:
        raise CorruptInput(f"video could not be re-encoded: {exc}") from None


def _encode_frame(out: Any, vout: Any, frame: Any, ops: list[FrameOp], index: int) -> None:
    av = need_av("video")
    if ops:
        yuv = frame.to_ndarray(format="yuv420p")
        t = float(frame.time) if frame.time is not None else index / float(vout.average_rate or 25)
        for op in ops:
            op(yuv, t, index)
        new = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        new.pts, new.time_base = frame.pts, frame.time_base
        frame = new
    else:
        frame.pict_type = av.video.frame.PictureType.NONE
    for packet in vout.encode(frame.reformat(format=vout.pix_fmt)):
        out.mux(packet)


def remux_with_tags(data: bytes, tags: Mapping[str, str]) -> bytes:
    """Stream-copy every stream into a new container of the same kind with ``tags`` added (no re-encoding)."""
    av = need_av("video")
    try:
        with temp_output(".kzvideo") as tmp:
            with av.open(io.BytesIO(data), metadata_errors="ignore") as inp:
                fmt = _out_format(inp)
                options = dict(_MUX_OPTIONS.get(fmt, {}))
                with av.open(tmp, "w", format=fmt, options=options) as out:
                    out.metadata.update(dict(inp.metadata) | dict(tags))
                    streams = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
                    for packet in inp.demux(*[s for s in inp.streams if s.index in streams]):
                        if packet.size == 0:  # the demuxer's end-of-stream marker
                            continue
                        packet.stream = streams[packet.stream.index]
                        out.mux(packet)
            with open(tmp, "rb") as fh:
                return fh.read()
    except av_errors() as exc:
        raise CorruptInput(f"could not write container tags: {exc}") from None


def read_tags(inp: Input) -> dict[str, str]:
    av = need_av("video")
    try:
        with av.open(source(inp), metadata_errors="ignore") as container:
            return {k: v for k, v in container.metadata.items()}
    except av_errors() as exc:
        raise CorruptInput(f"unreadable video: {exc}", source=inp.source) from None


def sample_frames(inp: Input, times: list[float], *, luma: bool = False) -> Iterator[tuple[float, np.ndarray]]:
    """Frames (RGB, or the luma plane) at or just after the given sorted times.

    Close times are reached by decoding forward; a seek happens only when the next time is more than a couple of
    seconds ahead, so sampling the opening seconds costs one short decode.
    """
    av = need_av("video")
    try:
        with av.open(source(inp), metadata_errors="ignore") as container:
            v = container.streams.video[0]
            v.thread_type = "AUTO"
            frames = container.decode(v)
            current: float | None = None
            for t in times:
                if current is None or t - current > 2.0:
                    target = int(t / float(v.time_base)) if v.time_base else 0
                    container.seek(max(target, 0), stream=v, backward=True, any_frame=False)
                    frames = container.decode(v)
                for frame in frames:
                    current = float(frame.time or 0.0)
                    if frame.time is None or frame.time + 1e-6 >= t:
                        if luma:
                            yield current, frame.to_ndarray(format="yuv420p")[: frame.height].copy()
                        else:
                            yield current, frame.to_ndarray(format="rgb24")
                        break
    except av_errors() as exc:
        raise CorruptInput(f"unreadable video: {exc}", source=inp.source) from None


def _luma(yuv: np.ndarray, height: int) -> np.ndarray:
    return yuv[:height]


# Video is watched in motion and re-encoded hard (CRF 28, downscaled): the mark runs at 3× the image strength, which
# keeps it under the coding noise of such re-encodes while surviving them (measured in benchmarks/bench_video.py).
VIDEO_STRENGTH = 3.0


def watermark_op(payload: bytes, key: bytes | None, height: int) -> FrameOp:
    """Embed the image watermark in every frame's luma plane (the mark is static, so averaging frames helps detection)."""
    from ..watermark import embed_image

    def op(yuv: np.ndarray, t: float, index: int) -> None:
        y = _luma(yuv, height)
        y[...] = embed_image(y, payload, key=key, strength=VIDEO_STRENGTH)

    return op


def detect_watermark(inp: Input, info: VideoInfo, key: bytes | None) -> Any:
    """Look for the mark in single frames from the opening seconds and a few later points, then in their average.

    Single-frame hits must beat the detector's threshold divided by the number of frames tried (Bonferroni), so
    trying many frames does not raise the false-positive rate.
    """
    from ..watermark import WatermarkResult, detect_image

    step = max(info.duration / 4, 0.5)
    times = [min(0.2 * i, max(info.duration - 0.05, 0.0)) for i in range(10)] + [step, 2 * step, 3 * step]
    times = sorted({round(t, 3) for t in times if t <= max(info.duration, 0.0)})
    lumas = [frame for _, frame in sample_frames(inp, times, luma=True)]
    if not lumas:
        return WatermarkResult(False, None, None, 1.0)
    tries = len(lumas) + 1
    best = WatermarkResult(False, None, None, 1.0)
    for y in lumas:
        result = detect_image(y, key=key)
        if result.payload is not None and result.p_value * tries < 1e-6:
            return WatermarkResult(True, result.payload, result.bits, min(1.0, result.p_value * tries))
        if result.p_value < best.p_value:
            best = result
    mean = np.mean(np.stack(lumas[: min(len(lumas), 16)]).astype(np.float32), axis=0)
    result = detect_image(np.clip(mean + 0.5, 0, 255).astype(np.uint8), key=key)
    if result.payload is not None and result.p_value * tries < 1e-6:
        return WatermarkResult(True, result.payload, result.bits, min(1.0, result.p_value * tries))
    return WatermarkResult(False, None, None, min(1.0, min(best.p_value, result.p_value) * tries))


# --- the burned-in warning ------------------------------------------------------------------------------------------
OPENING_S = 2.0  # the full-size warning covers the opening seconds (≥ 2 s), then the small persistent label takes over
PERSISTENT_FRACTION = 0.03  # persistent label: one line of short forms, text 3% of the shorter side
PRESENT_SCORE = 0.5  # pattern_score above which the warning counts as still there
_TO_DISPLAY = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}
_TO_STORED = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}
# BT.601 limited range, the matrix swscale uses for yuv420p
_RGB_TO_YUV = np.array([[0.257, 0.504, 0.098], [-0.148, -0.291, 0.439], [0.439, -0.368, -0.071]], dtype=np.float32).T
_YUV_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float32)


def _display_size(info: VideoInfo) -> tuple[int, int]:
    return (info.height, info.width) if info.rotation in (90, 270) else (info.width, info.height)


def _part_settings(part: str) -> dict[str, Any]:
    return {"fraction": visible.MIN_TEXT_FRACTION, "compact": False} if part == "opening" else {
        "fraction": PERSISTENT_FRACTION, "compact": True}


@dataclass
class _Overlay:
    """A rendered warning converted once to I420 planes plus alpha, at an even offset in the stored frame."""

    x: int
    y: int
    luma: np.ndarray
    alpha: np.ndarray
    chroma: np.ndarray  # (2, h/2, w/2): U and V
    alpha2: np.ndarray

    @classmethod
    def build(cls, plate: Image.Image, place: visible.Placement, info: VideoInfo) -> _Overlay:
        canvas = Image.new("RGBA", _display_size(info), (0, 0, 0, 0))
        canvas.paste(plate, place.box[:2])
        if info.rotation in _TO_STORED:  # frames are stored unrotated: draw upright as displayed, then turn back
            canvas = canvas.transpose(_TO_STORED[info.rotation])
        x0, y0, x1, y1 = canvas.getchannel("A").getbbox() or (0, 0, 2, 2)
        x0, y0 = x0 - x0 % 2, y0 - y0 % 2
        x1, y1 = min(x1 + x1 % 2, info.width - info.width % 2), min(y1 + y1 % 2, info.height - info.height % 2)
        rgba = np.asarray(canvas.crop((x0, y0, x1, y1)), dtype=np.float32)
        alpha = rgba[..., 3] / 255.0
        yuv = rgba[..., :3] @ _RGB_TO_YUV + _YUV_OFFSET
        h2, w2 = alpha.shape[0] // 2, alpha.shape[1] // 2
        alpha2 = alpha.reshape(h2, 2, w2, 2).mean(axis=(1, 3))
        weighted = (yuv[..., 1:] * alpha[..., None]).reshape(h2, 2, w2, 2, 2).sum(axis=(1, 3)) / 4.0
        chroma = np.moveaxis(weighted / np.maximum(alpha2, 1e-6)[..., None], -1, 0)
        return cls(x0, y0, yuv[..., 0], alpha, chroma, alpha2)

    def apply(self, yuv: np.ndarray, width: int, height: int) -> None:
        h, w = self.luma.shape
        y = yuv[self.y : self.y + h, self.x : self.x + w]
        y[...] = np.rint(y + self.alpha * (self.luma - y))
        if width % 2 or height % 2:
            return  # odd frame sizes have no simple I420 plane layout here: the warning is drawn in luma only
        for i, start in enumerate((height, height + height // 4)):
            plane = yuv[start : start + height // 4].reshape(height // 2, width // 2)
            c = plane[self.y // 2 : self.y // 2 + h // 2, self.x // 2 : self.x // 2 + w // 2]
            c[...] = np.rint(c + self.alpha2 * (self.chroma[i] - c))
            yuv[start : start + height // 4] = plane.reshape(height // 4, width)


def warning_op(label: Label, info: VideoInfo, opts: MarkOptions) -> tuple[FrameOp, dict[str, Any]]:
    """The frame operation that burns in the warning, and the record of it for the label."""
    dw, dh = _display_size(info)
    corner, _ = split_position(opts.position)
    parts = ("opening", "persistent") if opts.video_warning == "both" else (opts.video_warning,)
    overlays: dict[str, _Overlay] = {}
    record: dict[str, Any] = {"kind": "burned-in", "mode": opts.video_warning, "opening_s": OPENING_S, "parts": {}}
    for part in parts:
        plate, place = visible.render(label, dw, dh, corner=corner, style=opts.style, **_part_settings(part))
        overlays[part] = _Overlay.build(plate, place, info)
        entry = place.record(dw, dh, "")
        entry.pop("thumb")
        record["parts"][part] = entry
    opening, persistent = overlays.get("opening"), overlays.get("persistent")

    def op(yuv: np.ndarray, t: float, index: int) -> None:
        overlay = opening if opening is not None and t < OPENING_S else persistent
        if overlay is not None:
            overlay.apply(yuv, info.width, info.height)

    return op, record


def check_warning(inp: Input, info: VideoInfo, label: Label) -> LabelMatch:
    """Re-render each recorded part of the warning and look for it where it was drawn, in a frame where it shows."""
    record = label.warning or {}
    if record.get("kind") != "burned-in" or not isinstance(record.get("parts"), dict):
        return LabelMatch(None, None, "no burned-in warning recorded")
    parts = record["parts"]
    opening_s = float(record.get("opening_s", OPENING_S))
    end = max(info.duration - 0.05, 0.0)
    when = {"opening": min(opening_s / 2, end)}
    if "persistent" in parts:
        when["persistent"] = min(opening_s + 0.5, end) if "opening" in parts else min(info.duration / 2, end)
        if "opening" in parts and info.duration <= opening_s:
            del when["persistent"]  # the clip ends before the persistent label begins
    wanted = sorted((t, part) for part, t in when.items() if part in parts)
    frames = list(sample_frames(inp, [t for t, _ in wanted]))
    scores: dict[str, float] = {}
    for (_, part), (_, rgb) in zip(wanted, frames):
        shown = Image.fromarray(rgb)
        if info.rotation in _TO_DISPLAY:
            shown = shown.transpose(_TO_DISPLAY[info.rotation])
        entry = parts[part]
        try:
            size = [int(v) for v in entry["size"]]
            fx, fy, fw, fh = (float(v) for v in entry["box"])
            plate, _ = visible.render(label, size[0], size[1], corner=entry["corner"], style=entry["style"],
                                      **_part_settings(part))
        except (KeyError, TypeError, ValueError, KzlabelError):
            return LabelMatch(None, False, f"the {part} warning record is unreadable")
        w, h = shown.size
        box = (round(fx * w), round(fy * h), round((fx + fw) * w), round((fy + fh) * h))
        scores[part] = visible.pattern_score(np.asarray(shown.convert("L").crop(box)), plate)
    if not scores:
        return LabelMatch(None, None, "no frame to check the warning in")
    missing = [p for p, s in scores.items() if s < PRESENT_SCORE]
    detail = ", ".join(f"{p} warning {'missing' if p in missing else 'present'} (match {s:.2f})" for p, s in scores.items())
    return LabelMatch(None, not missing, detail)


# --- the soundtrack ---------------------------------------------------------------------------------------------------
TONE_POSITIONS = ("start", "end", "both")
# The watermark is embedded block by block with its grid offset, so one continuous pattern runs through the whole
# soundtrack while only one block is in memory. Blocks are whole tiles of the mark (see media_av.block_samples; measured:
# 2.048-s blocks lose the mark on 6 s of music, 3.072-s blocks find it at p ≈ 1e-16; across a boundary, 32-s blocks
# give p ≈ 1e-13, 30.72-s blocks 1e-17). Verification reads bounded excerpts: the opening seconds and the last ones.
AUDIO_BLOCK_TILES = 10
AUDIO_DETECT_S = 24.0
AUDIO_END_S = 4.0
# the source's codec is kept when it can be encoded here and the container takes it; otherwise the container's usual
_AUDIO_ENCODERS = {"aac": "aac", "opus": "libopus", "vorbis": "vorbis", "mp3": "libmp3lame", "mp3float": "libmp3lame",
                   "flac": "flac", "ac3": "ac3", "alac": "alac", "pcm_s16le": "pcm_s16le", "pcm_s24le": "pcm_s24le",
                   "pcm_f32le": "pcm_f32le"}
_AUDIO_FALLBACK = {"mp4": "aac", "mov": "aac", "matroska": "aac", "webm": "libopus"}
_LOSSLESS_AUDIO = {"flac", "alac", "pcm_s16le", "pcm_s24le", "pcm_f32le"}


def split_position(position: str | None) -> tuple[str, str | None]:
    """``MarkOptions.position`` for video → (corner of the burned-in warning, tone position of the soundtrack).

    Video takes a corner, a tone position (``start``/``end``/``both``, as for audio files) or both joined by a comma
    (``top-right,end``). A tone position is what asks for the soundtrack to be marked; without one it is copied.
    """
    corner, tone = "bottom-left", None
    for part in filter(None, (p.strip() for p in (position or "").split(","))):
        if part in visible.CORNERS:
            corner = part
        elif part in TONE_POSITIONS:
            tone = part
        else:
            raise KzlabelError(
                f"video position {position!r}: use a corner ({', '.join(visible.CORNERS)}), a soundtrack tone "
                f"position ({', '.join(TONE_POSITIONS)}) or both, e.g. 'top-right,start'"
            )
    return corner, tone


def _audio_encoder(codec: str, fmt: str, out: Any) -> str:
    name = _AUDIO_ENCODERS.get(codec, "")
    if name not in need_av("video").codecs_available or name not in out.supported_codecs:
        name = _AUDIO_FALLBACK.get(fmt, "aac")
    return name


class _Soundtrack:
    """One audio stream decoded, toned, watermarked and re-encoded in blocks of :data:`AUDIO_BLOCK_TILES` tiles.

    Blocks are processed as packets arrive (interleaved with the video), so memory holds one block; with a tone at
    the end, the last tone's length is held back until the stream ends so it can be mixed over the final samples.
    The tone is mixed over the soundtrack rather than inserted before it, as for audio files, because inserting it
    would put sound and picture out of sync.
    """

    def __init__(self, out: Any, stream: Any, fmt: str, plan: SoundtrackPlan) -> None:
        av = need_av("video")
        ctx = stream.codec_context
        self.out, self.plan = out, plan
        self.layout = layout_name(ctx)
        self.channels = len(av.AudioLayout(self.layout).channels)
        encoder = _audio_encoder(ctx.name, fmt, out)
        rates = av.codec.Codec(encoder, "w").audio_rates
        self.rate = int(ctx.sample_rate) if not rates or ctx.sample_rate in rates else 48000
        self.stream = out.add_stream(encoder, rate=self.rate, layout=self.layout)
        if encoder == "vorbis":
            self.stream.codec_context.options = {"strict": "experimental"}
        if encoder not in _LOSSLESS_AUDIO:
            self.stream.bit_rate = int(ctx.bit_rate or stream.bit_rate or 128_000)
        self.stream.metadata.update(dict(stream.metadata))  # language, title
        self.resampler = av.AudioResampler(format="flt", layout=self.layout, rate=self.rate)
        self.tone_n = int(round(audible.tone_seconds() * self.rate))
        self.block_n = block_samples(self.rate, AUDIO_BLOCK_TILES)  # ≥ the mark's 2-s minimum
        self.hold = self.tone_n if plan.tone_at in ("end", "both") else 0
        from ..watermark.audio import MIN_RELIABLE_RATE

        # too narrow a band cannot carry the mark reliably (too short a soundtrack: embed_audio says so, see _process)
        self.payload = plan.payload if self.rate >= MIN_RELIABLE_RATE else None
        self.chunks: list[np.ndarray] = []
        self.buffered = 0
        self.done = 0  # samples already encoded
        self.pts: int | None = None

    def push(self, packet: Any) -> None:
        for frame in packet.decode():
            if self.pts is None:
                self.pts = int(round(float(frame.time) * self.rate)) if frame.time is not None else 0
            self._add(self.resampler.resample(frame))
        while self.buffered >= self.block_n + self.hold:
            self._process(self._take(self.block_n), last=False)

    def finish(self) -> None:
        self._add(self.resampler.resample(None))
        rest = self._take(self.buffered)
        if len(rest) or self.done:
            self._process(rest, last=True)
        for packet in self.stream.encode(None):
            self.out.mux(packet)

    def _add(self, frames: list[Any]) -> None:
        for f in frames:
            self.chunks.append(f.to_ndarray().reshape(-1, self.channels))
            self.buffered += len(self.chunks[-1])

    def _take(self, n: int) -> np.ndarray:
        whole = np.concatenate(self.chunks) if self.chunks else np.zeros((0, self.channels), np.float32)
        self.chunks = [whole[n:]] if n < len(whole) else []
        self.buffered = len(whole) - n
        return whole[:n]

    def _process(self, block: np.ndarray, *, last: bool) -> None:
        block = np.array(block, dtype=np.float32)  # writable copy
        at = self.plan.tone_at
        if at in ("start", "both") and self.done == 0:
            _mix_tone(block, self.rate, end=False)
        if at in ("end", "both") and last:
            _mix_tone(block, self.rate, end=True)
        if self.payload is not None and len(block):
            from ..watermark import embed_audio

            try:
                block = embed_audio(block, self.rate, self.payload, key=self.plan.key, offset_s=self.done / self.rate)
            except CapacityError:  # the whole soundtrack too short to carry a mark that reads back: left unmarked
                pass
        self.pts = mux_samples(self.out, self.stream, block, self.layout, self.rate, self.pts or 0)
        self.done += len(block)


# Mixed over content at its usual level (6 dB under the content) the tone's rhythm drowns in busy music or speech
# (matched-filter scores 0.61–0.80 against the 0.75 threshold); ducking the content 15 dB under the tone's 1.4 s gives
# 0.88–0.95 on the music, speech and noise fixtures, and keeps the content audible beneath the tone.
DUCK_DB = 15.0
DUCK_RAMP_S = 0.05


def _mix_tone(block: np.ndarray, rate: int, *, end: bool) -> None:
    """Duck the first (or last) 1.4 s of ``block`` and add the "AI" tone over it, at a level set by the content."""
    tone = audible.tone(rate, block.shape[1], 1.0)[: len(block)]
    n = len(tone)
    if n == 0:
        return
    around = block[-max(n, 10 * rate) :] if end else block[: max(n, 10 * rate)]
    tone *= audible.level_for(around)
    ramp = min(int(DUCK_RAMP_S * rate), n // 2)
    weight = np.ones(n, np.float32)  # 1 where the content is ducked, raised-cosine edges
    if ramp:
        edge = (0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, ramp))).astype(np.float32)
        weight[:ramp], weight[n - ramp :] = edge, edge[::-1]
    gain = 1.0 - (1.0 - 10 ** (-DUCK_DB / 20)) * weight
    seg = block[len(block) - n :] if end else block[:n]
    np.clip(seg * gain[:, None] + tone, -1.0, 1.0, out=seg)


def check_soundtrack(inp: Input, key: bytes | None) -> Findings:
    """The audio watermark and the "AI" tone in bounded excerpts of the first audio stream, as audio files report
    them: the opening :data:`AUDIO_DETECT_S` seconds (tone at the start, watermark) and the last :data:`AUDIO_END_S`
    (tone at the end). An undecodable soundtrack is reported as unchecked, not as an error: the picture still counts.
    """
    from ..watermark import detect_audio
    from ..watermark.audio import MIN_SECONDS

    try:
        opening = read_audio(source(inp), AUDIO_DETECT_S)
        if opening is None:
            return Findings()
        samples, rate = opening
        skip = int(audible.tone_seconds() * rate)  # the ducked tone carries the mark too, but the content is better
        mark = detect_audio(samples, rate, key=key)
        if not mark.found and len(samples) > skip + MIN_SECONDS * rate:
            mark = detect_audio(samples[skip:], rate, key=key)
        tone = audible.detect(samples, rate, "start") >= audible.THRESHOLD
        if not tone:
            closing = (samples, rate) if len(samples) < AUDIO_DETECT_S * rate else read_audio(source(inp), AUDIO_END_S, from_end=True)
            tone = closing is not None and audible.detect(closing[0], closing[1], "end") >= audible.THRESHOLD
    except av_errors():
        return Findings()
    return Findings(watermark=mark, warning_found=bool(tone))


class _VideoHandler(Handler[VideoDoc]):
    layers: frozenset[Layer] = frozenset(LAYERS)
    container: str = ""

    def load(self, inp: Input, limits: Limits) -> VideoDoc:
        return VideoDoc(inp, probe(inp, limits, self.id))

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
            raise CapacityError(f"{doc.info.width}×{doc.info.height} frames are too small for the watermark (min 256 px)")
        doc.ops.append(watermark_op(payload, key, doc.info.height))
        doc.soundtrack.payload, doc.soundtrack.key = payload, key  # used only if encode() is asked to mark the audio

    def encode(self, doc: VideoDoc, opts: MarkOptions, out: Path) -> None:
        plan = doc.soundtrack
        if split_position(opts.position)[1] is None or not doc.info.has_audio:
            plan = SoundtrackPlan()  # the soundtrack is copied untouched
        if not doc.ops:  # neither the warning nor the watermark (both of which the soundtrack's layers ride on)
            with doc.inp.open() as fh, open(out, "wb") as dest:
                shutil.copyfileobj(fh, dest, 1 << 20)
            return
        out.write_bytes(transcode(source(doc.inp), doc.ops, doc.info, soundtrack=plan))

    def bind(self, doc: VideoDoc, out: Path) -> Mapping[str, Any]:
        return dict(doc.label_fields)

    def write_metadata(self, out: Path, label: Label, token: str) -> None:
        tags = {TAG_AIGC: label.aigc_json(token), TAG_LABEL: token, TAG_SOURCE: label.source_type}
        if label.system:
            tags["AISystemUsed"] = label.system + (f" {label.system_version}" if label.system_version else "")
        if label.training == Training.NOT_ALLOWED:
            tags |= container_tags(TrainingPolicy.from_lists(deny=["all"]))
        rewrite(out, lambda data: remux_with_tags(data, tags))

    def inspect(self, inp: Input, limits: Limits, key: bytes | None) -> Findings:
        info = probe(inp, limits, self.id)
        tags = {k.lower(): v for k, v in read_tags(inp).items()}
        tokens = [("container tag kzlabel", tags[TAG_LABEL.lower()])] if TAG_LABEL.lower() in tags else []
        fields = {k: tags[k.lower()] for k in (TAG_AIGC, TAG_SOURCE) if k.lower() in tags}
        mark = detect_watermark(inp, info, key) if "watermark" in self.layers else None
        parts = {"audio": check_soundtrack(inp, key)} if info.has_audio else {}
        return Findings(tokens=tokens, fields=fields, watermark=mark, state=(inp, info), parts=parts)

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        inp, info = findings.state
        return check_warning(inp, info, label)

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
