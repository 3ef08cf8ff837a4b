"""Rate-matched re-encoding: the one place that decides a re-encode's rate settings from the source's measured rate.

Marking re-encodes video (the burned-in warning and the watermark change every frame) and audio (tone, spoken notice,
watermark). A labelled copy should cost what its source cost: same codec, profile, pixel format and GOP shape, and the
source's bit rate, measured as the bytes of its stream over its duration (a demux, no decoding; a container's stated
rate is a guess for Matroska, WebM and Ogg, which have none per stream). The written output is measured the same way,
so what the mark report says about rates is a measurement of the file, not a setting.

Video is encoded at the source's rate first. A watermark needs bits: at very low source rates the encoder may smooth
it away, so the video handler proves the mark on the written file and, when it is lost, climbs
:data:`VIDEO_RATE_STEPS` (the mark is kept and the mark report says by how much the rate grew). The last step is the
quality-only setting (:func:`video_quality_options`), which is also what a source without a measurable rate gets.
Lossless audio (FLAC, ALAC, PCM) has no rate to match: it stays lossless.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .media_av import need_av

__all__ = [
    "LOSSLESS_AUDIO",
    "RATE_TOLERANCE",
    "VIDEO_RATE_STEPS",
    "StreamRate",
    "audio_bit_rate",
    "audio_options",
    "describe",
    "measure",
    "video_encoder",
    "video_quality_options",
    "video_rate_options",
]

# multiples of the source's rate tried in turn while the watermark does not survive; then the quality-only setting
VIDEO_RATE_STEPS = (1.0, 2.0, 4.0)
# A single-pass ABR encode whose measured rate misses its target by more than this is encoded once more, aimed by the
# miss (x264 left a 3-s, 39 kb/s clip at 0.83x; the second aim lands within a few %)
RATE_TOLERANCE = 0.10
LOSSLESS_AUDIO = frozenset({"flac", "alac", "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_u8"})
# The lowest rates the lossy audio encoders accept per channel, and the highest in total: a measured rate is kept
# inside them (an 8 kb/s mono MP3 stays 8 kb/s; a 6-channel Opus is not asked for 2 Mb/s).
_AUDIO_LIMITS = {"libmp3lame": (8_000, 320_000), "libopus": (6_000, 510_000), "aac": (8_000, 512_000)}
# the source's codec is kept where it can be encoded here; otherwise the container's usual
_ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "vp8": "libvpx", "av1": "libsvtav1"}
_FALLBACK = {"mp4": "libx264", "mov": "libx264", "matroska": "libx264", "webm": "libvpx-vp9"}
# x264/x265 profile names by FFmpeg's profile name of the source stream
_PROFILES = {
    "libx264": {
        "Baseline": "baseline",
        "Constrained Baseline": "baseline",
        "Main": "main",
        "High": "high",
        "High 10": "high10",
        "High 4:2:2": "high422",
        "High 4:4:4 Predictive": "high444",
    },
    "libx265": {"Main": "main", "Main 10": "main10", "Main Still Picture": "mainstillpicture", "Rext": ""},
}


@dataclass(frozen=True)
class StreamRate:
    """One stream as its packets show it: bytes, duration, and (video) its key frame spacing and reordering."""

    kind: str  # "video" | "audio"
    codec: str
    profile: str
    bytes: int
    seconds: float
    packets: int
    keyframes: int
    reorders: bool  # B-frames (decode order differs from display order)

    @property
    def bit_rate(self) -> int | None:
        """Bits per second of the stream's own data (None when it has no measurable duration)."""
        return int(self.bytes * 8 / self.seconds) if self.seconds > 0 and self.bytes else None

    @property
    def gop(self) -> int | None:
        """Frames from one key frame to the next (None when the stream has a single key frame: nothing to copy)."""
        return int(round(self.packets / self.keyframes)) if self.keyframes >= 2 else None


@dataclass
class _Tally:
    size: int = 0
    packets: int = 0
    keys: int = 0
    first: float | None = None
    last: float | None = None
    last_len: float = 0.0
    reorders: bool = False

    def add(self, packet: Any) -> None:
        self.size += packet.size
        self.packets += 1
        self.keys += bool(packet.is_keyframe)
        if packet.pts is not None and packet.time_base:
            t = float(packet.pts * packet.time_base)
            if self.first is None or t < self.first:
                self.first = t
            if self.last is None or t >= self.last:
                self.last, self.last_len = t, float((packet.duration or 0) * packet.time_base)
            self.reorders = self.reorders or (packet.dts is not None and packet.pts != packet.dts)

    @property
    def seconds(self) -> float:
        return self.last - self.first + self.last_len if self.first is not None and self.last is not None else 0.0


