"""Text tags in each audio container's own slot (ID3 TXXX, Vorbis comments, iTunes freeform atoms, via mutagen) and
WAV's RIFF chunks (the ``id3 `` chunk, ``_PMX`` XMP, ``AIGC``), edited in place or by a streamed copy, never by loading
the samples."""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Mapping
from typing import IO, Any

from ...errors import CorruptInput
from ...io import id3_end
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
    import mutagen.flac

    fh.seek(0)
    end = id3_end(fh.read(10))
    flac_behind_id3 = bool(end) and fh.seek(end) == end and fh.read(4) == b"fLaC"
    fh.seek(0)
    try:
        # a FLAC behind an ID3 tag (where the C2PA library keeps its manifest) is FLAC, whatever mutagen's scoring says
        f = mutagen.flac.FLAC(fh) if flac_behind_id3 else mutagen.File(fh)
    except _mutagen_errors() as exc:
        raise CorruptInput(f"unreadable audio tags: {exc}") from exc
    if f is None:
        raise CorruptInput("mutagen does not recognise this audio container")
    fh.seek(0)
    return f


def _file(content: bytes | IO[bytes]) -> IO[bytes]:
    return io.BytesIO(content) if isinstance(content, (bytes, bytearray)) else content


def _id3_alone(fh: IO[bytes]) -> Any:
    """The leading ID3 tag of a file whose audio no longer parses (its label is still evidence), or None."""
    from mutagen import MutagenError
    from mutagen.id3 import ID3

    try:
        fh.seek(0)
        return ID3(fh)
    except (MutagenError, OSError, ValueError, EOFError):
        return None


def read_tags(content: bytes | IO[bytes]) -> dict[str, str]:
    """Every text tag as name → value (ID3 TXXX by description, Vorbis comments, iTunes freeform by name)."""
    try:
        tags = _mutagen_file(_file(content)).tags
    except CorruptInput:
        tags = _id3_alone(_file(content))
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


def set_tags(fh: IO[bytes], values: Mapping[str, str], xmp: Mapping[tuple[str, str], str] | None = None) -> None:
    """Set ``values`` as text tags in the container's own tag slot of the file ``fh`` (opened ``r+b``, or a BytesIO),
    existing tags kept. mutagen edits in place, moving the samples in bounded reads when the tag area grows.

    ``xmp``: for an ID3 tag, also these XMP values (but the token) in its ``PRIV`` frame owned by ``XMP`` (merged with
    any packet there), which exiftool reads as XMP: exiftool 12 names every ``TXXX`` frame ``UserDefinedText`` and its
    JSON output keeps only the last, while ``XMP-iptcExt:DigitalSourceType`` is the name images and WAV carry it
    under."""
    from mutagen.id3 import ID3, PRIV, TXXX
    from mutagen.mp4 import MP4, MP4FreeForm

    f = _mutagen_file(fh)
    if f.tags is None:
        f.add_tags()
    tags = f.tags
    if isinstance(tags, ID3):
        for k, v in values.items():
            tags.delall(f"TXXX:{k}")
            tags.add(TXXX(encoding=3, desc=k, text=[v]))
        if xmp:
            # not the signed token (kzlabel:Label): TXXX:kzlabel in this same tag holds it (a tool that strips one
            # strips both; verify reads the TXXX), so the copy only added 3 kB. MP3s written before 2026-12-06 carry
            # it, unread; marking one again removes it.
            shown = {name: value for name, value in xmp.items() if name != ("kzlabel", "Label")}
            old = next((bytes(fr.data) for fr in tags.getall("PRIV") if fr.owner == "XMP"), None)
            tags.delall("PRIV:XMP")
            tags.add(PRIV(owner="XMP", data=merge_xmp(old, shown, tuple(xmp))))
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


def write_tags(data: bytes, values: Mapping[str, str], xmp: Mapping[tuple[str, str], str] | None = None) -> bytes:
    """``data`` with ``values`` set as text tags (:func:`set_tags` on a copy in memory)."""
    bio = io.BytesIO(data)
    set_tags(bio, values, xmp)
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


# RIFF INFO ids with an ID3 frame of the same meaning (the pairs ffmpeg's ``ff_riff_info_conv`` and ID3 reader name
# alike: title, artist, album, copyright, date, genre, language, encoder, encoded_by, track); ICMT becomes COMM, any
# other INFO id a TXXX frame named by the id, so nothing the source said is lost
_INFO_TO_ID3 = {
    b"INAM": "TIT2",
    b"IART": "TPE1",
    b"IPRD": "TALB",
    b"ICOP": "TCOP",
    b"ICRD": "TDRC",
    b"IGNR": "TCON",
    b"ILNG": "TLAN",
    b"ISFT": "TSSE",
    b"ITCH": "TENC",
    b"ITRK": "TRCK",
    b"IPRT": "TRCK",
}
# the 4-letter cuts of the tag names kzlabel once wrote as INFO ids (``kzla``, ``Digi``, ``AISy``, ``tdm-``, ``Data``):
# garbage names in ffprobe, dropped when such a file is labelled again
_OLD_INFO_CUTS = {b"kzla", b"Digi", b"AISy", b"AIGC", b"tdm-", b"Data"}


