"""Invisible watermarks: pure arrays in, arrays out (no file I/O).

    >>> marked = embed_image(pixels, b"\\x00" * 8)           # H×W×3 uint8 RGB (grey / RGBA accepted)
    >>> detect_image(marked).payload
    b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00'
    >>> detect_audio(embed_audio(samples, 44100, payload), 44100).payload   # float32 (n,) or (n, channels)

``key=None`` uses :data:`DEFAULT_KEY`, kzlabel's public key, so any verifier can find kzlabel marks; pass a private
key to make marks only its holder can detect. See docs/watermark.md for the design and the p-value calibration.

The image and audio halves load only when first used (module ``__getattr__``): the image side pulls in OpenCV,
the audio side scipy.signal (~0.9 s), and a JPEG never needs the audio side.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .core import DEFAULT_KEY, PAYLOAD_BITS, WatermarkResult

if TYPE_CHECKING:
    from .audio import detect_audio, embed_audio
    from .image import detect_after_jpeg, detect_image, embed_image

__all__ = [
    "DEFAULT_KEY",
    "PAYLOAD_BITS",
    "WatermarkResult",
    "detect_after_jpeg",
    "detect_audio",
    "detect_image",
    "embed_audio",
    "embed_image",
]

# lazily re-exported name -> the submodule that defines it
_LAZY = {
    "detect_audio": "audio",
    "embed_audio": "audio",
    "detect_image": "image",
    "embed_image": "image",
    "detect_after_jpeg": "image",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
