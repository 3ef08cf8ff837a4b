"""Text tags in each audio container's own slot (ID3 TXXX, Vorbis comments, iTunes freeform atoms, via mutagen) and
WAV's RIFF chunks (LIST/INFO, ``_PMX`` XMP, ``AIGC``), edited in place or by a streamed copy, never by loading the
samples."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Mapping
from typing import IO, Any

from ...errors import CorruptInput
from ...layers.metadata import merge_xmp, xmp_values

TAG_AIGC = "AIGC"
TAG_LABEL = "kzlabel"
TAG_SOURCE = "DigitalSourceType"
TAG_SYSTEM = "AISystemUsed"
_ITUNES = "----:com.apple.iTunes:"


def _mutagen_errors() -> tuple[type[BaseException], ...]:
    """mutagen's own error type, plus what its parsers let through on truncated or malformed tag structures."""
    from mutagen import MutagenError  # mutagen loads with the first audio file, not with every kzlabel command

    return (MutagenError, struct.error, EOFError, ValueError, IndexError, OSError)


def _mutagen_file(fh: IO[bytes]) -> Any:
    """mutagen's view of the file ``fh`` (rewound before and after): it reads the tag areas, not the samples."""
    import mutagen  # loaded with the first audio file, not with every kzlabel command

    fh.seek(0)
    try:
        f = mutagen.File(fh)
    except _mutagen_errors() as exc:
        raise CorruptInput(f"unreadable audio tags: {exc}") from exc
    if f is None:
        raise CorruptInput("mutagen does not recognise this audio container")
    fh.seek(0)
    return f


def _file(content: bytes | IO[bytes]) -> IO[bytes]:
    return io.BytesIO(content) if isinstance(content, (bytes, bytearray)) else content


def read_tags(content: bytes | IO[bytes]) -> dict[str, str]:
    """Every text tag as name → value (ID3 TXXX by description, Vorbis comments, iTunes freeform by name)."""
    try:
        f = _mutagen_file(_file(content))
    except CorruptInput:
        return {}
    tags = f.tags
    out: dict[str, str] = {}
    if tags is None:
        return out
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4Tags

    if isinstance(tags, ID3):
        for frame in tags.getall("TXXX"):
            out[frame.desc] = str(frame.text[0]) if frame.text else ""
    elif isinstance(tags, MP4Tags):
        for key, values in tags.items():
            if key.startswith(_ITUNES) and values:
                v = values[0]
                out[key[len(_ITUNES) :]] = (
                    bytes(v).decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v)
                )
    else:  # Vorbis comments
        for key, values in tags.items():
            if values:
                out[key] = str(values[0])
    return out


def set_tags(fh: IO[bytes], values: Mapping[str, str]) -> None:
    """Set ``values`` as text tags in the container's own tag slot of the file ``fh`` (opened ``r+b``, or a BytesIO),
    existing tags kept. mutagen edits in place, moving the samples in bounded reads when the tag area grows."""
    from mutagen.id3 import ID3, TXXX
    from mutagen.mp4 import MP4, MP4FreeForm

    f = _mutagen_file(fh)
    if f.tags is None:
        f.add_tags()
    tags = f.tags
    if isinstance(tags, ID3):
        for k, v in values.items():
            tags.delall(f"TXXX:{k}")
            tags.add(TXXX(encoding=3, desc=k, text=[v]))
    elif isinstance(f, MP4):
        for k, v in values.items():
            tags[_ITUNES + k] = [MP4FreeForm(v.encode("utf-8"))]
    else:
        for k, v in values.items():
            tags[k] = [v]
    try:
        f.save(fh)
    except _mutagen_errors() as exc:
        raise CorruptInput(f"could not write audio tags: {exc}") from exc


def write_tags(data: bytes, values: Mapping[str, str]) -> bytes:
    """``data`` with ``values`` set as text tags (:func:`set_tags` on a copy in memory)."""
    bio = io.BytesIO(data)
    set_tags(bio, values)
    return bio.getvalue()


_RIFF_META_MAX = 64 << 20  # a metadata chunk read into memory (LIST/INFO, XMP); the samples are only ever copied
_COPY = 1 << 20


def _riff_index(fh: IO[bytes]) -> list[tuple[bytes, int, int]]:
    """(id, offset of the body, body size) of every chunk of a RIFF/WAVE file, from the chunk headers alone."""
    end = fh.seek(0, os.SEEK_END)
    fh.seek(0)
    head = fh.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise CorruptInput("not a RIFF/WAVE file")
    out, i = [], 12
    while i + 8 <= end:
        fh.seek(i)
        h = fh.read(8)
        cid, n = h[:4], int.from_bytes(h[4:8], "little")
        if i + 8 + n > end:
            raise CorruptInput(f"truncated RIFF chunk {cid!r}")
        out.append((cid, i + 8, n))
        i += 8 + n + (n & 1)
    return out