def _info_entries(body: bytes) -> list[tuple[bytes, str]]:
    """(id, text) of every entry of a ``LIST/INFO`` chunk body (after the ``INFO`` type)."""
    out, i = [], 4
    while i + 8 <= len(body):
        sid, m = body[i : i + 4], int.from_bytes(body[i + 4 : i + 8], "little")
        raw = body[i + 8 : i + 8 + m].split(b"\0", 1)[0]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        out.append((sid, text))
        i += 8 + m + (m & 1)
    return out


def _wav_id3(old: bytes | None, info: list[tuple[bytes, str]], values: Mapping[str, str]) -> bytes:
    """The body of WAV's ``id3 `` chunk: the existing tag (if any), the INFO entries as their ID3 frames where the tag
    has none of its own, and ``values`` as TXXX frames (ID3v2.4, mutagen's padding after the last frame)."""
    from mutagen.id3 import COMM, ID3, TXXX, Frames, ID3NoHeaderError

    tag = ID3()
    if old:
        try:
            tag = ID3(io.BytesIO(old))
        except ID3NoHeaderError:
            pass
        except _mutagen_errors() as exc:
            raise CorruptInput(f"unreadable ID3 chunk in the WAV file: {exc}") from exc
    for sid, text in info:
        if not text or sid in _OLD_INFO_CUTS:
            continue
        frame_id = _INFO_TO_ID3.get(sid)
        if frame_id is not None:
            if frame_id not in tag:
                tag.add(Frames[frame_id](encoding=3, text=[text]))
        elif sid == b"ICMT":
            if not tag.getall("COMM"):
                tag.add(COMM(encoding=3, lang="eng", desc="", text=[text]))
        else:
            name = sid.decode("latin-1").strip()
            if f"TXXX:{name}" not in tag:
                tag.add(TXXX(encoding=3, desc=name, text=[text]))
    for k, v in values.items():
        tag.delall(f"TXXX:{k}")
        tag.add(TXXX(encoding=3, desc=k, text=[v]))
    out = io.BytesIO()
    try:
        tag.save(out, v2_version=4)
    except _mutagen_errors() as exc:
        raise CorruptInput(f"could not write the WAV file's ID3 chunk: {exc}") from exc
    return out.getvalue()


def rewrite_wav_chunks(
    src: IO[bytes], out: IO[bytes], values: Mapping[str, str], xmp: Mapping[tuple[str, str], str]
) -> None:
    """Copy the RIFF/WAVE file ``src`` to ``out`` with the WAV carriers exiftool and ffprobe read: every value as an
    ID3v2 TXXX frame in the ``id3 `` chunk (ffprobe, exiftool and mutagen show it by its full name), XMP in a ``_PMX``
    chunk (merged with any existing packet; exiftool's XMP-iptcExt:DigitalSourceType) and the ``AIGC`` JSON as its
    own RIFF chunk (GB 45438 practice). The sample data is copied in 1 MiB reads, never held.

    No ``LIST/INFO`` chunk is written: its ids are four letters, and ffmpeg reads either INFO or the ID3 chunk, never
    both (with both it drops the ID3 tags, warning "Discarding ID3 tags because more suitable tags were found"). So
    the entries of an existing INFO chunk move into the ID3 chunk as the frames of the same meaning (INAM → TIT2,
    ISFT → TSSE, ICMT → COMM, …; any other id a TXXX frame of that name), and ffprobe shows them as before."""

    chunks = _riff_index(src)
    old_xmp = next((_body(src, off, n) for cid, off, n in chunks if cid == b"_PMX"), None)
    packet = merge_xmp(old_xmp, xmp, tuple(xmp))
    old_id3 = next((_body(src, off, n) for cid, off, n in chunks if cid in (b"id3 ", b"ID3 ")), None)
    info: list[tuple[bytes, str]] = []
    dropped = set()
    for cid, off, n in chunks:
        if cid == b"LIST" and _body(src, off, min(n, 4)) == b"INFO":
            info += _info_entries(_body(src, off, n))
            dropped.add(off)
    tag = _wav_id3(old_id3, info, values)

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
    for cid, off, n in chunks:
        if cid in (b"_PMX", b"AIGC", b"id3 ", b"ID3 ") or off in dropped:
            continue
        put(cid, None, off, n)
    put(b"id3 ", tag)
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
    """The XMP values :func:`rewrite_wav_chunks` wrote (its ID3 chunk is read by :func:`read_tags`); reads the chunk
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
