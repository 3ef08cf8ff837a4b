"""One pass over a video for its content binding (``kz-video-2``): the coded packets, and, when asked, every decoded
frame and the soundtrack's samples.

- Packets: a SHA-256 of the video stream's decoding setup (codec, extradata, size, pixel format, colour and aspect
  parameters, time base) and every packet's data with its timing (pts, dts, duration, key flag) and side data, in
  order; one of the first audio stream's (its setup: codec, extradata, rate, layout, priming delay); and a 4-byte
  digest of each segment's video packet data (by presentation time). Decoding is deterministic, so an identical
  setup and packets mean identical frames and samples: verify of an unchanged file needs no decode at all. (The
  setup and timing are in the digest because the container, not the packets, carries them: a flipped Matroska
  CodecDelay shifts the Opus samples the same packets decode to — bench_byteflip.py found it.) ``layout``: the
  audio and video streams the container offers a player, in order (an added or removed track).
- Frames (``video=True``): each decoded frame's planes hashed as decoded (no colour conversion, so no swscale
  version enters the digest), folded into one SHA-256 and a 4-byte digest per segment; and each frame area-averaged
  by swscale to a small picture for the frame fingerprint (:mod:`kzlabel.fingerprint.frames`).
- Sound (``audio=True``): the soundtrack's samples into a :class:`~kzlabel.fingerprint.SoundPrint`.

A packet that no longer decodes (damaged data) is recorded and skipped, so a damaged stream is reported, not refused.
Measured cost per decoded frame on the 2-core machine: 1080p H.264 decode ~4.6 ms, plane digest ~2.3 ms, swscale
to 64 × 64 ~1.1 ms; at 640 × 360 ~0.6 + 0.2 + 0.4 ms.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import CorruptInput, KzlabelError
from ...fingerprint import SoundPrint
from ...fingerprint.common import SEG_DIGEST
from ...fingerprint.frames import FINE, FrameTrack, MaskPlan
from ...io import Input
from ...media_av import av_errors, layout_name, need_av, source

# planar formats whose planes are hashed as decoded; others (packed, semi-planar) are converted to yuv444p first
_PLANAR = {
    "yuv420p": 1,
    "yuvj420p": 1,
    "yuv422p": 1,
    "yuvj422p": 1,
    "yuv444p": 1,
    "yuvj444p": 1,
    "gray": 1,
    "yuv420p10le": 2,
    "yuv422p10le": 2,
    "yuv444p10le": 2,
    "yuv420p12le": 2,
    "gray10le": 2,
}


@dataclass
class Scan:
    """What one pass read (see the module docstring); digests are hex (whole) or 4 bytes (per segment)."""

    seg_s: float
    layout: str = ""
    video_packets: str = ""
    audio_packets: str | None = None
    packet_bytes: dict[int, int] = field(default_factory=dict)  # segment → bytes of video packets
    seg_packets: dict[int, bytes] = field(default_factory=dict)
    frames: FrameTrack | None = None
    pixels: str | None = None
    seg_pixels: dict[int, bytes] = field(default_factory=dict)
    frame_count: int = 0
    sound: SoundPrint | None = None
    damaged: list[float] = field(default_factory=list)  # when video packets that no longer decode were due
    damaged_audio: list[float] = field(default_factory=list)

    def segment(self, t: float) -> int:
        return max(int(np.floor(t / self.seg_s + 1e-9)), 0)


def frame_digest(frame: Any) -> bytes:
    """SHA-256 of a decoded frame's planes, row by row without the line padding (which is not part of the picture)."""
    name = frame.format.name
    if name not in _PLANAR:
        frame, name = frame.reformat(format="yuv444p"), "yuv444p"
    sha = hashlib.sha256(f"{name}:{frame.width}x{frame.height}:".encode())
    size = _PLANAR[name]
    for plane in frame.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width * size]
        sha.update(np.ascontiguousarray(rows).data)
    return sha.digest()


def _setup(stream: Any) -> bytes:
    """What, besides its packets, decides how a stream decodes and shows (see the module docstring)."""
    ctx = stream.codec_context
    if ctx is None:  # a stream listed without codec parameters
        return repr([stream.type, None]).encode()
    fields: list[object] = [stream.type, ctx.name, stream.time_base, getattr(ctx, "delay", 0)]
    if stream.type == "video":
        fields += [ctx.width, ctx.height, ctx.pix_fmt, ctx.sample_aspect_ratio]
        fields += [getattr(ctx, k, None) for k in ("color_range", "colorspace", "color_primaries", "color_trc")]
    else:
        fields += [ctx.sample_rate, layout_name(ctx)]
    return repr(fields).encode() + bytes(ctx.extradata or b"")


