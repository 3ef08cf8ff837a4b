"""Image transformations: what photo sites, social networks and messengers do to an upload.

Each is a pixel edit followed by a real encoder (Pillow), in two forms built from the same parts: a file transform
for `kzlabel stress` (decode the labelled file as a viewer shows it, edit, encode into the work folder) and an array
attack for benchmarks/bench_watermark.py (:func:`attack`: RGB array in, RGB array out, through the same encoder).
Rows that should show one effect alone save losslessly (PNG): the resize rows measure the resize, not a JPEG; the
screenshot row is the one that combines a downscale, a crop and a PNG, as a screenshot does.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from ... import formats
from ...containers import jpeg as jpeg_container
from ...containers import png as png_container
from ...containers import riff
from ...errors import CorruptInput, UnsupportedFormat
from ...formats.image.base import ImageHandler
from ...io import Input
from . import NotApplicable, Original, Transform

__all__ = [
    "TRANSFORMS",
    "Encoding",
    "STEPS",
    "ImageStep",
    "decode",
    "jpeg",
    "rotate",
    "scale",
    "screenshot",
    "strip_metadata",
    "webp",
]

# what Pillow raises on pixels it cannot decode or convert
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)


@dataclass(frozen=True)
class Encoding:
    """A Pillow encoder and its settings: what a platform re-encodes into."""

    format: str  # Pillow's format name
    suffix: str
    params: dict[str, Any] = field(default_factory=dict)

    def encode(self, im: Image.Image) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format=self.format, **self.params)
        return buf.getvalue()


PNG = Encoding("PNG", ".png")


def _jpeg_encoding(quality: int, subsampling: int) -> Encoding:
    # subsampling: Pillow's 0 = 4:4:4, 2 = 4:2:0 (what platforms and libjpeg's defaults use)
    return Encoding("JPEG", ".jpg", {"quality": quality, "subsampling": subsampling})


def _webp_encoding(quality: int) -> Encoding:
    return Encoding("WEBP", ".webp", {"quality": quality})


def _rgb(im: Image.Image) -> Image.Image:
    """8-bit RGB as a platform shows it: transparency flattened onto white, 16-bit and float scaled to 8 bits."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def decode(original: Original) -> Image.Image:
    """The labelled picture as a viewer shows it (EXIF orientation applied, first frame), as 8-bit RGB; decoded by
    the image handler kzlabel verifies it with, so the pixel limit and every format it reads apply."""
    inp = Input(path=original.path, name=original.path.name)
    handler = formats.detect(inp)
    if not isinstance(handler, ImageHandler):
        raise UnsupportedFormat(f"not an image ({handler.id})", source=str(original.path))
    im = handler.open_image(inp, original.limits)
    try:
        return _rgb(ImageOps.exif_transpose(im) or im)
    except _DECODE_ERRORS as exc:
        raise CorruptInput(f"cannot decode the picture: {exc}", source=str(original.path)) from exc


# ------------------------------------------------------------------------------------------------ pixel edits
def _same(im: Image.Image) -> Image.Image:
    return im


def _scaled(im: Image.Image, factor: float) -> Image.Image:
    size = (max(1, round(im.width * factor)), max(1, round(im.height * factor)))
    return im.resize(size, Image.Resampling.BICUBIC)


def _fit_long_side(side: int) -> Callable[[Image.Image], Image.Image]:
    def edit(im: Image.Image) -> Image.Image:
        long = max(im.size)
        if long <= side:
            raise NotApplicable(f"long side {long} px is not over {side} px (platforms do not upscale)")
        return _scaled(im, side / long)

    return edit


# a screenshot of the picture shown at 3/4 size, cut off-centre: a status bar's worth (4%) off the top, 2% off the
# left, 1% off the right and bottom
SCREEN_SCALE = 0.75
SCREEN_CROP = (0.02, 0.04, 0.01, 0.01)  # left, top, right, bottom


def _screenshot(im: Image.Image) -> Image.Image:
    small = _scaled(im, SCREEN_SCALE)
    w, h = small.size
    left, top, right, bottom = SCREEN_CROP
    return small.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


def _greyscale(im: Image.Image) -> Image.Image:
    return im.convert("L")


def _rotated(degrees: float) -> Callable[[Image.Image], Image.Image]:
    def edit(im: Image.Image) -> Image.Image:
        # counter-clockwise, same size, corners filled black (as benchmarks/bench_watermark.py has always done)
        return im.rotate(degrees, resample=Image.Resampling.BICUBIC)

    return edit


@dataclass(frozen=True)
class ImageStep:
    """A pixel edit and the encoder the result is saved with."""

    edit: Callable[[Image.Image], Image.Image]
    encoding: Encoding

    def write(self, original: Original, work: Path, name: str) -> Path:
        out = work / f"{name}{self.encoding.suffix}"
        out.write_bytes(self.encoding.encode(self.edit(decode(original))))
        return out

    def attack(self, rgb: np.ndarray) -> np.ndarray:
        """The same edit and encoder on an H×W×3 uint8 array; the decoded result, RGB (grey replicated)."""
        data = self.encoding.encode(self.edit(Image.fromarray(rgb)))
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))


# ----------------------------------------------------------------------------- array kernels (the benchmarks')
def jpeg(rgb: np.ndarray, quality: int, subsampling: int = 2) -> np.ndarray:
    """JPEG round trip at ``quality``; ``subsampling`` 0 = 4:4:4, 2 = 4:2:0."""
    return ImageStep(_same, _jpeg_encoding(quality, subsampling)).attack(rgb)


