"""The C2PA manifest of a PDF as an embedded file in an incremental update, placed and found by kzlabel so the PDF is
signed and read in a stream (layers/c2pa_embed).

C2PA embeds a manifest store in a PDF as an embedded file stream (``/Type /EmbeddedFile``, ``/Subtype
/application#2Fc2pa``) named by a file specification with ``/AFRelationship /C2PA_Manifest`` in the catalog's ``/AF``
array; the hard binding excludes the stream's data. kzlabel writes it as an incremental update after the bytes it was
given (copied in 1 MiB reads, never held): the stream, the file specification and the catalog again with ``/AF``,
then a cross-reference section of the same kind as the file's last one (a table, or a stream for PDF 1.5+
files) with ``/Prev`` pointing back. The C2PA library rewrites the whole file instead, after loading it.

PDF writers append an update or write a new file; none changes bytes in place. So the slot also lists where the
signed file may have ended (each ``%%EOF`` after the manifest, ``Slot.ends``): a broken hash whose signed bytes are
a prefix of the file is an update appended (a container edit), and one that is not, with the manifest still where it
was signed, is bytes changed in place (layers/c2pa_embed: tampered, whatever the page binding says).
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from typing import IO, Any, cast

from ..errors import CorruptInput
from ..layers.c2pa_embed import STORE_MAX, Slot

__all__ = ["find", "reserve"]

_COPY = 1 << 20
_STARTXREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF", re.S)
_STREAM_AT = re.compile(rb"\d+\s+\d+\s+obj\s*<<(.*?)>>\s*stream(\r\n|\n|\r)", re.S)
_LENGTH = re.compile(rb"/Length\s+(\d+)(\s+\d+\s+R)?")
_NAME = "Content Credentials"
_EOF = re.compile(rb"%%EOF(\r\n|\r|\n)?")


def _errors() -> tuple[type[BaseException], ...]:
    from pypdf.errors import PyPdfError  # lazy: loaded with the first PDF

    return (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, struct.error, zlib.error)


def _last_xref(src: IO[bytes], size: int) -> int:
    """The offset of the file's last cross-reference section (its final ``startxref``)."""
    src.seek(max(0, size - 2048))
    found = _STARTXREF.findall(src.read())
    if not found:
        raise CorruptInput("PDF without a startxref at its end")
    return int(found[-1])


def reserve(src: IO[bytes], dst: IO[bytes], size: int) -> Slot:
    """Write ``src`` to ``dst`` and, after it, an incremental update holding a zero-filled C2PA manifest stream of
    ``size`` bytes (any earlier C2PA file specification left out of the catalog's ``/AF``); where the store goes."""
    from pypdf import PdfReader
    from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject

    total = src.seek(0, io.SEEK_END)
    prev = _last_xref(src, total)
    try:
        reader = PdfReader(src)
        trailer: Any = reader.trailer  # pypdf types its values PdfObject: these are dictionaries and numbers
        root_ref = trailer.raw_get("/Root")
        catalog = DictionaryObject(dict(trailer["/Root"].items()))
        kept = [
            ref for ref in (catalog.get("/AF") or []) if ref.get_object().get("/AFRelationship") != "/C2PA_Manifest"
        ]
        first = int(trailer["/Size"])
        info, ids = trailer.raw_get("/Info") if "/Info" in trailer else None, trailer.get("/ID")
    except _errors() as exc:
        raise CorruptInput(f"unreadable PDF structure: {exc}") from exc
    stream_id, spec_id = first, first + 1
    catalog[NameObject("/AF")] = ArrayObject([*kept, IndirectObject(spec_id, 0, reader)])

    src.seek(0)
    while piece := src.read(_COPY):
        dst.write(piece)
    if total and src.seek(total - 1) >= 0 and src.read(1) not in (b"\n", b"\r"):
        dst.write(b"\n")
    offsets: dict[int, int] = {}
    offsets[stream_id] = dst.tell()
    head = f"{stream_id} 0 obj\n<</Type/EmbeddedFile/Subtype/application#2Fc2pa/Length {size}>>stream\n"
    dst.write(head.encode())
    at = dst.tell()
    for done in range(0, size, _COPY):
        dst.write(bytes(min(_COPY, size - done)))
    dst.write(b"\nendstream\nendobj\n")
    offsets[spec_id] = dst.tell()
    spec = f"<</Type/Filespec/F({_NAME})/UF({_NAME})/Desc({_NAME})/AFRelationship/C2PA_Manifest"
    dst.write(f"{spec_id} 0 obj\n{spec}/Subtype/application#2Fc2pa/EF<</F {stream_id} 0 R>>>>\nendobj\n".encode())
    offsets[root_ref.idnum] = dst.tell()
    dst.write(f"{root_ref.idnum} {root_ref.generation} obj\n".encode())
    catalog.write_to_stream(dst)
    dst.write(b"\nendobj\n")
    extra = (f"/Info {info.idnum} {info.generation} R" if info is not None else "").encode()
    if ids is not None:
        buf = io.BytesIO()
        ids.write_to_stream(buf)
        extra += b"/ID" + buf.getvalue()
    _xref(src, dst, prev, offsets, root_ref, extra, generations={root_ref.idnum: root_ref.generation})
    return Slot(at, size, (at, size))