def _timing(packet: Any) -> bytes:
    """A packet's timing, key flag and side data (e.g. Opus ``skip_samples``; PyAV 13+ reads side data)."""
    side = getattr(packet, "iter_sidedata", None)
    extra = b"".join(str(getattr(d, "data_type", "")).encode() + bytes(d) for d in side()) if side else b""
    return repr((packet.pts, packet.dts, packet.duration, packet.is_keyframe)).encode() + extra


def _display(small: np.ndarray, rotation: int) -> np.ndarray:
    """A (3, h, w) picture in stored orientation as viewers see it (rotation counter-clockwise, as PIL's)."""
    return np.rot90(small, k=(rotation // 90) % 4, axes=(1, 2)) if rotation % 360 else small


def scan(
    inp: Input,
    seg_s: float,
    *,
    rotation: int = 0,
    plan: MaskPlan | None = None,
    video: bool = False,
    audio: bool = False,
) -> Scan:
    """Read every packet of the first video stream (and the first audio stream); decode them when asked."""
    av = need_av("video")
    out = Scan(seg_s)
    seg_sha: dict[int, Any] = defaultdict(hashlib.sha256)
    pix_sha: dict[int, Any] = defaultdict(hashlib.sha256)
    whole = hashlib.sha256()
    try:
        with av.open(source(inp), metadata_errors="ignore") as container:
            v = container.streams.video[0]
            v.thread_type = "AUTO"
            a = container.streams.audio[0] if container.streams.audio else None
            out.layout = " ".join(
                f"{st.type}:{st.codec_context.name if st.codec_context is not None else '?'}"
                for st in container.streams
                if st.type in ("video", "audio")
            )
            vsha = hashlib.sha256(_setup(v))
            asha = hashlib.sha256(_setup(a)) if a is not None else None
            track = FrameTrack(plan or MaskPlan.none()) if video else None
            resampler, sound = _sound(av, a) if audio and a is not None else (None, None)
            last_t = 0.0
            for packet in container.demux(*([v, a] if a is not None else [v])):
                is_video = packet.stream.index == v.index
                when = packet.pts if packet.pts is not None else packet.dts
                t = float(when * packet.time_base) if when is not None and packet.time_base else last_t
                last_t = t
                if packet.size:
                    data = memoryview(packet)
                    if is_video:
                        vsha.update(data)
                        vsha.update(_timing(packet))
                        k = out.segment(t)
                        seg_sha[k].update(data)
                        out.packet_bytes[k] = out.packet_bytes.get(k, 0) + packet.size
                    elif asha is not None:
                        asha.update(data)
                        asha.update(_timing(packet))
                if is_video and track is not None:
                    try:
                        decoded = packet.decode()
                    except av_errors():
                        out.damaged.append(t)
                        continue
                    for frame in decoded:
                        ft = float(frame.time) if frame.time is not None else last_t
                        digest = frame_digest(frame)
                        whole.update(digest)
                        pix_sha[out.segment(ft)].update(digest)
                        small = frame.reformat(width=FINE, height=FINE, format="yuv444p", interpolation="AREA")
                        track.add(ft, _display(small.to_ndarray(), rotation))
                        out.frame_count += 1
                elif not is_video and sound is not None and resampler is not None:
                    try:
                        decoded = packet.decode()
                    except av_errors():
                        out.damaged_audio.append(t)
                        continue
                    for frame in decoded:
                        for block in resampler.resample(frame):
                            sound.add(block.to_ndarray().reshape(-1, sound.channels))
            if sound is not None and resampler is not None:
                for block in resampler.resample(None):
                    sound.add(block.to_ndarray().reshape(-1, sound.channels))
    except KzlabelError:
        raise
    except av_errors() as exc:
        raise CorruptInput(f"unreadable video: {exc}", source=inp.source) from None
    out.video_packets = vsha.hexdigest()
    out.audio_packets = asha.hexdigest() if asha is not None else None
    out.seg_packets = {k: h.digest()[:SEG_DIGEST] for k, h in seg_sha.items()}
    if track is not None:
        out.frames, out.pixels = track, whole.hexdigest()
        out.seg_pixels = {k: h.digest()[:SEG_DIGEST] for k, h in pix_sha.items()}
    out.sound = sound
    return out


def _sound(av: Any, stream: Any) -> tuple[Any, SoundPrint | None]:
    ctx = stream.codec_context
    rate = int(ctx.sample_rate or 0) if ctx is not None else 0
    if rate <= 0:
        return None, None
    layout = layout_name(ctx)
    channels = len(av.AudioLayout(layout).channels)
    return av.AudioResampler(format="flt", layout=layout, rate=rate), SoundPrint(rate, channels, (0, 0))
