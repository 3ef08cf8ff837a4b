"""JPEG marker segments and the XMP packet in APP1.

Only the segments before the first scan (SOS) are parsed; the scan and everything after it are copied as they are,
so putting XMP never re-encodes or even reads the entropy-coded data.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import CorruptInput, KzlabelError

__all__ = ["MAX_XMP", "XMP_HEADER", "Segment", "get_xmp", "is_xmp", "put_xmp", "segments"]

SOI = b"\xff\xd8"
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
# a segment's 16-bit length counts itself: 65535 - 2 bytes of body, minus the XMP namespace header. Larger packets
# would need ExtendedXMP (a GUID-linked chain of APP1 segments), which kzlabel does not write: put_xmp refuses them
MAX_XMP = 65535 - 2 - len(XMP_HEADER)
_APP0, _APP1, _SOS, _EOI = 0xE0, 0xE1, 0xDA, 0xD9
_STANDALONE = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})  # TEM, SOI, RST0-7: a marker without a length


class Segment(NamedTuple):
    """A marker segment: ``data[start:end]`` is ``FF marker length body``."""

    marker: int
    start: int
    end: int


def segments(data: bytes) -> tuple[list[Segment], int]:
    """The segments before the scan, and the offset from which the rest (SOS onwards) is copied unparsed.

    Fill bytes and length-less markers are skipped; the walk stops at SOS, EOI or a byte that is not a marker (as
    Pillow does, trailing junk is not an error), and that offset is returned so the rest is kept verbatim.
    """
    if data[:2] != SOI:
        raise CorruptInput("not a JPEG file (no SOI marker)")
    out, pos = [], 2
    while pos + 1 < len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (_SOS, _EOI):
            break
        if pos + 4 > len(data):
            raise CorruptInput("truncated JPEG segment header")
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if length < 2 or end > len(data):
            raise CorruptInput(f"JPEG segment FF{marker:02X} runs past the end of the file")
        out.append(Segment(marker, pos, end))
        pos = end
    return out, pos


def is_xmp(data: bytes, seg: Segment) -> bool:
    """Whether ``seg`` is the standard XMP APP1 segment (not EXIF, not an ExtendedXMP part)."""
    return seg.marker == _APP1 and data[seg.start + 4 : seg.start + 4 + len(XMP_HEADER)] == XMP_HEADER


def get_xmp(data: bytes) -> bytes | None:
    """The packet of the first XMP APP1 segment, or None when there is none."""
    for seg in segments(data)[0]:
        if is_xmp(data, seg):
            return data[seg.start + 4 + len(XMP_HEADER) : seg.end]
    return None


def put_xmp(data: bytes, packet: bytes) -> bytes:
    """``data`` with one XMP segment holding ``packet``, every other segment and the scan kept byte for byte.

    The segment goes right after the leading APP0/APP1 run (JFIF, EXIF), where readers look for it first; existing
    XMP segments are dropped, so putting twice leaves one packet. A packet over :data:`MAX_XMP` bytes raises
    KzlabelError (one segment cannot hold it).
    """
    if len(packet) > MAX_XMP:
        raise KzlabelError("XMP packet too large for one JPEG segment")
    found, tail = segments(data)
    keep = [seg for seg in found if not is_xmp(data, seg)]
    lead = 0
    while lead < len(keep) and keep[lead].marker in (_APP0, _APP1):
        lead += 1
    body = XMP_HEADER + packet
    new = b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body
    parts = [SOI, *(data[s.start : s.end] for s in keep[:lead]), new, *(data[s.start : s.end] for s in keep[lead:])]
    return b"".join(parts) + data[tail:]
