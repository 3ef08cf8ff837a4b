"""WebP: lossless output when the source was lossless (VP8L), else lossy at 95; XMP in the RIFF ``XMP `` chunk."""

from __future__ import annotations

from typing import IO, Any

from PIL import Image, ImageFile, WebPImagePlugin

from ...containers import riff
from .base import ImageDoc, ImageHandler

__all__ = ["WebP"]


class WebP(ImageHandler):
    id, name, mime, extensions, pil = "webp", "WebP", "image/webp", (".webp",), "WEBP"

    def score(self, header: bytes, name: str | None) -> int:
        return 100 if header[:4] == b"RIFF" and header[8:12] == b"WEBP" else 0

    def image_file(self, fp: IO[bytes]) -> ImageFile.ImageFile:
        return WebPImagePlugin.WebPImageFile(fp)

    def get_xmp(self, data: bytes) -> bytes | None:
        return riff.get_xmp(data)

    def put_xmp(self, data: bytes, packet: bytes) -> bytes:
        return riff.put_xmp(data, packet)

    def source_info(self, im: Image.Image, data: bytes) -> dict[str, Any]:
        return {"lossless": b"VP8L" in data[12:4096]}

    def save_params(self, doc: ImageDoc, im: Image.Image) -> dict[str, Any]:
        # WebP does not record its quality: lossy sources are re-encoded high (95) to avoid generation loss
        lossless = doc.info.get("lossless", False)
        return {"lossless": lossless, "quality": 100 if lossless else 95, "method": 4}
