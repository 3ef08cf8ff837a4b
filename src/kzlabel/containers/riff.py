"""RIFF chunks, and the XMP packet in WebP's ``XMP `` chunk.

The walker reads chunk headers only, from bytes or from a seekable binary file, so a WAV of gigabytes can share it
with WebP: its samples are never read to list its chunks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO

from ..errors import CorruptInput

__all__ = ["Chunk", "chunk", "chunks", "form", "get_xmp", "put_xmp", "reserve", "webp_canvas"]

_VP8X_XMP = 0x04  # VP8X flag bits (WebP container spec): ICC 0x20, alpha 0x10, EXIF 0x08, XMP 0x04, animation 0x02
_VP8X_ALPHA = 0x10


@dataclass(frozen=True)
class Chunk:
    """A chunk: an 8-byte header at ``start``, ``size`` bytes of body, then a pad byte when ``size`` is odd."""

    kind: bytes
    start: int
    size: int

    @property
    def body(self) -> int:
        """Offset of the body."""
        return self.start + 8

    @property
    def end(self) -> int:
        """Offset after the body and its pad byte (one past the data when a file's final pad byte is missing)."""
        return self.start + 8 + self.size + (self.size & 1)


def form(source: bytes | IO[bytes]) -> bytes:
    """The form type of a RIFF file (``WEBP``, ``WAVE``, ...); CorruptInput when it is not RIFF."""
    head = _read(source, 0, 12)
    if len(head) < 12 or head[:4] != b"RIFF":
        raise CorruptInput("not a RIFF file")
    return head[8:12]


def chunks(source: bytes | IO[bytes]) -> list[Chunk]:
    """Every top-level chunk after the 12-byte RIFF header, from the chunk headers alone.

    The walk goes to the end of the data, not to the RIFF size field (writers that stream often leave it wrong), so
    nothing after a wrong size is dropped when a file is rewritten. A body running past the end is CorruptInput; a
    missing final pad byte and fewer than 8 trailing bytes are tolerated.
    """
    form(source)
    total = _size(source)
    out, pos = [], 12
    while pos + 8 <= total:
        head = _read(source, pos, 8)
        c = Chunk(head[:4], pos, int.from_bytes(head[4:8], "little"))
        if c.body + c.size > total:
            raise CorruptInput(f"RIFF chunk {c.kind!r} runs past the end of the file")
        out.append(c)
        pos = c.end
    return out


def chunk(kind: bytes, body: bytes) -> bytes:
    """A serialised chunk, padded to an even length."""
    return kind + len(body).to_bytes(4, "little") + body + (b"\x00" if len(body) & 1 else b"")


def reserve(src: IO[bytes], dst: IO[bytes], kind: bytes, size: int) -> Chunk:
    """Copy the RIFF file ``src`` to ``dst`` (at its start) without its ``kind`` chunks and with a zero-filled
    ``kind`` chunk of ``size`` bytes last, the RIFF size field set for it; returns that chunk. Chunks are copied in
    1 MiB reads (a WAV of gigabytes is never held), each with its pad byte (a missing final one added)."""
    kept = [c for c in chunks(src) if c.kind != kind]
    dst.write(_read(src, 0, 12))
    for c in kept:
        src.seek(c.start)
        left = 8 + c.size
        while left:
            piece = src.read(min(left, 1 << 20))
            if not piece:
                raise CorruptInput(f"truncated RIFF chunk {c.kind!r}")
            dst.write(piece)
            left -= len(piece)
        if c.size & 1:
            dst.write(b"\x00")
    slot = Chunk(kind, dst.tell(), size)
    dst.write(kind + size.to_bytes(4, "little"))
    for at in range(0, size, 1 << 20):
        dst.write(bytes(min(1 << 20, size - at)))
    if size & 1:
        dst.write(b"\x00")
    end = dst.tell()
    dst.seek(4)
    dst.write((end - 8).to_bytes(4, "little"))
    dst.seek(end)
    return slot


def _read(source: bytes | IO[bytes], offset: int, size: int) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[offset : offset + size])
    source.seek(offset)
    return source.read(size)


def _size(source: bytes | IO[bytes]) -> int:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return len(source)
    return source.seek(0, os.SEEK_END)


# --- WebP ----------------------------------------------------------------------------------------------------------
def _webp_chunks(data: bytes) -> list[Chunk]:
    if form(data) != b"WEBP":
        raise CorruptInput("not a WebP file")
    return chunks(data)


def get_xmp(data: bytes) -> bytes | None:
    """The body of WebP's first ``XMP `` chunk, or None when there is none."""
    for c in _webp_chunks(data):
        if c.kind == b"XMP ":
            return data[c.body : c.body + c.size]
    return None


def webp_canvas(data: bytes) -> tuple[int, int, bool]:
    """(width, height, has alpha) of a WebP, from its VP8X chunk or the header of its VP8/VP8L bitstream."""
    found = _webp_chunks(data)
    if not found:
        raise CorruptInput("WebP file without chunks")
    first = found[0]
    body = data[first.body : first.body + first.size]
    if first.kind == b"VP8X" and len(body) >= 10:
        w, h = int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1
        return w, h, bool(body[0] & _VP8X_ALPHA)
    if first.kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":  # key frame start code
        w, h = int.from_bytes(body[6:8], "little") & 0x3FFF, int.from_bytes(body[8:10], "little") & 0x3FFF
        if w and h:
            return w, h, False  # a simple lossy file has no alpha (that needs VP8X + ALPH)
    if first.kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")  # width-1 (14 bits), height-1 (14), alpha_is_used (1), version
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)
    raise CorruptInput(f"WebP file starts with an unusable {first.kind!r} chunk")


def put_xmp(data: bytes, packet: bytes) -> bytes:
    """``data`` with one ``XMP `` chunk at the end (existing ones dropped) and the VP8X XMP flag set.

    A simple-format file (a lone VP8/VP8L chunk) gets the VP8X header the extended format needs, its canvas size
    and alpha flag read from the bitstream header. Every other chunk is kept byte for byte (a missing final pad byte
    is added so the XMP chunk after it stays aligned).
    """
    kept = [c for c in _webp_chunks(data) if c.kind != b"XMP "]
    parts = [data[c.start : c.body + c.size] + (b"\x00" if c.size & 1 else b"") for c in kept]
    if kept and kept[0].kind == b"VP8X" and kept[0].size >= 10:
        head = bytearray(parts[0])
        head[8] |= _VP8X_XMP
        parts[0] = bytes(head)
    else:
        w, h, alpha = webp_canvas(data)
        flags = _VP8X_XMP | (_VP8X_ALPHA if alpha else 0)
        vp8x = bytes([flags, 0, 0, 0]) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
        parts.insert(0, chunk(b"VP8X", vp8x))
    payload = b"WEBP" + b"".join(parts) + chunk(b"XMP ", packet)
    return b"RIFF" + len(payload).to_bytes(4, "little") + payload
