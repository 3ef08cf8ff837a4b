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
from .palette import CLEAR, keeping_the_mark, on_one_palette, on_palette, one_palette

__all__ = ["Png"]


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
        return on_one_palette(frames, table, clear, dither), params


def _one_palette(doc: ImageDoc, frames: list[Image.Image], clear: bool) -> list[tuple[int, int, int]] | None:
    """The one palette of a paletted source's frames (kzlabel.formats.image.palette.one_palette); None (frames
    written RGB(A)) when the source was not paletted or had translucent pixels (index CLEAR is the one transparent
    entry)."""
    anim = doc.animation
    if anim is None or doc.original.mode != "P":
        return None
    if clear and any(np.isin(np.asarray(f.getchannel("A")), (0, 255), invert=True).any() for f in frames):
        return None
    box = doc.placement.box if doc.placement is not None else None
    return one_palette(anim.colours, frames, box, clear)
