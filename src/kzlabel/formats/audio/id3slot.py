"""The C2PA manifest in a leading ID3v2 tag's ``GEOB`` frame (MP3; FLAC behind an ID3 tag, as c2pa-rs writes it),
placed and found by kzlabel so the file is signed and read in a stream (layers/c2pa_embed).

The frame is the one c2pa-rs writes: text encoding UTF-8, MIME ``application/c2pa``, file name ``c2pa``, description
``c2pa manifest store``, then the store; the hard binding excludes the store's bytes only (the tag and frame headers
are hashed, their sizes being final once the store's size is known). The tag is rendered by mutagen (ID3v2.4, with
padding after the frames: exiftool warns "Invalid ID3 frame size" about a tag whose last frame is the GEOB and has
no padding, as c2pa-rs writes it), the audio after the old tag copied in 1 MiB reads.
"""

from __future__ import annotations

import io
import struct
from typing import IO

from ...errors import CorruptInput
from ...io import ID3_SNIFF_MAX, id3_end
from ...layers.c2pa_embed import Slot

__all__ = ["find", "reserve"]

_MIME, _NAME, _DESC = "application/c2pa", "c2pa", "c2pa manifest store"
# what other writers have used for the frame's MIME type (the C2PA specification's name for a manifest store)
_MIMES = frozenset({_MIME, "application/x-c2pa-manifest-store"})
_PREAMBLE = b"\x03" + _MIME.encode() + b"\0" + _NAME.encode() + b"\0" + _DESC.encode() + b"\0"
_COPY = 1 << 20


def _syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def _tag(fh: IO[bytes]) -> bytes:
    """The leading ID3v2 tag's bytes (empty when there is none); one over the sniffing limit is refused."""
    fh.seek(0)
    end = id3_end(fh.read(10))
    if end > ID3_SNIFF_MAX:
        raise CorruptInput(f"a {end}-byte leading ID3 tag is over the {ID3_SNIFF_MAX}-byte limit")
    fh.seek(0)
    return fh.read(end)


def reserve(src: IO[bytes], dst: IO[bytes], size: int) -> Slot:
    """Write ``src`` to ``dst`` with its leading ID3 tag (made when there is none) holding a zero-filled C2PA GEOB
    frame of ``size`` bytes of store, any earlier C2PA frame dropped; where the store goes."""
    from mutagen import MutagenError
    from mutagen.id3 import GEOB, ID3

    old = _tag(src)
    try:
        tag = ID3(io.BytesIO(old)) if old else ID3()
    except (MutagenError, struct.error, EOFError, ValueError, IndexError) as exc:
        raise CorruptInput(f"unreadable ID3 tag: {exc}") from exc
    for key, frame in list(tag.items()):
        if key.startswith("GEOB") and frame.mime in _MIMES:
            del tag[key]
    tag.add(GEOB(encoding=3, mime=_MIME, filename=_NAME, desc=_DESC, data=bytes(size)))
    rendered = io.BytesIO()
    tag.save(rendered, v2_version=4, padding=lambda info: 256)
    head = rendered.getvalue()
    frame = b"GEOB" + _syncsafe(len(_PREAMBLE) + size) + b"\0\0" + _PREAMBLE
    at = head.find(frame)
    if at < 0 or head[:3] != b"ID3" or id3_end(head) != len(head):  # mutagen rendered what this module cannot place
        raise RuntimeError("the rendered ID3 tag has no C2PA GEOB frame where expected")
    dst.write(head)
    src.seek(len(old))
    while piece := src.read(_COPY):
        dst.write(piece)
    body = at + len(frame)
    return Slot(body, size, (body, size))


def _frames(tag: bytes) -> list[tuple[bytes, int, int]]:
    """(frame id, body offset, body size) of each plain frame of an ID3v2.3/2.4 tag without unsynchronisation (a
    frame whose body is compressed, encrypted or unsynchronised is listed as ``b""``)."""
    version, flags = tag[3], tag[5]
    if version not in (3, 4) or flags & 0x80:  # v2.2's 3-letter frames, or unsynchronised bytes: not walked
        return []
    pos = 10
    if flags & 0x40:  # an extended header: its size is syncsafe in 2.4 (and counts itself), plain in 2.3 (does not)
        raw = tag[10:14]
        ext = (
            sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(raw)) if version == 4 else int.from_bytes(raw, "big")
        )
        pos += ext if version == 4 else ext + 4
    out = []
    end = len(tag) - (10 if flags & 0x10 else 0)
    while pos + 10 <= end and tag[pos : pos + 1] not in (b"\0", b""):
        raw = tag[pos + 4 : pos + 8]
        n = sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(raw)) if version == 4 else int.from_bytes(raw, "big")
        if pos + 10 + n > end:
            break
        plain = not tag[pos + 9] & (0x4F if version == 4 else 0xE0)  # grouping, compression, encryption, ...
        out.append((tag[pos : pos + 4] if plain else b"", pos + 10, n))
        pos += 10 + n
    return out


def _strings_end(body: bytes, count: int) -> int | None:
    """Where the store starts in a GEOB body: after its encoding byte, MIME (Latin-1) and ``count`` strings in that
    encoding (file name, description), each null-terminated; None when malformed."""
    enc = body[0] if body else 255
    if enc > 3:
        return None
    pos = body.find(b"\0", 1)
    if pos < 0:
        return None
    pos += 1
    nul = b"\0\0" if enc in (1, 2) else b"\0"
    for _ in range(count):
        at = pos
        while True:
            at = body.find(nul, at)
            if at < 0:
                return None
            if len(nul) == 1 or (at - pos) % 2 == 0:
                break
            at += 1
        pos = at + len(nul)
    return pos


def find(fh: IO[bytes]) -> Slot | None:
    """Where the C2PA store is in the file's leading ID3 tag (None: no C2PA GEOB frame there)."""
    tag = _tag(fh)
    if not tag:
        return None
    for kind, at, n in _frames(tag):
        if kind != b"GEOB":
            continue
        body = tag[at : at + n]
        mime_end = body.find(b"\0", 1)
        if mime_end < 0 or body[1:mime_end].decode("latin-1") not in _MIMES:
            continue
        start = _strings_end(body, 2)
        if start is None:
            continue
        return Slot(at + start, n - start, (at + start, n - start))
    return None
