"""Still images: PNG, JPEG, WebP, TIFF, GIF and AVIF with Pillow, HEIF/HEIC with pillow-heif when installed.

One handler class per format (modules beside this one) over the shared steps in :mod:`.base`; the container byte
surgery they call lives in :mod:`kzlabel.containers`. Registered here in detection-tie order.
"""

from __future__ import annotations

from .. import register
from .base import ImageDoc, ImageHandler
from .gif import Gif
from .heif import HEIF_FAMILY_QUALITY, Avif, Heif, heif_codec_available
from .jpeg import Jpeg, estimate_jpeg_quality, jpeg_watermark_strength
from .png import Png
from .tiff import Tiff
from .webp import WebP

__all__ = [
    "HEIF_FAMILY_QUALITY",
    "Avif",
    "Gif",
    "Heif",
    "ImageDoc",
    "ImageHandler",
    "Jpeg",
    "Png",
    "Tiff",
    "WebP",
    "estimate_jpeg_quality",
    "heif_codec_available",
    "jpeg_watermark_strength",
]

for _handler in (Png(), Jpeg(), WebP(), Tiff(), Gif(), Avif(), Heif()):
    register(_handler)
