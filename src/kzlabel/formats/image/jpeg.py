"""JPEG: re-encoded at the source's estimated quality and chroma subsampling, with a watermark strong enough for that
quality, and the GB 45438 label also in EXIF (UserComment ``{"AIGC": {...}}``)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import IO, Any

import numpy as np
import piexif
from PIL import Image, ImageFile, JpegImagePlugin

from ...containers import jpeg
from ...errors import KzlabelError
from ...label import Label
from .base import ImageDoc, ImageHandler

__all__ = ["Jpeg", "estimate_jpeg_quality", "jpeg_watermark_strength"]

# IJG's standard luminance quantisation table (JPEG Annex K), in natural (row-major) order as Pillow reports it.
_IJG_LUMA = np.array(
    [
        16,
        11,
        10,
        16,
        24,
        40,
        51,
        61,
        12,
        12,
        14,
        19,
        26,
        58,
        60,
        55,
        14,
        13,
        16,
        24,
        40,
        57,
        69,
        56,
        14,
        17,
        22,
        29,
        51,
        87,
        80,
        62,
        18,
        22,
        37,
        56,
        68,
        109,
        103,
        77,
        24,
        35,
        55,
        64,
        81,
        104,
        113,
        92,
        49,
        64,
        78,
        87,
        103,
        121,
        120,
        101,
        72,
        92,
        95,
        98,
        112,
        100,
        103,
        99,
    ],
    dtype=np.float64,
)


def estimate_jpeg_quality(qtables: Mapping[int, Any]) -> int:
    """The IJG quality whose scaled standard table is closest to the file's luma table (90 when unknown)."""
    table = qtables.get(0) if qtables else None
    if table is None or len(table) != 64:
        return 90
    q = np.arange(1, 101, dtype=np.float64)[:, None]
    scale = np.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
    candidates = np.clip(np.floor((_IJG_LUMA[None, :] * scale + 50) / 100), 1, 255)
    error = np.abs(candidates - np.asarray(table, dtype=np.float64)[None, :]).sum(axis=1)
    return int(np.argmin(error)) + 1


def jpeg_watermark_strength(quality: int) -> float:
    """Watermark amplitude for a JPEG written at ``quality``: kept just above the codec's own quantisation noise.

    At quality ≥ 90 the default amplitude (≈ 43-45 dB PSNR) survives; coarser tables erase part of it, so the amplitude
    grows linearly to 2.2× at quality 54 and below — still well under the noise such a JPEG already carries.
    """
    return float(min(2.2, max(1.0, 1.0 + (90 - quality) / 30)))


class Jpeg(ImageHandler):
    id, name, mime, extensions, pil = "jpeg", "JPEG", "image/jpeg", (".jpg", ".jpeg", ".jpe", ".jfif"), "JPEG"

    def score(self, header: bytes, name: str | None) -> int:
        return 100 if header.startswith(b"\xff\xd8\xff") else 0

    def image_file(self, fp: IO[bytes]) -> ImageFile.ImageFile:
        return JpegImagePlugin.jpeg_factory(fp)  # what Image.open uses: a multi-picture file opens as MPO

    def get_xmp(self, data: bytes) -> bytes | None:
        return jpeg.get_xmp(data)

    def put_xmp(self, data: bytes, packet: bytes) -> bytes:
        return jpeg.put_xmp(data, packet)

    def source_info(self, im: Image.Image, data: bytes) -> dict[str, Any]:
        return {
            "quality": estimate_jpeg_quality(getattr(im, "quantization", {}) or {}),
            "subsampling": JpegImagePlugin.get_sampling(im) if im.mode != "CMYK" else 0,
        }

    def save_params(self, doc: ImageDoc, im: Image.Image) -> dict[str, Any]:
        info = doc.info
        return {
            "quality": info["quality"],
            "subsampling": info["subsampling"],
            "progressive": "progressive" in info,
            "dpi": info.get("dpi", (72, 72)),
        }

    def watermark_strength(self, doc: ImageDoc) -> float:
        return jpeg_watermark_strength(doc.info["quality"])

    def write_carriers(self, data: bytes, label: Label, token: str) -> bytes:
        """GB 45438's JPEG carrier: EXIF UserComment ``{"AIGC": {...}}`` (ASCII), other EXIF kept."""
        try:
            exif = piexif.load(data)
        except Exception:  # noqa: BLE001 - piexif raises bare errors on odd EXIF; start a fresh block then
            exif = {"0th": {}, "Exif": {}, "GPS": {}, "1st": {}, "thumbnail": None}
        comment = json.dumps({"AIGC": json.loads(label.aigc_json(token))}, separators=(",", ":"))
        exif.setdefault("Exif", {})[piexif.ExifIFD.UserComment] = b"ASCII\x00\x00\x00" + comment.encode("ascii")
        try:
            out = io.BytesIO()
            piexif.insert(piexif.dump(exif), data, out)
            return out.getvalue()
        except Exception as exc:  # noqa: BLE001
            raise KzlabelError(f"could not write EXIF: {exc}", format="jpeg") from None
