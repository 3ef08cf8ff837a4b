"""PNG chunks and the XMP packet in an ``iTXt`` chunk (keyword ``XML:com.adobe.xmp``)."""

from __future__ import annotations

import zlib
from typing import NamedTuple

from ..errors import CorruptInput

__all__ = [
    "C2PA",
    "LABEL",
    "PROBE",
    "SIGNATURE",
    "XMP_KEYWORD",
    "Chunk",
    "animated",
    "chunk",
    "chunks",
    "crc",
    "get_label",
    "get_xmp",
    "is_xmp",
    "probe_fits",
    "put_label",
    "put_xmp",
]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
C2PA = b"caBX"  # the chunk holding a C2PA manifest store (C2PA 2.x, PNG)
# kzlabel's private chunk for its signed label (ancillary, private, safe to copy): an APNG's, after the frames
LABEL = b"kzLb"
# ffmpeg's first probe read: its APNG probe walks the chunks in these bytes and gives up (the file is then read as
# one still PNG) unless every chunk before the first IDAT, and IDAT's own 8-byte header, lies within them
PROBE = 2048
XMP_KEYWORD = b"XML:com.adobe.xmp"


class Chunk(NamedTuple):
    """A chunk: ``data[start:end]`` is ``length type body crc``."""

    kind: bytes
    start: int
    end: int


def chunks(data: bytes) -> list[Chunk]:
    """Every chunk up to and including IEND (bytes after IEND are not part of the image and are not listed).

    A chunk whose length runs past the end is CorruptInput; a file that ends exactly after a chunk without IEND is
    listed as far as it goes (Pillow decodes such files, so its chunks are kept rather than refused).
    """
    if not data.startswith(SIGNATURE):
        raise CorruptInput("not a PNG file (bad signature)")
    out, pos = [], len(SIGNATURE)
    while pos < len(data):
        if pos + 12 > len(data):
            raise CorruptInput("truncated PNG chunk header")
        end = pos + 12 + int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if end > len(data):
            raise CorruptInput(f"PNG chunk {kind!r} runs past the end of the file")
        out.append(Chunk(kind, pos, end))
        pos = end
        if kind == b"IEND":
            break
    return out


def animated(data: bytes) -> bool:
    """Whether ``data`` is an APNG: an ``acTL`` chunk before the first IDAT."""
    for c in chunks(data):
        if c.kind == b"IDAT":
            return False
        if c.kind == b"acTL":
            return True
    return False


def probe_fits(data: bytes) -> bool:
    """Whether everything before the first IDAT, and its header, lies within ffmpeg's probe read (PROBE)."""
    return any(c.kind == b"IDAT" and c.start + 8 <= PROBE for c in chunks(data))


def get_label(data: bytes) -> str | None:
    """The signed label in the first LABEL chunk (ASCII), None when there is none."""
    for c in chunks(data):
        if c.kind == LABEL:
            return data[c.start + 8 : c.end - 4].decode("ascii", "replace")
    return None


def put_label(data: bytes, token: str) -> bytes:
    """``data`` with one LABEL chunk holding ``token`` just before IEND (existing ones dropped)."""
    found = [c for c in chunks(data) if c.kind not in (LABEL, b"IEND")]
    body = [data[c.start : c.end] for c in found]
    return b"".join([SIGNATURE, *body, chunk(LABEL, token.encode("ascii")), chunk(b"IEND", b"")])


def crc(kind: bytes, body: bytes) -> bytes:
    """A chunk's CRC field: CRC-32 over its type and data."""
    return (zlib.crc32(body, zlib.crc32(kind)) & 0xFFFFFFFF).to_bytes(4, "big")


def chunk(kind: bytes, body: bytes) -> bytes:
    """A serialised chunk with its CRC."""
    return len(body).to_bytes(4, "big") + kind + body + crc(kind, body)


def is_xmp(data: bytes, c: Chunk) -> bool:
    """Whether ``c`` is an ``iTXt`` chunk with the XMP keyword."""
    return c.kind == b"iTXt" and data[c.start + 8 : c.start + 9 + len(XMP_KEYWORD)] == XMP_KEYWORD + b"\x00"


def get_xmp(data: bytes) -> bytes | None:
    """The text of the first XMP ``iTXt`` chunk (inflated when compressed), or None when there is none."""
    for c in chunks(data):
        if is_xmp(data, c):
            return _itxt_text(data[c.start + 9 + len(XMP_KEYWORD) : c.end - 4])
    return None


def _itxt_text(rest: bytes) -> bytes:
    """iTXt after the keyword: compression flag, method, language\\0, translated keyword\\0, text."""
    parts = rest[2:].split(b"\x00", 2)
    if len(rest) < 2 or len(parts) < 3:
        raise CorruptInput("malformed XMP iTXt chunk")
    flag, method, text = rest[0], rest[1], parts[2]
    if flag == 0:
        return text
    if method != 0:
        raise CorruptInput(f"XMP iTXt chunk compressed with unknown method {method}")
    try:
        return zlib.decompress(text)
    except zlib.error as exc:
        raise CorruptInput(f"XMP iTXt chunk does not inflate: {exc}") from None


def put_xmp(data: bytes, packet: bytes) -> bytes:
    """``data`` with one uncompressed XMP ``iTXt`` chunk right after IHDR (existing ones dropped), every other chunk
    kept byte for byte. Readers that stop early (exiftool's fast mode) find it there."""
    found = chunks(data)
    if not found or found[0].kind != b"IHDR":
        raise CorruptInput("PNG file does not start with IHDR")
    new = chunk(b"iTXt", XMP_KEYWORD + b"\x00\x00\x00\x00\x00" + packet)
    out = [data[: len(SIGNATURE)], data[found[0].start : found[0].end], new]
    out += [data[c.start : c.end] for c in found[1:] if not is_xmp(data, c)]
    return b"".join(out)
