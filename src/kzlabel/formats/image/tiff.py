"""TIFF: re-encoded with the source's lossless compression (JPEG-in-TIFF becomes LZW); XMP in tag 700.

TIFF's XMP is a tag in the IFD, so getting it reads the header through Pillow and putting it re-saves the (lossless)
image with that tag replaced and every other tag kept; there is no separate container module for it.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import IO, Any

from PIL import Image, ImageFile, TiffImagePlugin

from ...errors import CorruptInput, KzlabelError
from .base import ImageDoc, ImageHandler

__all__ = ["Tiff"]

_XMP_TAG = 700
_PILLOW_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error, zlib.error)


class Tiff(ImageHandler):
    id, name, mime, extensions, pil = "tiff", "TIFF", "image/tiff", (".tif", ".tiff"), "TIFF"

    def score(self, header: bytes, name: str | None) -> int:
        return 100 if header[:4] in (b"II*\x00", b"MM\x00*") else 0

    def image_file(self, fp: IO[bytes]) -> ImageFile.ImageFile:
        return TiffImagePlugin.TiffImageFile(fp)

    def get_xmp(self, data: bytes) -> bytes | None:
        try:
            with TiffImagePlugin.TiffImageFile(io.BytesIO(data)) as im:
                raw = im.tag_v2.get(_XMP_TAG)
        except _PILLOW_ERRORS as exc:
            raise CorruptInput(f"unreadable TIFF header: {exc}") from None
        if isinstance(raw, (bytes, bytearray)):
            return bytes(raw)
        return raw.encode() if isinstance(raw, str) else None

    def put_xmp(self, data: bytes, packet: bytes) -> bytes:
        """Lossless: re-save with tag 700 (XMP) replaced, every other tag and the compression kept."""
        try:
            im = TiffImagePlugin.TiffImageFile(io.BytesIO(data))
            im.load()
        except _PILLOW_ERRORS as exc:
            raise CorruptInput(f"unreadable TIFF: {exc}") from None
        with im:
            tags = dict(im.tag_v2)
            tags[_XMP_TAG] = packet
            buf = io.BytesIO()
            try:
                im.save(buf, format="TIFF", tiffinfo=tags, compression=im.info.get("compression", "raw"))
            except self.save_errors as exc:
                raise KzlabelError(f"could not encode {self.name}: {exc}", format=self.id) from None
        return buf.getvalue()

    def save_params(self, doc: ImageDoc, im: Image.Image) -> dict[str, Any]:
        compression = doc.info.get("compression", "tiff_lzw")
        return {"compression": "tiff_lzw" if compression == "jpeg" else compression}
