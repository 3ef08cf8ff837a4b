"""Invisible watermarks: pure arrays in, arrays out (no file I/O).

    >>> marked = embed_image(pixels, b"\\x00" * 8)           # H×W×3 uint8 RGB (grey / RGBA accepted)
    >>> detect_image(marked).payload
    b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00'
    >>> detect_audio(embed_audio(samples, 44100, payload), 44100).payload   # float32 (n,) or (n, channels)

``key=None`` uses :data:`DEFAULT_KEY`, kzlabel's public key, so any verifier can find kzlabel marks; pass a private
key to make marks only its holder can detect. See docs/watermark.md for the design and the p-value calibration.
"""

from __future__ import annotations

from .audio import detect_audio, embed_audio
from .core import DEFAULT_KEY, PAYLOAD_BITS
from .image import WatermarkResult, detect_image, embed_image

__all__ = [
    "DEFAULT_KEY",
    "PAYLOAD_BITS",
    "WatermarkResult",
    "detect_audio",
    "detect_image",
    "embed_audio",
    "embed_image",
]
