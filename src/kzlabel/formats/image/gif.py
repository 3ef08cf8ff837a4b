"""GIF: palette output; XMP in the ``XMP DataXMP`` application extension.

Animated GIFs go back to each source frame's own colours (the frame's palette reused, Floyd-Steinberg dithered, so
the watermark's small luma changes survive as a dither pattern instead of being rounded away); a frame that showed
more than 256 colours (local palettes composited) gets an adaptive palette. Transparency takes index 255.
"""

from __future__ import annotations

from typing import IO, Any

import numpy as np
from PIL import GifImagePlugin, Image, ImageFile

from ...containers import gif
from .base import ImageDoc, ImageHandler

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
        dither = Image.Dither.NONE
        mark = doc.info.get("watermark")
        if mark is not None:  # nearest colours keep the mark on dithered sources; flat ones need it dithered in
            from ...watermark import detect_image

            def keeps(how: Image.Dither) -> bool:
                first = _paletted(frames[0], anim.colours[0], clear, box, how)
                return bool(detect_image(np.asarray(first.convert("RGB")), key=mark[1]).payload == mark[0])

            # dithering costs size (LZW): only when it is what keeps the mark. A flat sticker keeps it neither way:
            # its frames are then written unmarked (the mark would only add noise), and mark's read-back reports the
            # layer skipped
            if not keeps(dither):
                if keeps(Image.Dither.FLOYDSTEINBERG):
                    dither = Image.Dither.FLOYDSTEINBERG
                else:
                    frames = doc.info.get("unmarked", frames)
        out = [_paletted(f, c, clear, box, dither) for f, c in zip(frames, anim.colours, strict=True)]
        params: dict[str, Any] = {"disposal": anim.disposal, "optimize": True}
        if clear:
            params["transparency"] = _CLEAR
        return out, params


_CLEAR = 255  # the palette index of transparent pixels in a transparent animation
_WARNING_COLOURS = 32  # palette entries added for the warning's plate and text, when the source leaves room
_MIN_ROOM = 8  # fewer free entries than this: the frame gets an adaptive palette instead


def _paletted(
    frame: Image.Image,
    colours: list[tuple[int, int, int]] | None,
    clear: bool,
    box: tuple[int, int, int, int] | None,
    dither: Image.Dither,
) -> Image.Image:
    """A marked frame on its source frame's palette plus the warning's colours, or on an adaptive palette (dithered)
    when the source frame left no room; index _CLEAR transparent."""
    rgb = frame.convert("RGB")
    room = (255 if clear else 256) - len(colours or [])
    if colours and room >= (_MIN_ROOM if box else 0):
        extra: list[tuple[int, int, int]] = []
        if box is not None:  # the warning's plate and text colours are not in the source's palette
            x, y, w, h = box
            region = rgb.crop((x, y, x + w, y + h)).quantize(min(_WARNING_COLOURS, room))
            flat_region = region.getpalette() or []
            extra = [tuple(flat_region[i : i + 3]) for i in range(0, 3 * len(region.getcolors() or []), 3)]  # type: ignore[misc]
        table = list(colours) + extra
        pal = Image.new("P", (1, 1))
        flat = [v for c in table for v in c]
        pal.putpalette(flat + flat[-3:] * (256 - len(table)))  # padding repeats the last colour
        p = rgb.quantize(palette=pal, dither=dither)
        last = len(table) - 1
    else:
        p = rgb.quantize(255 if clear else 256, dither=Image.Dither.FLOYDSTEINBERG)
        last = -1
    if not clear:
        return p
    idx = np.array(p)
    if last >= 0:
        idx[idx > last] = last  # a padding entry is the last colour again
    idx[np.asarray(frame.getchannel("A")) < 128] = _CLEAR
    out = Image.fromarray(idx, "P")
    palette = (p.getpalette() or [])[: 3 * _CLEAR]
    out.putpalette(palette + [0] * (768 - len(palette)))
    return out