def _xref(
    src: IO[bytes],
    dst: IO[bytes],
    prev: int,
    offsets: dict[int, int],
    root: Any,
    extra: bytes,
    generations: dict[int, int],
) -> None:
    """The update's cross-reference section: a table when the file's last one is a table, else a stream."""
    src.seek(prev)
    classic = src.read(4) == b"xref"
    at = dst.tell()
    ids = sorted(offsets)
    common = f"/Root {root.idnum} {root.generation} R/Prev {prev}".encode() + extra
    if classic:
        rows = b"".join(f"{n} 1\n{offsets[n]:010d} {generations.get(n, 0):05d} n \n".encode() for n in ids)
        size = max(ids) + 1
        dst.write(b"xref\n" + rows + f"trailer\n<</Size {size}".encode() + common + b">>\n")
    else:
        xref_id = max(ids) + 1
        offsets = {**offsets, xref_id: at}
        ids = sorted(offsets)
        data = b"".join(struct.pack(">BIH", 1, offsets[n], generations.get(n, 0)) for n in ids)
        index = " ".join(f"{n} 1" for n in ids)
        head = f"{xref_id} 0 obj\n<</Type/XRef/Size {xref_id + 1}/W[1 4 2]/Index[{index}]/Length {len(data)}".encode()
        dst.write(head + common + b">>stream\n" + data + b"\nendstream\nendobj\n")
    dst.write(f"startxref\n{at}\n%%EOF\n".encode())


def find(fh: IO[bytes]) -> Slot | None:
    """Where the C2PA manifest stream's data is: the one the catalog's ``/AF`` names, else (a catalog or cross
    reference that no longer leads to it: damage) the last manifest stream written as :func:`reserve` writes it,
    found by its bytes. None: neither, or it sits where its bytes cannot be pointed at (inside an object stream)."""
    try:
        slot = _named(fh)
    except CorruptInput:
        slot = None
    return slot if slot is not None else _written(fh)


_OURS = re.compile(rb"\d+ 0 obj\n<</Type/EmbeddedFile/Subtype/application#2Fc2pa/Length (\d+)>>stream\n")


def _written(fh: IO[bytes]) -> Slot | None:
    """The last manifest stream in kzlabel's own layout, found by scanning the file in 1 MiB pieces."""
    found: tuple[int, int] | None = None
    fh.seek(0)
    pos, tail = 0, b""
    while piece := fh.read(_COPY):
        buf = tail + piece
        base = pos - len(tail)
        for m in _OURS.finditer(buf):
            found = (base + m.end(), int(m.group(1)))
        pos += len(piece)
        tail = buf[-120:]
    if found is None or found[1] > STORE_MAX:
        return None
    at, size = found
    return Slot(at, size, (at, size), _ends(fh, at + size))


def _named(fh: IO[bytes]) -> Slot | None:
    """The manifest stream the catalog's ``/AF`` names (CorruptInput: the structure does not parse)."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(fh)
        root: Any = reader.trailer["/Root"]
        refs = [
            spec["/EF"].raw_get("/F")
            for spec in (r.get_object() for r in (root.get("/AF") or []))
            if spec.get("/AFRelationship") == "/C2PA_Manifest" and "/EF" in spec
        ]
        if not refs:
            return None
        ref = refs[-1]
        offset = reader.xref.get(ref.generation, {}).get(ref.idnum)
        if offset is None:
            return None
        fh.seek(offset)
        head = fh.read(4096)
        m = _STREAM_AT.match(head)
        length = _LENGTH.search(m.group(1)) if m else None
        if m is None or length is None:
            return None
        size = int(length.group(1))
        if length.group(2):  # an indirect /Length
            size = int(cast(Any, reader.get_object(int(length.group(1)))))
    except _errors() as exc:
        raise CorruptInput(f"unreadable PDF structure: {exc}") from exc
    if size > STORE_MAX:
        return None
    at = offset + m.end()
    return Slot(at, size, (at, size), _ends(fh, at + size))


def _ends(fh: IO[bytes], start: int) -> tuple[int, ...]:
    """Every offset after ``start`` where a PDF revision may end: just after a ``%%EOF`` and after its line end (a
    writer may have stopped at either), read in 1 MiB pieces."""
    ends: set[int] = set()
    fh.seek(start)
    pos, tail = start, b""
    while piece := fh.read(_COPY):
        buf = tail + piece
        base = pos - len(tail)
        for m in _EOF.finditer(buf):
            if m.end() < len(buf) or not piece:  # a match at the piece's edge is taken with the next piece
                ends.update((base + m.start() + 5, base + m.end()))
        pos += len(piece)
        tail = buf[-8:]
    for m in _EOF.finditer(tail):  # the file's last bytes
        ends.update((pos - len(tail) + m.start() + 5, pos - len(tail) + m.end()))
    return tuple(sorted(ends))
