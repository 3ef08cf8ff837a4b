"""PyAV plumbing of the video handlers: probing, container tags, frame sampling and the per-frame watermark.

Frames are handled as I420 arrays (:data:`FrameOp`); tags are written by a stream-copy remux, so a tag edit never
re-encodes.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Any

import numpy as np

from ...errors import CorruptInput, KzlabelError, LimitExceeded, UnsupportedFormat
from ...io import Input, Limits
from ...media_av import av_errors, need_av, source, temp_output
from ...watermark.core import P_THRESHOLD

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


def chroma_planes(yuv: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The U and V planes ((H/2)×(W/2) views: writes land in ``yuv``) of an I420 frame held as one (H*3/2, W) array.

    U and V are packed row after row behind Y, not one plane row per array row: a 270-row frame's U plane ends
    halfway through an array row, so slicing H/4 array rows fails there (``cannot reshape``); the planes are cut from
    the flat buffer instead. ``width`` and ``height`` even."""
    flat, n = yuv.reshape(-1), (height // 2) * (width // 2)
    start = height * width
    return (
        flat[start : start + n].reshape(height // 2, width // 2),
        flat[start + n : start + 2 * n].reshape(height // 2, width // 2),
    )


# --- the frame watermark -----------------------------------------------------------------------------------------
# The image mark (kzlabel.watermark) spreads 256 chips over each side of whatever picture it is given. On a video
# frame that is too fine for what platforms do: a 720×1280 frame scaled to 270×480 left chips 1.05 px wide, a
# 1280×720 frame scaled to 240 px high chips 0.94 px high, and a CRF 28-32 re-encode wiped them out (unlabelled).
# So the frame's luma is shrunk into one cell of a mosaic of copies (TILES_SHORT down the shorter side, TILES_LONG
# along a long one) and the image mark is embedded in the mosaic: its 32-chip tile divides a cell, so every copy
# carries the same residual, and one copy's residual is scaled back up to the frame. The frame then holds 64 chips
# across its shorter side and 128 (or 64) along the longer: ≥ 3.75 × 3.3 px a chip at 240 px on the shorter side.
# Detection rebuilds the mosaic from the frame it gets (a rescale keeps the aspect ratio, so the layout is found
# again), and the image detector then sees its own layout.
VIDEO_STRENGTH = 3.0  # × the image mark's amplitude in flat areas (see TEXTURE_BOOST for texture)
TILES_SHORT, TILES_LONG = 4, 2  # copies down the shorter side; along the longer when it is ≥ LONG_FROM × shorter
LONG_FROM = 1.7  # 16:9 and wider get near-square chips (4 × 2 copies); 4:3, 3:2 and square frames 4 × 4
MOSAIC = 512  # px a side: 2 px a chip of the image mark's 256-chip canvas whatever the frame size (a 4K frame is
# marked at the cost of a 480p one), and 0.26 Mpx, above any still-image size floor of the image mark
# The image mark's strength map lives on its canvas, here cells of ~11 px on a 720p frame: where a cell straddles
# texture and a flat area (a ridge against the sky) the texture's amplitude spilled over into the flat side as a
# visible halo. Capping the amplitude by the frame's own local activity (the image mark's texture rule, floor +
# gain × activity, at pixel scale) removed it: PSNR 38.4 → 41.4 dB on the benchmark's 720p landscape frame.
_CAP_FLOOR, _CAP_GAIN = 0.7, 0.3
CAP_SIDE = 960  # the cap is computed at half the frame's size, at most this many px a side
# Texture takes more than flat areas before it shows: the mosaic is marked 1.5× stronger and the cap (computed at
# VIDEO_STRENGTH) keeps flat areas where they were. Scaled to 240 px at CRF 32, the benchmark's panning 480×270 clip
# went from p 2e-4 / 3e-3 (two payloads) to 7e-7, and a 1280×720 one under the burned-in warning from not found
# (p 3e-7, the payload undecodable) to found (p ≤ 9e-8); for 1.2-1.9 dB of PSNR, spent in texture.
TEXTURE_BOOST = 1.5
PAD_FRACTION = 0.35  # padded view: the frame spans this fraction of each side (see padded_view)
DETECT_OPENING_S, DETECT_FRAMES = 2.0, 48  # the opening frames averaged for detection


def tiles(height: int, width: int) -> tuple[int, int]:
    """Copies of the frame (down, across) in the mosaic the mark is embedded in and looked for."""
    short, long_ = TILES_SHORT, TILES_LONG if max(height, width) >= LONG_FROM * min(height, width) else TILES_SHORT
    return (short, long_) if height <= width else (long_, short)


def _mosaic(y: np.ndarray) -> np.ndarray:
    """The frame (uint8, or float32 for an average of frames) shrunk to one cell of the MOSAIC×MOSAIC mosaic."""
    import cv2

    ty, tx = tiles(*y.shape)
    return cv2.resize(y, (MOSAIC // tx, MOSAIC // ty), interpolation=cv2.INTER_AREA)


def _cap(y: np.ndarray, size: tuple[int, int], strength: float) -> np.ndarray:
    """Largest amplitude per pixel of ``y`` shrunk to ``size`` (w, h): the image mark's texture rule (floor + gain ×
    local activity) at pixel scale."""
    import cv2

    small = cv2.resize(y, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    hp = cv2.subtract(small, cv2.blur(small, (3, 3)))
    act = cv2.sqrt(cv2.blur(cv2.multiply(hp, hp), (5, 5)))
    return cv2.add(cv2.multiply(act, _CAP_GAIN * strength), _CAP_FLOOR * strength)


def embed_frame(y: np.ndarray, payload: bytes, key: bytes | None, strength: float = VIDEO_STRENGTH) -> np.ndarray:
    """A luma plane (H×W uint8) carrying ``payload`` on the video chip grid (see above).

    The residual is capped at half the frame's resolution, at most CAP_SIDE px a side (fine enough to keep it off a
    flat area next to texture: the chips are ≥ 7 px there) and scaled up once."""
    import cv2

    from ...watermark import embed_image

    small = _mosaic(y)
    ch, cw = small.shape
    # no still-image floor (min_pixels=0): the mosaic is 0.26 Mpx whatever the frame, and verify averages frames
    mosaic = np.tile(small, tiles(*y.shape))
    marked = embed_image(mosaic, payload, key=key, strength=strength * TEXTURE_BOOST, min_pixels=0, informed=False)
    resid = cv2.subtract(marked[:ch, :cw], small, dtype=cv2.CV_32F)
    h, w = y.shape
    f = min(0.5, CAP_SIDE / max(h, w))
    half = (max(round(w * f), 1), max(round(h * f), 1))
    cap = _cap(y, half, strength)
    resid = cv2.resize(resid, half, interpolation=cv2.INTER_LINEAR)
    resid = cv2.max(cv2.min(resid, cap), cv2.multiply(cap, -1.0))
    full = cv2.resize(resid, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.add(y, full, dtype=cv2.CV_8U)  # saturating, rounded


def _stretched(cell: np.ndarray) -> np.ndarray:
    """Only the detail of a shrunk picture, each part scaled to the same local contrast, around grey (float32).

    After CRF 32 at 240 px the mark is a fraction of a grey level: rounding the shrunk frame to integers buried it
    (p 5e-14 on a key frame; stretched ×4, 1e-22). The stretch is local (a 9-px high-pass over its 7-px RMS, the
    detector's own whitening) because one global gain was set by the burned-in warning's text edges, which left
    the rest of the frame unstretched. The detector whitens its input anyway, so nothing else changes."""
    import cv2

    hp = cv2.subtract(cell, cv2.blur(cell, (9, 9), borderType=cv2.BORDER_REFLECT))
    rms = cv2.sqrt(cv2.blur(cv2.multiply(hp, hp), (7, 7), borderType=cv2.BORDER_REFLECT))
    w = cv2.divide(hp, cv2.add(rms, 0.05))
    return cv2.add(cv2.multiply(cv2.min(cv2.max(w, -3.5), 3.5), 32.0), 128.0)


def mosaic_view(y: np.ndarray) -> np.ndarray:
    """The mosaic of a frame (uint8, or float32 for an average of frames), as embedded, for the image detector."""
    cell = _stretched(_mosaic(y.astype(np.float32, copy=False)))
    return np.clip(np.rint(np.tile(cell, tiles(*y.shape))), 0, 255).astype(np.uint8)


def padded_view(y: np.ndarray) -> np.ndarray:
    """The frame shrunk into the middle of a grey MOSAIC×MOSAIC picture (PAD_FRACTION of each side), for a cropped
    video.

    A crop leaves a fraction of a copy at the frame's edges, so a mosaic of it no longer joins up (a 10% crop gave
    p = 1). Shrunk so, 1.3 to 4.5 copies of the mark's tile across the frame span 71 to 20 of the detector's 256
    canvas px, inside the 18-73 it searches, and its own crop search finds the lattice: the 9:16 centre cut of a
    16:9 clip (31.6% of the width kept), 60% of the width, 75% of each side, and 480p with 10% cropped at CRF 28
    gave p ≤ 4e-9 (mosaic: 1)."""
    import cv2

    h, w = round(MOSAIC * PAD_FRACTION), round(MOSAIC * PAD_FRACTION)
    cell = _stretched(cv2.resize(y.astype(np.float32, copy=False), (w, h), interpolation=cv2.INTER_AREA))
    view = np.full((MOSAIC, MOSAIC), 128.0, np.float32)
    r0, c0 = (MOSAIC - h) // 2, (MOSAIC - w) // 2
    view[r0 : r0 + h, c0 : c0 + w] = cell
    return np.clip(np.rint(view), 0, 255).astype(np.uint8)


def watermark_op(payload: bytes, key: bytes | None, height: int) -> FrameOp:
    """Embed the mark in every frame's luma plane (the mark is static: averaging frames helps detection)."""

    def op(yuv: np.ndarray, t: float, index: int) -> None:
        y = _luma(yuv, height)
        y[...] = embed_frame(y, payload, key)

    return op


def _detection_frames(
    inp: Input, info: VideoInfo, opening_too: bool = True
) -> tuple[np.ndarray | None, list[np.ndarray], list[np.ndarray]]:
    """(the mean luma of the opening frames, single frames worth a look on their own, the opening frames shrunk for
    :mod:`.motion`: only with ``opening_too``, for a caller that reads the panned view).

    A re-encoder carries a static mark best in its key frames: in the P and B frames after one, motion compensation
    drags the mark along with the moving content and CRF 32 does not correct it (on a panning clip: p 5e-14 in the
    key frame, 1e-2 a dozen frames later). So the singles are the first frame, the opening's other key frames and
    the key frame at or before each quarter of the video (one decoded frame per seek).
    """
    import cv2

    from . import motion

    av = need_av("video")
    total: np.ndarray | None = None
    count, singles, seen = 0, list[np.ndarray](), set[int]()  # seen: the singles' timestamps
    opening: list[np.ndarray] = []
    try:
        with av.open(source(inp), metadata_errors="ignore") as container:
            v = container.streams.video[0]
            v.thread_type = "AUTO"
            for frame in container.decode(v):
                if count >= DETECT_FRAMES or (frame.time is not None and frame.time > DETECT_OPENING_S):
                    break
                y = frame.to_ndarray(format="yuv420p")[: frame.height]
                if total is not None and y.shape != total.shape:
                    break  # the frame size changed mid-stream: the opening before it is averaged
                total = y.astype(np.float32) if total is None else cv2.add(total, y, dtype=cv2.CV_32F)
                if opening_too:
                    opening.append(motion.shrunk(y))
                count += 1
                if (count == 1 or frame.key_frame) and len(singles) < 3:
                    singles.append(y.copy())
                    seen.add(frame.pts)
            for t in [info.duration * k / 4 for k in (1, 2, 3)] if info.duration > 2 * DETECT_OPENING_S else []:
                container.seek(int(t / float(v.time_base)) if v.time_base else 0, stream=v, backward=True)
                frame = next(container.decode(v), None)
                if frame is None or frame.pts in seen or total is None:
                    continue
                y = frame.to_ndarray(format="yuv420p")[: frame.height]
                if y.shape == total.shape:
                    singles.append(y.copy())
                    seen.add(frame.pts)
    except av_errors() as exc:
        raise CorruptInput(f"unreadable video: {exc}", source=inp.source) from None
    return (None if total is None else total / count), singles, opening


def _moving_view(mean: np.ndarray, first: np.ndarray, opening: list[np.ndarray]) -> np.ndarray:
    """The picture for moving content: where the content pans, the first (key) frame plus what stays on the frame
    grid (:func:`.motion.panned_view`); else the opening's mean with its first frame counted as much as all the
    others (see :func:`detect_watermark`). Which one is decided by the frames alone, not the key: one try either way."""
    from . import motion

    panned = motion.panned_view(opening) if opening else None
    return mosaic_view((mean + first) * 0.5 if panned is None else panned)


def detection_pictures(inp: Input, info: VideoInfo, *, panned: bool = True) -> list[Callable[[], np.ndarray]]:
    """The pictures :func:`detect_watermark` reads, in order, each made when its turn comes (a hit returns before the
    later ones cost anything); their number is the Bonferroni count. Empty for a video without frames.
    ``panned=False``: the weighted mean always, never the panned view (see :func:`detect_watermark`)."""
    mean, singles, opening = _detection_frames(inp, info, opening_too=panned)
    if mean is None:
        return []
    legacy = np.clip(mean + 0.5, 0, 255).astype(np.uint8)
    pictures: list[Callable[[], np.ndarray]] = [partial(mosaic_view, mean), partial(padded_view, mean)]
    pictures += [partial(mosaic_view, y) for y in singles]
    pictures.append(partial(_moving_view, mean, singles[0], opening))
    if len(singles) > 1:  # key frames from different parts of the video: the same mark over other content
        pictures.append(partial(mosaic_view, np.mean(np.stack(singles).astype(np.float32), axis=0)))
    pictures.append(partial(np.asarray, legacy))
    return pictures


def detect_watermark(
    inp: Input, info: VideoInfo, key: bytes | None, *, list_decoding: bool = True, panned: bool = True
) -> Any:
    """Look for the mark in the mean of the opening frames (as a mosaic, then padded for a crop), in single key
    frames, in one picture for moving content, and (marks made before the video chip grid) in the mean as one
    picture (:func:`detection_pictures`).

    In a panning clip the re-encoder's P frames drag the key frame's mark along with the content, so the plain mean
    blurs it (pilot z 5.9-6.9 against 7.5-9 in the key frame, 240 px, CRF 32), while they still carry some of the
    static mark the key frame lacks. Weighted as much as the key frame, their mean put the payload among the 3 best
    paths on twelve panning clips at CRF 32 (1280×720 and 480×270 at 240 px, 480×270 full size), where the key frame
    alone had it up to 32nd or not in 1024 paths, and the plain mean up to 227th or not in 1024 (4 clips). Where the
    content pans, the key frame plus the frames' static part, the content taken out (:mod:`.motion`), reads more:
    the payload from 23 of 24 such clips (480×270 at 240 px, CRF 32), the weighted mean 20 (the same files). That
    picture replaces the weighted mean when the content pans, so the count of pictures is unchanged.
    ``panned=False`` keeps the weighted mean: the rate-match check's margin stays what it was.

    A hit must beat the detector's threshold divided by the number of pictures tried (Bonferroni), so trying several
    does not raise the false-positive rate above the image mark's 1e-6. On 1200 tries with random keys over eight
    unmarked clips (mosaic and padded views) the smallest p was 0.25. ``list_decoding``: see
    :func:`kzlabel.watermark.detect_image` (the rate-match check reads without it, to keep its margin).
    """
    from ...watermark import WatermarkResult, detect_image
    from ...watermark.image import payload_pvalue

    pictures = detection_pictures(inp, info, panned=panned)
    if not pictures:
        return WatermarkResult(False, None, None, 1.0)
    # Under H0 a picture yields a MAC-verified payload with probability ≤ payload_pvalue (its pilot gates every
    # decode), so a payload from any of the pictures tried has p ≤ tries × min(its p, that). The picture's own p
    # counts the MAC without the gate, which over four pictures rejected key frames read right (p 7e-7 × 4). A
    # picture that passes on its own p is returned as before; one that passes only by the gate is kept while the
    # other pictures are tried, so a stronger read (the rate-match check wants p ≤ 1e-8) is not cut short.
    tries, best, gated = len(pictures), 1.0, payload_pvalue(list_decoding)
    fallback: WatermarkResult | None = None
    for picture in pictures:
        result = detect_image(picture(), key=key, list_decoding=list_decoding)
        if result.payload is not None and result.p_value * tries < P_THRESHOLD:
            return WatermarkResult(True, result.payload, result.bits, min(1.0, result.p_value * tries))
        if result.payload is not None and fallback is None and gated * tries < P_THRESHOLD:
            fallback = WatermarkResult(True, result.payload, result.bits, gated * tries)
        best = min(best, result.p_value)
    if fallback is not None:
        return fallback
    return WatermarkResult(False, None, None, min(1.0, best * tries), unreadable=best * tries < P_THRESHOLD)
