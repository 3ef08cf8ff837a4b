"""GIF: palette output; XMP in the ``XMP DataXMP`` application extension."""

from __future__ import annotations

from typing import IO

from PIL import GifImagePlugin, ImageFile

from ...containers import gif
from .base import ImageHandler

__all__ = ["Gif"]


class Gif(ImageHandler):
    id, name, mime, extensions, pil = "gif", "GIF", "image/gif", (".gif",), "GIF"

    def score(self, header: bytes, name: str | None) -> int:
        return 100 if header[:6] in (b"GIF87a", b"GIF89a") else 0

    def image_file(self, fp: IO[bytes]) -> ImageFile.ImageFile:
        return GifImagePlugin.GifImageFile(fp)

    def get_xmp(self, data: bytes) -> bytes | None:
        return gif.get_xmp(data)

    def put_xmp(self, data: bytes, packet: bytes) -> bytes:
        return gif.put_xmp(data, packet)
