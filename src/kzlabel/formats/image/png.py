"""PNG: lossless re-encode keeping text chunks, dpi and transparency; XMP in an ``iTXt`` chunk.

APNG (animated PNG) keeps each frame's duration, disposal and blend operation and the loop count; the frames are
written whole (composited), so a blend over the previous frame gives the same picture (Pillow's writer stores each
frame as the rectangle that changed). A paletted APNG stays paletted: every frame on the source's colours plus the
warning's, in the one ``PLTE`` all frames share (kzlabel.formats.image.palette; written as RGB, the test paletted
animations grew 2.6-24x, the mark's noise costing deflate what the palette had saved).
"""

from __future__ import annotations

from typing import IO, Any

import numpy as np
from PIL import Image, ImageFile, PngImagePlugin

from ...containers import png
from .base import ImageDoc, ImageHandler
from .palette import CLEAR, keeping_the_mark, on_palette, warning_colours

__all__ = ["Png"]

# palette entries a full palette gives up for the warning's plate and text (its least-used colours)
WARNING_ROOM = 16


class Png(ImageHandler):
    id, name, mime, extensions, pil = "png", "PNG", "image/png", (".png",), "PNG"
    animated = True

    def score(self, header: bytes, name: str | None) -> int:
        return 100 if header.startswith(png.SIGNATURE) else 0

    def image_file(self, fp: IO[bytes]) -> ImageFile.ImageFile:
        return PngImagePlugin.PngImageFile(fp)

    def get_xmp(self, data: bytes) -> bytes | None:
        return png.get_xmp(data)

    def put_xmp(self, data: bytes, packet: bytes) -> bytes:
        return png.put_xmp(data, packet)

    def save_params(self, doc: ImageDoc, im: Image.Image) -> dict[str, Any]:
        info = doc.info
        text = PngImagePlugin.PngInfo()
        for k, v in info.items():
            if isinstance(v, str) and k != png.XMP_KEYWORD.decode():  # XMP is put by container surgery, merged
                text.add_text(k, v)
        params: dict[str, Any] = {"pnginfo": text, "compress_level": 6}
        if "dpi" in info:
            params["dpi"] = info["dpi"]
        if "transparency" in info and im.mode in ("P", "L", "RGB"):
            params["transparency"] = info["transparency"]
        return params

    def animation_params(self, doc: ImageDoc, frames: list[Image.Image]) -> tuple[list[Image.Image], dict[str, Any]]:
        anim = doc.animation
        assert anim is not None
        params = self.save_params(doc, frames[0])
        params.pop("transparency", None)  # frames are RGB(A): transparency is their alpha
        params |= {"disposal": anim.disposal, "blend": anim.blend}
        clear = any(f.mode == "RGBA" for f in frames)
        table = _one_palette(doc, frames, clear)
        if table is None:
            return frames, params
        frames, dither = keeping_the_mark(frames, doc.info, lambda f, how: on_palette(f, table, clear, None, how))
        if clear:
            params["transparency"] = CLEAR
        return [on_palette(f, table, clear, None, dither) for f in frames], params


def _one_palette(doc: ImageDoc, frames: list[Image.Image], clear: bool) -> list[tuple[int, int, int]] | None:
    """The one palette of a paletted source's frames: the colours they showed plus the warning's (taken from its
    region on every frame; a full palette gives up its least-used colours for WARNING_ROOM of them); None (frames
    written RGB(A)) when the source was not paletted or had translucent pixels (index CLEAR is the one transparent
    entry)."""
    anim = doc.animation
    if anim is None or doc.original.mode != "P" or not anim.colours or any(c is None for c in anim.colours):
        return None
    if clear and any(np.isin(np.asarray(f.getchannel("A")), (0, 255), invert=True).any() for f in frames):
        return None
    table = sorted({colour for found in anim.colours for colour in found or ()})
    if doc.placement is None:
        return table
    room = (255 if clear else 256) - len(table)
    if room < WARNING_ROOM:
        table = _most_used(table, frames, len(table) - (WARNING_ROOM - room))
        room = WARNING_ROOM
    x, y, w, h = doc.placement.box
    strip = Image.new("RGB", (w, h * len(frames)))
    for i, frame in enumerate(frames):  # the plate is semi-opaque: its colours differ from frame to frame
        strip.paste(frame.convert("RGB").crop((x, y, x + w, y + h)), (0, i * h))
    return table + warning_colours(strip, (0, 0, w, h * len(frames)), room)


def _most_used(table: list[tuple[int, int, int]], frames: list[Image.Image], keep: int) -> list[tuple[int, int, int]]:
    """The ``keep`` colours of ``table`` that the most pixels of ``frames`` are nearest to."""
    pal = Image.new("P", (1, 1))
    flat = [v for c in table for v in c]
    pal.putpalette(flat + flat[-3:] * (256 - len(table)))
    counts = np.zeros(256, np.int64)
    for frame in frames:
        counts += np.bincount(np.asarray(frame.convert("RGB").quantize(palette=pal)).ravel(), minlength=256)
    return [table[i] for i in sorted(np.argsort(-counts[: len(table)], kind="stable")[:keep])]
