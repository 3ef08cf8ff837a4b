"""Re-encoding a video frame by frame with the layers' per-frame operations, and the soundtrack when asked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import CorruptInput, KzlabelError
from ...media_av import av_errors, need_av, temp_output
from ...media_rate import StreamRate, video_encoder, video_rate_options
from .codec import MUX_OPTIONS, FrameOp, SoundtrackPlan, VideoInfo, out_format
from .soundtrack import Soundtrack


def transcode(
    src: Any,
    ops: list[FrameOp],
    info: VideoInfo,
    *,
    metadata: Mapping[str, str] | None = None,
    soundtrack: SoundtrackPlan | None = None,
    video_source: StreamRate | None = None,
    bit_rate: int | None = None,
    audio_source: StreamRate | None = None,
) -> bytes:
    """Decode → per-frame ops → encode, streamed; audio copied, or marked when ``soundtrack`` asks for it.

    The video keeps ``video_source``'s profile and GOP shape and aims at ``bit_rate`` (quality-only when None); a
    marked soundtrack gets ``audio_source``'s measured rate (kzlabel.media_rate decides both). Writes through a temp
    file and returns its bytes.
    """
    av = need_av("video")
    try:
        with temp_output(".kzvideo") as tmp:
            with av.open(src, metadata_errors="ignore") as inp:
                fmt = out_format(inp)
                vin = inp.streams.video[0]
                vin.thread_type = "AUTO"
                options = dict(MUX_OPTIONS.get(fmt, {}))
                with av.open(tmp, "w", format=fmt, options=options) as out:
                    out.metadata.update(dict(inp.metadata) | dict(metadata or {}))
                    encoder = video_encoder(info.codec, fmt, need_av("video").codecs_available)
                    vout = out.add_stream(
                        encoder, rate=info.rate, options=video_rate_options(encoder, video_source, bit_rate)
                    )
                    vout.width, vout.height = info.width, info.height
                    vout.pix_fmt = (
                        info.pix_fmt if info.pix_fmt in ("yuv420p", "yuv420p10le", "yuv444p", "yuv422p") else "yuv420p"
                    )
                    vout.time_base = vin.time_base
                    vout.thread_type = "AUTO"
                    if info.rotation and hasattr(vout, "set_display_rotation"):
                        vout.set_display_rotation(info.rotation)  # same sign convention as frame.rotation
                    plan = soundtrack if soundtrack is not None and (soundtrack.tone_at or soundtrack.payload) else None
                    marked = {
                        a.index: Soundtrack(out, a, fmt, plan, audio_source if a is inp.streams.audio[0] else None)
                        for a in inp.streams.audio
                        if plan is not None
                    }
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
