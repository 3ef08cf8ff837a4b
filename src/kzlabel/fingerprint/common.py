"""What the sound and frame fingerprints share: short segment digests and the excerpt a match can find.

Segment digests locate a change. A label holds the first :data:`SEG_DIGEST` bytes of a SHA-256 per segment (the
whole content is bound by a full SHA-256 beside them): enough to tell which segment differs, at 4 bytes a segment.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SEG_DIGEST", "Excerpt", "pack_digests", "segment_digests", "unpack_digests"]

SEG_DIGEST = 4  # bytes kept of each segment's SHA-256: a wrong "unchanged" per segment has odds 2^-32


def segment_digests(parts: Sequence[bytes], per: int) -> list[bytes]:
    """One digest per run of ``per`` consecutive part digests (whole runs only)."""
    return [
        hashlib.sha256(b"".join(parts[k * per : (k + 1) * per])).digest()[:SEG_DIGEST]
        for k in range(len(parts) // max(per, 1))
    ]


def pack_digests(digests: Iterable[bytes]) -> str:
    return base64.b64encode(b"".join(digests)).decode("ascii")


def unpack_digests(text: Any) -> list[bytes]:
    """The segment digests of a label (ValueError/TypeError when malformed)."""
    raw = base64.b64decode(str(text), validate=True)
    if len(raw) % SEG_DIGEST:
        raise ValueError("segment digests of a wrong length")
    return [raw[i : i + SEG_DIGEST] for i in range(0, len(raw), SEG_DIGEST)]


@dataclass(frozen=True)
class Excerpt:
    """The stretch ``start_s``–``end_s`` of signed content lasting ``signed_s`` that a shorter file holds."""

    start_s: float
    end_s: float
    signed_s: float

    def phrase(self, what: str) -> str:
        return f"an excerpt {self.start_s:.1f}–{self.end_s:.1f} s of the signed {self.signed_s:.1f} s of {what}"

    def data(self) -> dict[str, float]:
        return {"start_s": round(self.start_s, 2), "end_s": round(self.end_s, 2), "signed_s": round(self.signed_s, 2)}