def measure(src: Any) -> dict[str, StreamRate]:
    """The first video and the first audio stream of ``src`` (a path or a file object), measured from their packets.

    Duration is the span of the packets' timestamps plus the last packet's length (the stream's stated duration when
    no packet carries one). Reads the file once without decoding.
    """
    av = need_av("video or audio")
    out: dict[str, StreamRate] = {}
    with av.open(src, metadata_errors="ignore") as container:
        streams = [s for s in (*container.streams.video[:1], *container.streams.audio[:1]) if s.codec_context]
        tally = {s.index: _Tally() for s in streams}
        for packet in container.demux(*streams):
            if packet.size:  # an empty packet is the demuxer's end-of-stream marker
                tally[packet.stream.index].add(packet)
        for s in streams:
            t, ctx = tally[s.index], s.codec_context
            seconds = t.seconds
            if seconds <= 0 and s.duration and s.time_base:
                seconds = float(s.duration * Fraction(s.time_base))
            reorders = t.reorders or bool(ctx.type == "video" and ctx.has_b_frames)
            profile = str(ctx.profile or "")
            out[s.type] = StreamRate(s.type, ctx.name, profile, t.size, seconds, t.packets, t.keys, reorders)
    return out


def video_encoder(codec: str, container: str, available: Any) -> str:
    """The encoder for a source ``codec`` written into ``container`` (a muxer name), among the ``available`` ones."""
    name = _ENCODERS.get(codec, _FALLBACK.get(container, "libx264"))
    return name if name in available else _FALLBACK.get(container, "libx264")


def video_quality_options(encoder: str) -> dict[str, str]:
    """Quality close to a visually lossless re-encode, at a speed that keeps up with real time on two cores: the
    setting before rate matching, and the last step when lower rates lose the watermark."""
    if encoder in ("libx264", "libx265"):
        return {
            "crf": "18" if encoder == "libx264" else "20",
            "preset": "veryfast" if encoder == "libx264" else "ultrafast",
        }
    if encoder == "libvpx-vp9":
        return {"crf": "31", "b": "0", "deadline": "realtime", "cpu-used": "8", "row-mt": "1"}
    if encoder == "libsvtav1":
        return {"crf": "35", "preset": "10"}
    return {}


def video_rate_options(encoder: str, source: StreamRate | None, bit_rate: int | None) -> dict[str, str]:
    """Encoder options that keep the source's profile and GOP shape and aim at ``bit_rate`` (quality-only when None).

    x264 runs in ABR with a tight rate tolerance (``ratetol=0.1``: its default of 1.0 left 2-3 s clips at 0.68-0.81
    of the target, measured on the bundled samples); libvpx and SVT-AV1 in VBR. Two-pass encoding would hit the rate
    more closely but doubles the decode and the per-frame layers.
    """
    options = video_quality_options(encoder)
    if source is not None:
        profile = _PROFILES.get(encoder, {}).get(source.profile)
        if profile:
            options["profile"] = profile
        if source.gop:
            options["g"] = str(source.gop)
        if not source.reorders and encoder in ("libx264", "libx265"):
            options["bf"] = "0"
    if bit_rate is None:
        return options
    options.pop("crf", None)
    options["b"] = str(bit_rate)
    if encoder == "libx264":
        options["x264-params"] = "ratetol=0.1"
    elif encoder == "libvpx-vp9":
        options |= {"undershoot-pct": "10", "overshoot-pct": "10"}
    elif encoder == "libsvtav1":
        options["rc"] = "1"  # VBR (the wrapper's default is constant QP)
    return options


def audio_bit_rate(encoder: str, source: StreamRate | None, channels: int, default: int) -> int | None:
    """The rate a lossy audio encoder is given: the source's measured rate within the encoder's range (``default``
    when the source has none); None for a lossless encoder."""
    if encoder in LOSSLESS_AUDIO:
        return None
    rate = source.bit_rate if source is not None and source.bit_rate else default
    low, high = _AUDIO_LIMITS.get(encoder, (8_000, 512_000))
    return max(low * max(channels, 1), min(high, rate)) if encoder != "libmp3lame" else max(low, min(high, rate))


def audio_options(encoder: str) -> dict[str, str]:
    """Private options of a lossy audio encoder for rate matching. libopus runs constrained VBR: in its default VBR a
    music source measured at 116.5 kb/s (made at 96k) came out at 138 kb/s (1.19x), 1.04x constrained."""
    if encoder == "libopus":
        return {"vbr": "constrained"}
    if encoder == "vorbis":
        return {"strict": "experimental"}  # FFmpeg's own Vorbis encoder is marked experimental
    return {}


def describe(kind: str, written: StreamRate | None, source: StreamRate | None) -> str:
    """One line of the mark report: the written stream's measured rate beside the source's."""
    if written is None or written.bit_rate is None:
        return f"{kind}: no measurable rate in the output"
    line = f"{written.codec} {written.bit_rate / 1000:.1f} kb/s written"
    if source is not None and source.bit_rate:
        line += f", source {source.codec} {source.bit_rate / 1000:.1f} kb/s ({written.bit_rate / source.bit_rate:.2f}×)"
    return line
