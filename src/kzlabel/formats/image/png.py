"""PNG: lossless re-encode keeping text chunks, dpi and transparency; XMP in an ``iTXt`` chunk.

APNG (animated PNG) keeps each frame's duration, disposal and blend operation and the loop count; the frames are
written whole (composited), so a blend over the previous frame gives the same picture.
"""

from __future__ import annotations

from typing import IO, Any

from PIL import Image, ImageFile, PngImagePlugin

from ...containers import png
from .base import ImageDoc, ImageHandler

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
        return frames, params | {"disposal": anim.disposal, "blend": anim.blend}
