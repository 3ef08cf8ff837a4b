"""What a stressed version looks like, for the report: a one-line description of the file (size, length, pages) and
a small preview for the HTML page: a thumbnail for images, a frame for video, a spectrogram for audio (codec
low-passes, a resample's lost band, a cut-off opening tone all show in it), the opening text for PDF and text.

Previews are made while the version's file still exists (stress() deletes each one after verifying it).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import CorruptInput
from ..io import Limits
from .runner import Output, Preview
from .transforms import Original
from .transforms.image import decode

__all__ = ["Output", "Preview", "describe", "preview"]

THUMB_PX = 240  # longest side of an image or frame thumbnail
SPECTRO_W, SPECTRO_H = 320, 96
SPECTRO_SECONDS = 15.0
TEXT_CHARS = 400


def describe(path: Path, family: str, format_id: str, limits: Limits = Limits()) -> Output:
    size = path.stat().st_size
    return Output(format_id, size, _shape(path, family, format_id, limits))


def _shape(path: Path, family: str, format_id: str, limits: Limits) -> str:
    if family == "image":
        w, h = decode(Original(path, format_id, limits)).size
        return f"{w}×{h}"
    if family in ("audio", "video"):
        from ..media_av import need_av

        av = need_av(family)
        with av.open(str(path), metadata_errors="ignore") as c:
            secs = f"{c.duration / 1_000_000:.1f} s" if c.duration else "length unknown"
            if family == "video" and c.streams.video:
                ctx = c.streams.video[0].codec_context
                return f"{ctx.width}×{ctx.height}, {secs}"
            if c.streams.audio:
                ctx = c.streams.audio[0].codec_context
                return f"{secs}, {ctx.sample_rate} Hz, {ctx.channels} ch"
            return secs
    if family == "pdf":
        from pypdf import PdfReader

        pages = len(PdfReader(path).pages)
        return f"{pages} page" + ("s" if pages != 1 else "")
    return f"{len(path.read_bytes().decode('utf-8', errors='replace'))} characters"


def preview(path: Path, family: str, format_id: str, limits: Limits = Limits()) -> Preview | None:
    """A preview of ``path`` for the HTML report; None when there is nothing to show (no frame, no samples)."""
    try:
        if family == "image":
            return _jpeg(decode(Original(path, format_id, limits)))
        if family == "video":
            return _frame(path)
        if family == "audio":
            return _spectrogram(path)
        if family == "pdf":
            return _pdf_text(path)
    except CorruptInput:
        return None
    text = path.read_bytes().decode("utf-8", errors="replace")
    return Preview("text/plain", text[:TEXT_CHARS].encode("utf-8"))


def _jpeg(im: Image.Image) -> Preview:
    thumb = im.convert("RGB")
    thumb.thumbnail((THUMB_PX, THUMB_PX), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=85)
    return Preview("image/jpeg", buf.getvalue())


def _frame(path: Path, at: float = 0.5) -> Preview | None:
    """The first frame at or after ``at`` seconds (inside the opening warning's seconds), upright."""
    from ..formats.video.warning import displayed
    from ..media_av import av_errors, need_av

    av = need_av("video")
    try:
        with av.open(str(path), metadata_errors="ignore") as c:
            if not c.streams.video:
                return None
            chosen = None
            for frame in c.decode(c.streams.video[0]):
                chosen = frame
                if frame.time is None or frame.time >= at:
                    break
            if chosen is None:
                return None
            return _jpeg(displayed(chosen.to_ndarray(format="rgb24"), int(chosen.rotation or 0) % 360))
    except av_errors() as exc:
        raise CorruptInput(f"no frame to preview: {exc}") from None


def _spectrogram(path: Path) -> Preview | None:
    """A log-magnitude spectrogram of the first :data:`SPECTRO_SECONDS` (mono), 0 Hz at the bottom."""
    from ..media_av import av_errors, read_audio

    try:
        got = read_audio(str(path), SPECTRO_SECONDS)
    except av_errors() as exc:
        raise CorruptInput(f"no audio to preview: {exc}") from None
    if got is None or len(got[0]) < 1024:
        return None
    samples = got[0].mean(axis=1)
    n_fft = 512
    hop = max(1, (len(samples) - n_fft) // SPECTRO_W)
    starts = np.arange(0, len(samples) - n_fft + 1, hop)[:SPECTRO_W]
    frames = np.stack([samples[s : s + n_fft] for s in starts]) * np.hanning(n_fft)
    mag = 20 * np.log10(np.abs(np.fft.rfft(frames, axis=1)) + 1e-9)
    level = np.clip((mag - (mag.max() - 90.0)) / 90.0, 0.0, 1.0)  # a 90 dB window under the loudest bin
    grey = (255 * level.T[::-1]).astype(np.uint8)  # frequency rows, low at the bottom
    im = Image.fromarray(grey).resize((SPECTRO_W, SPECTRO_H), Image.Resampling.BILINEAR)
    coloured = Image.merge("RGB", (im.point(lambda v: min(255, v * 2)), im, im.point(lambda v: max(0, v * 2 - 255))))
    buf = io.BytesIO()
    coloured.save(buf, "PNG")
    return Preview("image/png", buf.getvalue())


def _pdf_text(path: Path) -> Preview:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path)
        text = reader.pages[0].extract_text() if reader.pages else ""
    except (PyPdfError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CorruptInput(f"no text to preview: {exc}") from None
    return Preview("text/plain", text[:TEXT_CHARS].encode("utf-8"))