def webp(rgb: np.ndarray, quality: int) -> np.ndarray:
    return ImageStep(_same, _webp_encoding(quality)).attack(rgb)


def scale(rgb: np.ndarray, factor: float) -> np.ndarray:
    """Bicubic resize by ``factor`` (no encoder: the array itself)."""
    return np.asarray(_scaled(Image.fromarray(rgb), factor))


def rotate(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """Bicubic rotation, counter-clockwise, same size, black corners (no encoder)."""
    return np.asarray(_rotated(degrees)(Image.fromarray(rgb)))


def screenshot(rgb: np.ndarray) -> np.ndarray:
    return ImageStep(_screenshot, PNG).attack(rgb)


# ------------------------------------------------------------------------------------------- metadata strip
# JPEG: APP1 (EXIF, XMP), APP11 (C2PA JUMBF), APP13 (IPTC/Photoshop) and comments go; APP0 (JFIF), APP2 (ICC profile)
# and APP14 (Adobe colour transform: needed to decode the colours right) stay, with the scan copied as it is
_JPEG_KEEP = frozenset({0xE0, 0xE2, 0xEE})
_JPEG_APPN = frozenset(range(0xE0, 0xF0)) | {0xFE}
# PNG: the chunks that say how pixels look stay; text, EXIF, time, C2PA (caBX) and any other ancillary chunk go
_PNG_KEEP = frozenset(
    {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"pHYs", b"bKGD"}
    | {b"acTL", b"fcTL", b"fdAT"}
)
# WebP: the image chunks stay; EXIF, XMP and C2PA go, and the VP8X flags stop announcing them
_WEBP_DROP = frozenset({b"EXIF", b"XMP ", b"C2PA"})
_VP8X_EXIF_XMP = 0x08 | 0x04


def _strip_jpeg(data: bytes) -> bytes:
    segs, scan = jpeg_container.segments(data)
    kept = [data[s.start : s.end] for s in segs if s.marker not in _JPEG_APPN or s.marker in _JPEG_KEEP]
    return data[:2] + b"".join(kept) + data[scan:]


def _strip_png(data: bytes) -> bytes:
    kept = [data[c.start : c.end] for c in png_container.chunks(data) if c.kind in _PNG_KEEP]
    return png_container.SIGNATURE + b"".join(kept)


def _strip_webp(data: bytes) -> bytes:
    body = b""
    for c in riff.chunks(data):
        if c.kind in _WEBP_DROP:
            continue
        raw = bytearray(data[c.start : c.end])
        if c.kind == b"VP8X" and c.size >= 1:
            raw[8] &= ~_VP8X_EXIF_XMP & 0xFF
        body += bytes(raw)
    return b"RIFF" + (4 + len(body)).to_bytes(4, "little") + b"WEBP" + body


_STRIPPERS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "jpeg": (".jpg", _strip_jpeg),
    "png": (".png", _strip_png),
    "webp": (".webp", _strip_webp),
}


def strip_metadata(original: Original, work: Path) -> Path:
    """Every metadata block removed, the pixels untouched: JPEG, PNG and WebP by container surgery (the compressed
    image copied byte for byte, as ``exiftool -all=`` or ``jpegtran -copy none`` would); other formats (TIFF, GIF,
    AVIF, HEIF) have their displayed pixels written to a PNG, which carries none."""
    if original.format in _STRIPPERS:
        suffix, strip = _STRIPPERS[original.format]
        out = work / f"metadata-strip{suffix}"
        out.write_bytes(strip(original.path.read_bytes()))
        return out
    return ImageStep(_same, PNG).write(original, work, "metadata-strip")


def _step(name: str, title: str, step: ImageStep) -> Transform:
    return Transform(name, title, lambda original, work: step.write(original, work, name))


# report order; the steps are module-level so the benchmarks run the very same ones (STEPS[name].attack(rgb))
STEPS: dict[str, tuple[str, ImageStep]] = {
    "jpeg85": ("JPEG quality 85", ImageStep(_same, _jpeg_encoding(85, 2))),
    "jpeg75": ("JPEG quality 75", ImageStep(_same, _jpeg_encoding(75, 2))),
    "jpeg50": ("JPEG quality 50", ImageStep(_same, _jpeg_encoding(50, 2))),
    "webp75": ("WebP quality 75", ImageStep(_same, _webp_encoding(75))),
    "resize1080": ("resize to 1080 px long side (PNG)", ImageStep(_fit_long_side(1080), PNG)),
    "resize512": ("resize to 512 px long side (PNG)", ImageStep(_fit_long_side(512), PNG)),
    "screenshot": ("screenshot: 3/4 size, cropped off-centre, PNG", ImageStep(_screenshot, PNG)),
    "greyscale": ("greyscale (PNG)", ImageStep(_greyscale, PNG)),
    "rotate2": ("rotate 2° (PNG)", ImageStep(_rotated(2.0), PNG)),
}

TRANSFORMS: list[Transform] = [
    *(_step(name, title, step) for name, (title, step) in list(STEPS.items())[:7]),
    Transform("metadata-strip", "metadata stripped, pixels untouched", strip_metadata),
    *(_step(name, title, step) for name, (title, step) in list(STEPS.items())[7:]),
]
