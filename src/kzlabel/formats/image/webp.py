"""WebP: lossless output when the source was lossless (VP8L), else lossy at 95; XMP in the RIFF ``XMP `` chunk.

Animated WebP keeps each frame's duration and the loop count; a lossy one is encoded at the highest quality that
keeps it no larger than the source (ANIMATED_QUALITY), since a still's quality 95 would double an animation's size.
"""

from __future__ import annotations

from typing import IO, Any

from PIL import Image, ImageFile, WebPImagePlugin

from ...containers import riff
from .base import ImageDoc, ImageHandler

__all__ = ["ANIMATED_QUALITY", "WebP"]

ANIMATED_QUALITY = (50, 95)  # the qualities a lossy animation's size is matched over


class WebP(ImageHandler):
    id, name, mime, extensions, pil = "webp", "WebP", "image/webp", (".webp",), "WEBP"
    animated = True
    # VP8 at a lossy animation's usual quality (~75) keeps less of the mark than AV1: at 43 dB (strength ~2) the
    # test animation's frames needed 1.5-1.7x the source's size to keep it in every frame, at the 3.0 cap (~41 dB)
    # 1.0-1.2x (docs/images.md#animated-images)
    animation_psnr = 40.0

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

    def lossy_animation(self, doc: ImageDoc) -> bool:
        return not doc.info.get("lossless", False)

    def animation_params(self, doc: ImageDoc, frames: list[Image.Image]) -> tuple[list[Image.Image], dict[str, Any]]:
        lossless = doc.info.get("lossless", False)
        # minimize_size: libwebp's animation encoder tries each frame as a sub-rectangle over the previous one and as
        # a key frame, and keeps the smaller (the mark is the same wherever the picture is still, so those pixels are
        # left out). At the same quality search it brought the bundled WebP from 1.02-1.26x the source to 0.98-1.18x
        # (six content ids), a cinemagraph from 1.29x to 1.00x, a flat cartoon from 1.85x to 1.63x, and the search
        # ends sooner (docs/images.md#animated-images, benchmarks/bench_sizes.py)
        params: dict[str, Any] = {"lossless": lossless, "method": 4, "minimize_size": True}
        if lossless:
            return frames, params | {"quality": 100}
        return frames, self.size_matched(doc, frames, params, ANIMATED_QUALITY)
