"""GIF: palette output; XMP in the ``XMP DataXMP`` application extension.

Animated GIFs whose frames show 256 colours or fewer in all go onto one table (the source's colours plus the
warning's; still pixels keep the previous frame's index, so the writer stores what moved); otherwise back to each
source frame's own colours (kzlabel.formats.image.palette: nearest colours, or
Floyd-Steinberg dithered when that is what keeps the watermark's small luma changes); a frame that showed more than
256 colours (local palettes composited) gets an adaptive palette. Transparency takes index 255.
"""

from __future__ import annotations

from typing import IO, Any

from PIL import GifImagePlugin, Image, ImageFile

from ...containers import gif
from .base import ImageDoc, ImageHandler
from .palette import CLEAR, keeping_the_mark, on_one_palette, on_palette, one_palette

__all__ = ["Gif"]


class Gif(ImageHandler):
    id, name, mime, extensions, pil = "gif", "GIF", "image/gif", (".gif",), "GIF"
    animated = True
    palette_frames = True

    def score(self, header: bytes, name: str | None) -> int:
        return 100 if header[:6] in (b"GIF87a", b"GIF89a") else 0

    def image_file(self, fp: IO[bytes]) -> ImageFile.ImageFile:
        return GifImagePlugin.GifImageFile(fp)

    def get_xmp(self, data: bytes) -> bytes | None:
        return gif.get_xmp(data)

    def put_xmp(self, data: bytes, packet: bytes) -> bytes:
        return gif.put_xmp(data, packet)

    def animation_params(self, doc: ImageDoc, frames: list[Image.Image]) -> tuple[list[Image.Image], dict[str, Any]]:
        anim = doc.animation
        assert anim is not None
        clear = any(f.mode == "RGBA" for f in frames)
        box = doc.placement.box if doc.placement is not None else None
        table = one_palette(anim.colours, frames, box)
        if table is not None:  # one palette in all: one table, still pixels keep their index
            frames, dither = keeping_the_mark(frames, doc.info, lambda f, how: on_palette(f, table, clear, None, how))
            out = on_one_palette(frames, table, clear, dither)
        else:
            frames, dither = keeping_the_mark(
                frames, doc.info, lambda frame, how: on_palette(frame, anim.colours[0], clear, box, how)
            )
            out = [on_palette(f, c, clear, box, dither) for f, c in zip(frames, anim.colours, strict=True)]
        params: dict[str, Any] = {"disposal": anim.disposal, "optimize": True}
        if clear:
            params["transparency"] = CLEAR
        return out, params
