"""Video transformations: what video platforms, feeds and messengers do to an upload, made with PyAV (FFmpeg).

Two kinds: re-encodes (H.264 into MP4, as a platform serves it, AAC 128 kbit/s audio, no metadata: the output is a
new file) and stream copies (the compressed frames kept, only the container rewritten: what ``ffmpeg -c copy``
does). Frames are turned upright first (a phone's rotation flag applied), as FFmpeg does before it scales.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import CorruptInput
from ...formats.video.codec import MUX_OPTIONS, chroma_planes, out_format
from ...media_av import av_errors, mux_samples, need_av
from . import NotApplicable, Original, Transform

__all__ = ["TRANSFORMS", "Reencode", "copy_streams"]

SUFFIXES = {"mp4": ".mp4", "mov": ".mov", "webm": ".webm", "matroska": ".mkv"}
AUDIO_BIT_RATE = 128_000
# Geometry: (displayed width, height) → (centre crop box (left, top, right, bottom) or None, output width, height)
Geometry = Callable[[int, int], tuple[tuple[int, int, int, int] | None, int, int]]


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def _height_at_most(limit: int) -> Geometry:
    """ffmpeg's ``scale=-2:min(ih,LIMIT)``: the height capped, the width following the aspect ratio, both even."""

    def geometry(w: int, h: int) -> tuple[tuple[int, int, int, int] | None, int, int]:
        out_h = min(h, limit)
        return None, _even(w * out_h / h), _even(out_h)

    return geometry


def _vertical(max_w: int, max_h: int) -> Geometry:
    """The centre cut to 9:16 (when the picture is wider than that), then scaled down to fit ``max_w``×``max_h``."""

    def geometry(w: int, h: int) -> tuple[tuple[int, int, int, int] | None, int, int]:
        box = None
        if w * 16 > h * 9:
            cw = _even(h * 9 / 16)
            left = (w - cw) // 4 * 2  # even, so the 4:2:0 chroma planes are cut at the same place
            box, w = (left, 0, left + cw, h), cw
        f = min(1.0, max_w / w, max_h / h)
        return box, _even(w * f), _even(h * f)

    return geometry


@dataclass(frozen=True)
class Reencode:
    """Decode, turn upright, crop, scale, H.264 at ``crf`` into MP4; audio to AAC. No tags are carried over."""

    geometry: Geometry
    crf: int
    preset: str = "medium"  # x264's default, what a plain ``ffmpeg -crf N`` uses

    def write(self, original: Original, work: Path, name: str) -> Path:
        av = need_av("video")
        out_path = work / f"{name}.mp4"
        width, height, rotation = _first_frame(original.path)
        box, out_w, out_h = self.geometry(width, height)
        with _opened(original.path) as inp, av.open(str(out_path), "w", format="mp4") as out:
            vin = inp.streams.video[0]
            vin.thread_type = "AUTO"
            ain = inp.streams.audio[0] if inp.streams.audio else None
            # every stream is added before the first packet is muxed (the muxer writes its header then)
            vout = out.add_stream(
                "libx264", rate=vin.average_rate or 25, options={"crf": str(self.crf), "preset": self.preset}
            )
            vout.width, vout.height, vout.pix_fmt = out_w, out_h, "yuv420p"
            vout.time_base = vin.time_base
            audio = _AacTrack(out, ain) if ain is not None else None
            for packet in _demuxed(inp, original.path, vin, *([ain] if ain is not None else [])):
                if audio is not None and packet.stream.type == "audio":
                    audio.push(packet, original.path)
                    continue
                for frame in _decoded(packet, original.path):
                    new = _upright_crop(frame, rotation, box)
                    new = new.reformat(width=out_w, height=out_h, format="yuv420p", interpolation="BICUBIC")
                    new.pts, new.time_base = frame.pts, frame.time_base
                    for p in vout.encode(new):
                        out.mux(p)
            for p in vout.encode(None):
                out.mux(p)
            if audio is not None:
                audio.finish()
        return out_path


