"""The soundtrack of a video, when asked for (a tone position): the "AI" tone mixed over the content and the audio
watermark, block by block; and its check in bounded excerpts."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from ...errors import CapacityError, KzlabelError
from ...io import Input
from ...layers import audible, visible
from ...media_av import av_errors, block_samples, layout_name, mux_samples, need_av, read_audio, source
from ...media_rate import StreamRate, audio_bit_rate, audio_options
from ..base import Findings
from .codec import SoundtrackPlan

# --- the soundtrack ---------------------------------------------------------------------------------------------------
TONE_POSITIONS = ("start", "end", "both")
# The watermark is embedded block by block with its grid offset, so one continuous pattern runs through the whole
# soundtrack while only one block is in memory. Blocks are whole tiles of the mark (see media_av.block_samples;
# measured: 2.048-s blocks lose the mark on 6 s of music, 3.072-s blocks find it at p ≈ 1e-16; across a boundary,
# 32-s blocks give p ≈ 1e-13, 30.72-s blocks 1e-17). Verification reads bounded excerpts: the opening seconds and
# the last ones.
AUDIO_BLOCK_TILES = 10
AUDIO_DETECT_S = 24.0
AUDIO_END_S = 4.0
# the source's codec is kept when it can be encoded here and the container takes it; otherwise the container's usual
_AUDIO_ENCODERS = {
    "aac": "aac",
    "opus": "libopus",
    "vorbis": "vorbis",
    "mp3": "libmp3lame",
    "mp3float": "libmp3lame",
    "flac": "flac",
    "ac3": "ac3",
    "alac": "alac",
    "pcm_s16le": "pcm_s16le",
    "pcm_s24le": "pcm_s24le",
    "pcm_f32le": "pcm_f32le",
}
_AUDIO_FALLBACK = {"mp4": "aac", "mov": "aac", "matroska": "aac", "webm": "libopus"}


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


class Soundtrack:
    """One audio stream decoded, toned, watermarked and re-encoded in blocks of :data:`AUDIO_BLOCK_TILES` tiles.

    Blocks are processed as packets arrive (interleaved with the video), so memory holds one block; with a tone at
    the end, the last tone's length is held back until the stream ends so it can be mixed over the final samples.
    The tone is mixed over the soundtrack rather than inserted before it, as for audio files, because inserting it
    would put sound and picture out of sync.
    """

    def __init__(self, out: Any, stream: Any, fmt: str, plan: SoundtrackPlan, measured: StreamRate | None) -> None:
        av = need_av("video")
        ctx = stream.codec_context
        self.out, self.plan = out, plan
        self.layout = layout_name(ctx)
        self.channels = len(av.AudioLayout(self.layout).channels)
        encoder = _audio_encoder(ctx.name, fmt, out)
        rates = av.codec.Codec(encoder, "w").audio_rates
        self.rate = int(ctx.sample_rate) if not rates or ctx.sample_rate in rates else 48000
        self.stream = out.add_stream(encoder, rate=self.rate, layout=self.layout)
        self.stream.codec_context.options = audio_options(encoder)
        # the source's measured rate (Opus in Matroska/WebM states none: it was given 128 kb/s whatever its own)
        bit_rate = audio_bit_rate(encoder, measured, self.channels, int(ctx.bit_rate or stream.bit_rate or 128_000))
        if bit_rate is not None:
            self.stream.bit_rate = bit_rate
        self.stream.metadata.update(dict(stream.metadata))  # language, title
        self.resampler = av.AudioResampler(format="flt", layout=self.layout, rate=self.rate)
        self.tone_n = int(round(audible.tone_seconds() * self.rate))
        self.block_n = block_samples(self.rate, AUDIO_BLOCK_TILES)  # ≥ the mark's 2-s minimum
        self.hold = self.tone_n if plan.tone_at in ("end", "both") else 0
        from ...watermark.audio import MIN_RELIABLE_RATE

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
            mix_tone(block, self.rate, end=False)
        if at in ("end", "both") and last:
            mix_tone(block, self.rate, end=True)
        if self.payload is not None and len(block):
            from ...watermark import embed_audio

            # the whole soundtrack too short to carry a mark that reads back: left unmarked
            with contextlib.suppress(CapacityError):
                block = embed_audio(block, self.rate, self.payload, key=self.plan.key, offset_s=self.done / self.rate)
        self.pts = mux_samples(self.out, self.stream, block, self.layout, self.rate, self.pts or 0)
        self.done += len(block)


# Mixed over content at its usual level (6 dB under the content) the tone's rhythm drowns in busy music or speech
# (matched-filter scores 0.61–0.80 against the 0.75 threshold); ducking the content 15 dB under the tone's 1.4 s gives
# 0.88–0.95 on the music, speech and noise fixtures, and keeps the content audible beneath the tone.
DUCK_DB = 15.0
DUCK_RAMP_S = 0.05


def mix_tone(block: np.ndarray, rate: int, *, end: bool) -> None:
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
    from ...watermark import detect_audio
    from ...watermark.audio import MIN_SECONDS

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
            closing = (
                (samples, rate)
                if len(samples) < AUDIO_DETECT_S * rate
                else read_audio(source(inp), AUDIO_END_S, from_end=True)
            )
            tone = closing is not None and audible.detect(closing[0], closing[1], "end") >= audible.THRESHOLD
    except av_errors():
        return Findings()
    return Findings(watermark=mark, warning_found=bool(tone))
