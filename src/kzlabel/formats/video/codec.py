"""PyAV plumbing of the video handlers: probing, container tags, frame sampling and the per-frame watermark.

Frames are handled as I420 arrays (:data:`FrameOp`); tags are written by a stream-copy remux, so a tag edit never
re-encodes.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ...errors import CorruptInput, KzlabelError, LimitExceeded, UnsupportedFormat
from ...io import Input, Limits
from ...media_av import av_errors, need_av, source, temp_output

# A per-frame operation: (I420 frame as one (H*3/2, W) uint8 array — Y plane on top, then U and V —, time in
# seconds, frame index) → modifies the array in place. Working in YUV saves two colour conversions per frame, and
# both the watermark (luma) and the warning overlay (pre-converted once) are cheapest there.
FrameOp = Callable[[np.ndarray, float, int], None]

TAG_AIGC = "AIGC"
TAG_LABEL = "kzlabel"
TAG_SOURCE = "DigitalSourceType"
# Muxer options per output container. Matroska/WebM draw random segment and track UIDs unless bitexact is set, so
# marking the same input twice (or as a path, bytes and a file object) gave different bytes; MP4/MOV write none.
MUX_OPTIONS: dict[str, dict[str, str]] = {
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
        raise UnsupportedFormat(
            f"{info.width}×{info.height} frames: odd frame sizes are not supported", source=inp.source, format=fmt_id
        )
    if info.width * info.height > min(limits.max_pixels, 8192 * 4352):
        raise LimitExceeded(f"{info.width}×{info.height} frames are over the limit", source=inp.source, format=fmt_id)
    if info.duration > limits.max_duration_s:
        raise LimitExceeded(
            f"{info.duration:.0f} s is over the {limits.max_duration_s:.0f} s limit", source=inp.source, format=fmt_id
        )
    return info


def out_format(container: Any) -> str:
    names = container.format.name.split(",")
    if "mov" in names and container.metadata.get("major_brand", "").strip() == "qt":
        return "mov"
    if "mp4" in names or "mov" in names:
        return "mp4"
    if "webm" in names and any(s.codec_context.name in ("vp8", "vp9", "av1") for s in container.streams.video):
        return "webm"
    return "matroska"


def remux_with_tags(data: bytes, tags: Mapping[str, str]) -> bytes:
    """Stream-copy every stream into a new container of the same kind with ``tags`` added (no re-encoding)."""
    av = need_av("video")
    try:
        with temp_output(".kzvideo") as tmp:
            with av.open(io.BytesIO(data), metadata_errors="ignore") as inp:
                fmt = out_format(inp)
                options = dict(MUX_OPTIONS.get(fmt, {}))
                with av.open(tmp, "w", format=fmt, options=options) as out:
                    out.metadata.update(dict(inp.metadata) | dict(tags))
                    streams = {
                        s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")
                    }
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
    """Embed the image watermark in every frame's luma plane (the mark is static: averaging frames helps detection)."""
    from ...watermark import embed_image

    def op(yuv: np.ndarray, t: float, index: int) -> None:
        y = _luma(yuv, height)
        # no still-image pixel floor: the handler keeps frames >= 256 px, and verify averages up to 16 frames
        y[...] = embed_image(y, payload, key=key, strength=VIDEO_STRENGTH, min_pixels=0)

    return op


def detect_watermark(inp: Input, info: VideoInfo, key: bytes | None) -> Any:
    """Look for the mark in single frames from the opening seconds and a few later points, then in their average.

    Single-frame hits must beat the detector's threshold divided by the number of frames tried (Bonferroni), so
    trying many frames does not raise the false-positive rate.
    """
    from ...watermark import WatermarkResult, detect_image

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