def _body(fh: IO[bytes], offset: int, size: int) -> bytes:
    if size > _RIFF_META_MAX:
        raise CorruptInput(f"RIFF metadata chunk of {size} bytes (over {_RIFF_META_MAX})")
    fh.seek(offset)
    return fh.read(size)


def rewrite_wav_chunks(
    src: IO[bytes], out: IO[bytes], values: Mapping[str, str], xmp: Mapping[tuple[str, str], str]
) -> None:
    """Copy the RIFF/WAVE file ``src`` to ``out`` with the WAV carriers exiftool and ffprobe read: XMP in a ``_PMX``
    chunk (merged with any existing packet), the ``AIGC`` JSON as its own RIFF chunk (GB 45438 practice) and every
    value as a ``LIST/INFO`` entry (ffprobe). The sample data is copied in 1 MiB reads, never held."""

    chunks = _riff_index(src)
    old_xmp = next((_body(src, off, n) for cid, off, n in chunks if cid == b"_PMX"), None)
    packet = merge_xmp(old_xmp, xmp, tuple(xmp))
    info = b""
    for k, v in values.items():
        raw = v.encode("utf-8") + b"\0"
        info += (
            k.encode("ascii")[:4].ljust(4, b" ")
            + len(raw).to_bytes(4, "little")
            + raw
            + (b"\0" if len(raw) & 1 else b"")
        )
    mine = {k.encode("ascii")[:4].ljust(4, b" ") for k in values}

    def put(cid: bytes, body: bytes | None, offset: int = 0, size: int = 0) -> None:
        size = len(body) if body is not None else size
        out.write(cid + size.to_bytes(4, "little"))
        if body is not None:
            out.write(body)
        else:
            src.seek(offset)
            left = size
            while left:
                piece = src.read(min(_COPY, left))
                if not piece:
                    raise CorruptInput(f"truncated RIFF chunk {cid!r}")
                out.write(piece)
                left -= len(piece)
        if size & 1:
            out.write(b"\0")

    out.write(b"RIFF\0\0\0\0WAVE")
    merged_info = False
    for cid, off, n in chunks:
        if cid in (b"_PMX", b"AIGC"):
            continue
        if cid == b"LIST" and not merged_info and _body(src, off, min(n, 4)) == b"INFO":
            c = _body(src, off, n)
            kept, i = b"", 4
            while i + 8 <= len(c):
                sid, m = c[i : i + 4], int.from_bytes(c[i + 4 : i + 8], "little")
                if sid not in mine:
                    kept += c[i : i + 8 + m + (m & 1)]
                i += 8 + m + (m & 1)
            put(cid, b"INFO" + kept + info)
            merged_info = True
            continue
        put(cid, None, off, n)
    if not merged_info:
        put(b"LIST", b"INFO" + info)
    if TAG_AIGC in values:
        put(b"AIGC", values[TAG_AIGC].encode("utf-8"))
    put(b"_PMX", packet)
    total = out.tell()
    out.seek(4)
    out.write((total - 8).to_bytes(4, "little"))
    out.seek(total)


def write_wav_chunks(data: bytes, values: Mapping[str, str], xmp: Mapping[tuple[str, str], str]) -> bytes:
    """:func:`rewrite_wav_chunks` in memory."""
    out = io.BytesIO()
    rewrite_wav_chunks(io.BytesIO(data), out, values, xmp)
    return out.getvalue()


def read_wav_values(content: bytes | IO[bytes]) -> dict[str, str]:
    """The XMP and INFO values :func:`rewrite_wav_chunks` wrote (for a file without ID3 tags); reads the chunk
    headers and the XMP packet only."""

    fh = _file(content)
    try:
        chunks = _riff_index(fh)
        packets = [_body(fh, off, n) for cid, off, n in chunks if cid == b"_PMX"]
    except CorruptInput:
        return {}
    out: dict[str, str] = {}
    for packet in packets:
        vals = xmp_values(packet)
        for src, dst in (
            ("kzlabel:Label", TAG_LABEL),
            ("TC260:AIGC", TAG_AIGC),
            ("Iptc4xmpExt:DigitalSourceType", TAG_SOURCE),
            ("plus:DataMining", "DataMining"),
            ("tdm:reservation", "tdm-reservation"),
            ("tdm:policy", "tdm-policy"),
        ):
            if src in vals:
                out.setdefault(dst, vals[src])
    return out