def _upright_crop(frame: Any, rotation: int, box: tuple[int, int, int, int] | None) -> Any:
    """The frame turned upright and cut to ``box``, in 4:2:0 throughout, as FFmpeg's autorotation (a transpose of
    the planes) does. Turning it as RGB added a rounding error of its own to every pixel (luma error std 2.3 grey
    levels on a 1280×720 frame), which cost a phone clip's mark at 240 px and CRF 32 what ffmpeg's own turn does not
    (pilot z 5, nothing read, against z 9-10)."""
    if not rotation and box is None:
        return frame
    av = need_av("video")
    yuv = frame.to_ndarray(format="yuv420p")  # Y (H rows) on top of U and V (row-packed: chroma_planes)
    h, w = frame.height, frame.width
    planes = [yuv[:h, :], *chroma_planes(yuv, w, h)]
    if rotation:  # counter-clockwise, as viewers see it (formats.video.warning.displayed)
        planes = [np.rot90(p, k=(rotation // 90) % 4) for p in planes]
    if box is not None:
        left, top, right, bottom = box
        planes = [
            planes[0][top:bottom, left:right],
            *(p[top // 2 : bottom // 2, left // 2 : right // 2] for p in planes[1:]),
        ]
    ch, cw = planes[0].shape
    out = np.concatenate([p.reshape(-1) for p in planes]).reshape(ch * 3 // 2, cw)
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(out), format="yuv420p")


def _first_frame(path: Path) -> tuple[int, int, int]:
    """(displayed width, height, rotation) of the first decodable frame."""
    with _opened(path) as inp:
        for packet in _demuxed(inp, path, inp.streams.video[0]):
            for frame in _decoded(packet, path):
                rotation = int(frame.rotation or 0) % 360
                turned = rotation in (90, 270)
                return (frame.height, frame.width, rotation) if turned else (frame.width, frame.height, rotation)
    raise CorruptInput("the video has no decodable frame", source=str(path))


class _AacTrack:
    """A soundtrack decoded and encoded again as AAC at :data:`AUDIO_BIT_RATE`, its own rate and layout."""

    def __init__(self, out: Any, stream: Any) -> None:
        av = need_av("video")
        ctx = stream.codec_context
        self.out = out
        self.rate = int(ctx.sample_rate or 48000)
        self.layout = "mono" if ctx.channels == 1 else "stereo"
        self.channels = 1 if self.layout == "mono" else 2
        self.stream = out.add_stream("aac", rate=self.rate, layout=self.layout)
        self.stream.bit_rate = AUDIO_BIT_RATE
        self.resampler = av.AudioResampler(format="flt", layout=self.layout, rate=self.rate)
        self.pts = 0

    def push(self, packet: Any, path: Path) -> None:
        for frame in _decoded(packet, path):
            frame.pts = None  # the resampler counts samples itself
            self._mux(self.resampler.resample(frame))

    def finish(self) -> None:
        self._mux(self.resampler.resample(None))
        for p in self.stream.encode(None):
            self.out.mux(p)

    def _mux(self, frames: list[Any]) -> None:
        for f in frames:
            samples = f.to_ndarray().reshape(-1, self.channels)
            self.pts = mux_samples(self.out, self.stream, samples, self.layout, self.rate, self.pts)


def _opened(path: Path) -> Any:
    av = need_av("video")
    try:
        inp = av.open(str(path), metadata_errors="ignore")
    except av_errors() as exc:
        raise CorruptInput(f"the video could not be opened: {exc}", source=str(path)) from None
    if not inp.streams.video:
        inp.close()
        raise CorruptInput("no video stream to transform", source=str(path))
    return inp


def _demuxed(inp: Any, path: Path, *streams: Any) -> Iterator[Any]:
    """The packets of ``streams``, a demuxing error as CorruptInput (the input's fault; the encoders' are not)."""
    packets = inp.demux(*streams)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av_errors() as exc:
            raise CorruptInput(f"the video could not be read: {exc}", source=str(path)) from None
        yield packet


def _decoded(packet: Any, path: Path) -> list[Any]:
    try:
        return list(packet.decode())
    except av_errors() as exc:
        raise CorruptInput(f"a frame could not be decoded: {exc}", source=str(path)) from None


def copy_streams(original: Original, work: Path, name: str, *, seconds: float | None, keep_tags: bool) -> Path:
    """Stream-copy the video and audio streams into a new container of the same kind, as ``ffmpeg -c copy`` does:
    the C2PA manifest box never comes along; the tags do when ``keep_tags`` (ffmpeg's default; ``-map_metadata -1``
    drops them); ``seconds``: only packets that start before that time (``-t``)."""
    av = need_av("video")
    with _opened(original.path) as inp:
        duration = float(inp.duration / 1_000_000) if inp.duration else None
        if seconds is not None and duration is not None and duration <= seconds:
            raise NotApplicable(f"the video ({duration:.1f} s) is not longer than {seconds:g} s")
        fmt = out_format(inp)
        out_path = work / f"{name}{SUFFIXES[fmt]}"
        with av.open(str(out_path), "w", format=fmt, options=dict(MUX_OPTIONS.get(fmt, {}))) as out:
            if keep_tags:
                out.metadata.update(dict(inp.metadata))
            streams = [s for s in inp.streams if s.type in ("video", "audio")]
            copies = {s.index: out.add_stream_from_template(s) for s in streams}
            for packet in _demuxed(inp, original.path, *streams):
                if not packet.size:  # the demuxer's end-of-stream marker
                    continue
                at = packet.dts if packet.dts is not None else packet.pts  # Matroska leaves some dts unset
                if seconds is not None and at is not None and float(at * packet.time_base) >= seconds:
                    continue
                packet.stream = copies[packet.stream.index]
                out.mux(packet)
    return out_path


def _reencode(name: str, title: str, step: Reencode) -> Transform:
    return Transform(name, title, lambda original, work: step.write(original, work, name))


def _copy(name: str, title: str, *, seconds: float | None, keep_tags: bool) -> Transform:
    return Transform(
        name, title, lambda original, work: copy_streams(original, work, name, seconds=seconds, keep_tags=keep_tags)
    )


# report order; STEPS are module-level so benchmarks/bench_video.py runs the very same re-encodes
STEPS: dict[str, tuple[str, Reencode]] = {
    "h264-480p": ("H.264 CRF 28, at most 480 px high (MP4)", Reencode(_height_at_most(480), 28)),
    "vertical": ("vertical: centre cut to 9:16, ≤ 1080×1920, H.264 CRF 23", Reencode(_vertical(1080, 1920), 23)),
}

TRANSFORMS: list[Transform] = [
    *(_reencode(name, title, step) for name, (title, step) in STEPS.items()),
    _copy("metadata-drop", "metadata dropped (stream copy, -map_metadata -1)", seconds=None, keep_tags=False),
    _copy("first-5s", "the first 5 s only (stream copy, -t 5)", seconds=5.0, keep_tags=True),
]
