"""GIF extension blocks, and the XMP packet in the ``XMP DataXMP`` application extension.

XMP in GIF is stored raw, not in sub-blocks: a decoder walking it as sub-blocks treats the packet's bytes as block
lengths, and the 258-byte "magic trailer" (0x01, 0xFF, 0xFE ... 0x01, 0x00, then the terminator) brings any such
walk back to the terminator. That only works when the packet holds no NUL byte, which UTF-8 XML never does.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import CorruptInput

__all__ = ["MAGIC_TRAILER", "XMP_APP_ID", "Block", "blocks", "body_start", "get_xmp", "put_xmp"]

XMP_APP_ID = b"XMP DataXMP"  # application identifier (8 bytes) + authentication code (3 bytes)
MAGIC_TRAILER = bytes([1]) + bytes(range(255, -1, -1)) + b"\x00"  # ends with the block terminator
_XMP_HEAD = b"\x21\xff\x0b" + XMP_APP_ID  # extension introducer, application label, block size 11, identifier


class Block(NamedTuple):
    """An extension block ``data[start:end]`` (introducer to terminator); ``is_xmp`` for the XMP extension."""

    start: int
    end: int
    is_xmp: bool


def body_start(data: bytes) -> int:
    """Offset after the header, logical screen descriptor and global colour table."""
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 13:
        raise CorruptInput("not a GIF file")
    flags = data[10]
    start = 13 + (3 * 2 ** ((flags & 7) + 1) if flags & 0x80 else 0)
    if start > len(data):
        raise CorruptInput("truncated GIF colour table")
    return start


def blocks(data: bytes) -> list[Block]:
    """The extension blocks before the first image descriptor (where XMP belongs); the rest is not parsed."""
    out, pos = [], body_start(data)
    while pos < len(data) and data[pos] == 0x21:
        if data[pos : pos + len(_XMP_HEAD)] == _XMP_HEAD:
            at = data.find(MAGIC_TRAILER, pos + len(_XMP_HEAD))
            if at < 0:
                raise CorruptInput("GIF XMP extension without its magic trailer")
            out.append(Block(pos, at + len(MAGIC_TRAILER), True))
        else:
            p = pos + 2  # introducer, label, then sub-blocks up to a zero length
            while p < len(data) and data[p] != 0:
                p += data[p] + 1
            if p >= len(data):
                raise CorruptInput("truncated GIF extension block")
            out.append(Block(pos, p + 1, False))
        pos = out[-1].end
    return out


def get_xmp(data: bytes) -> bytes | None:
    """The packet of the first XMP application extension, or None when there is none."""
    for b in blocks(data):
        if b.is_xmp:
            return data[b.start + len(_XMP_HEAD) : b.end - len(MAGIC_TRAILER)]
    return None


def put_xmp(data: bytes, packet: bytes) -> bytes:
    """``data`` with one XMP extension after the other leading extensions (existing XMP dropped), every other byte
    kept. A packet with a NUL byte raises ValueError: the magic trailer could not make it safe for GIF decoders."""
    if b"\x00" in packet:
        raise ValueError("an XMP packet in GIF cannot contain NUL bytes")
    start = body_start(data)
    found = blocks(data)
    end = found[-1].end if found else start
    kept = b"".join(data[b.start : b.end] for b in found if not b.is_xmp)
    return data[:start] + kept + _XMP_HEAD + packet + MAGIC_TRAILER + data[end:]
