"""ISO-BMFF boxes and brands; HEIF/AVIF item tables, XMP as a ``mime`` item, and item properties.

HEIF (ISO/IEC 23008-12) and AVIF keep every item (the coded image, Exif, XMP) in a table in the top-level ``meta``
box: ``iinf`` says what each item is, ``iloc`` where its bytes are (file offsets into ``mdat``, or inside ``idat``),
``iprp/ipco`` holds properties such as the codec configuration (``av1C``, ``hvcC``). Putting XMP rebuilds ``meta``
and one ``mdat`` with every item's bytes copied and its offsets rewritten; the coded image is never touched.

An image sequence (AVIF ``avis``) is a ``moov`` with one track per plane; how many times it plays is in each track's
edit list as libavif writes and reads it: ``elst`` flag 1 (repeat the edit) and a track duration (``tkhd``) of the
edit's duration times the plays, or all ones for ever; flag 0 plays once.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import CorruptInput, UnsupportedFormat

__all__ = [
    "XMP_MIME",
    "Box",
    "HeifMeta",
    "Location",
    "av1_subsampling",
    "box",
    "boxes",
    "brands",
    "get_xmp",
    "hevc_chroma",
    "item_bytes",
    "item_property",
    "put_xmp",
    "read_meta",
    "sequence_loop",
    "set_sequence_loop",
]

XMP_MIME = b"application/rdf+xml"


class Box(NamedTuple):
    """A box: header at ``start``, body from ``body`` (after a large size and a uuid, when present) to ``end``."""

    kind: bytes
    start: int
    body: int
    end: int


def boxes(data: bytes, start: int, end: int) -> list[Box]:
    """The boxes in ``data[start:end]``; a header or a length running past ``end`` is CorruptInput."""
    out, pos = [], start
    while pos < end:
        if pos + 8 > end:
            raise CorruptInput("truncated ISO-BMFF box header")
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = pos + 8
        if size == 1:
            if pos + 16 > end:
                raise CorruptInput("truncated ISO-BMFF box header")
            size, body = int.from_bytes(data[pos + 8 : pos + 16], "big"), pos + 16
        elif size == 0:  # the last box, up to the end of its container
            size = end - pos
        if kind == b"uuid":
            body += 16
        if size < body - pos or pos + size > end:
            raise CorruptInput(f"ISO-BMFF box {kind!r} runs past the end of its container")
        out.append(Box(kind, pos, body, pos + size))
        pos += size
    return out


def box(kind: bytes, body: bytes) -> bytes:
    """A serialised box with a 32-bit size."""
    return struct.pack(">I", 8 + len(body)) + kind + body


def brands(header: bytes) -> tuple[bytes, ...]:
    """The ``ftyp`` major brand followed by the compatible brands (empty when the data does not start with ftyp)."""
    if header[4:8] != b"ftyp" or len(header) < 16:
        return ()
    size = min(int.from_bytes(header[:4], "big"), len(header))
    return (header[8:12],) + tuple(header[p : p + 4] for p in range(16, size - 3, 4))


class _Reader:
    """Big-endian fields off a box body, every read bounds-checked (a lying length is CorruptInput)."""

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big") if size else 0

    def take(self, size: int) -> bytes:
        if self.pos + size > self.end:
            raise CorruptInput("malformed ISO-BMFF item table")
        value = self.data[self.pos : self.pos + size]
        self.pos += size
        return value

    def cstring(self) -> bytes:
        nul = self.data.find(b"\x00", self.pos, self.end)
        value = self.data[self.pos : self.end if nul < 0 else nul]
        self.pos = self.end if nul < 0 else nul + 1
        return value


@dataclass
class Location:
    """Where an item's bytes are (one ``iloc`` entry)."""

    item: int
    method: int  # 0: file offsets, 1: inside the meta box's idat
    extents: list[tuple[int, int]]  # (offset, length), base offset already added; length 0: to the end


@dataclass
class HeifMeta:
    """The parts of a HEIF ``meta`` box that locating and adding an XMP item needs."""

    meta: Box
    children: list[Box]
    iloc_version: int
    locations: list[Location]
    items: dict[int, tuple[bytes, bytes]]  # item id -> (item type, content type)
    primary: int | None

    def xmp_item(self) -> int | None:
        """The id of the XMP item (a ``mime`` item of type application/rdf+xml), or None."""
        return next((i for i, (kind, ctype) in self.items.items() if kind == b"mime" and ctype == XMP_MIME), None)


def read_meta(data: bytes) -> HeifMeta:
    """The item table of a HEIF/AVIF file; CorruptInput when the file has no single, well-formed ``meta`` box, and
    UnsupportedFormat for items stored in other files or by item offset."""
    metas = [b for b in boxes(data, 0, len(data)) if b.kind == b"meta"]
    if len(metas) != 1:
        raise CorruptInput(f"a HEIF file has one meta box, this one has {len(metas)}")
    meta = metas[0]
    children = boxes(data, meta.body + 4, meta.end)  # meta is a full box: version and flags first
    by_kind = {b.kind: b for b in children}
    if b"iloc" not in by_kind or b"iinf" not in by_kind:
        raise CorruptInput("HEIF meta box without an item table (iloc/iinf)")
    iloc = by_kind[b"iloc"]
    r = _Reader(data, iloc.body, iloc.end)
    iloc_version = r.uint(1)
    r.uint(3)
    sizes = r.uint(2)
    off_size, len_size, base_size = sizes >> 12, (sizes >> 8) & 15, (sizes >> 4) & 15
    idx_size = sizes & 15 if iloc_version in (1, 2) else 0
    locations = []
    for _ in range(r.uint(2 if iloc_version < 2 else 4)):
        item = r.uint(2 if iloc_version < 2 else 4)
        method = r.uint(2) & 15 if iloc_version in (1, 2) else 0
        if r.uint(2) != 0 or method > 1:
            raise UnsupportedFormat("HEIF items stored in other files or by item offset are not supported")
        base = r.uint(base_size)
        extents = []
        for _ in range(r.uint(2)):
            r.uint(idx_size)
            extents.append((base + r.uint(off_size), r.uint(len_size)))
        locations.append(Location(item, method, extents))
    iinf = by_kind[b"iinf"]
    iinf_version = data[iinf.body] if iinf.body < iinf.end else 0
    items: dict[int, tuple[bytes, bytes]] = {}
    for entry in boxes(data, iinf.body + (6 if iinf_version == 0 else 8), iinf.end):
        if entry.kind != b"infe":
            continue
        r = _Reader(data, entry.body, entry.end)
        infe_version = r.uint(1)
        r.uint(3)
        item = r.uint(4 if infe_version >= 3 else 2)
        r.uint(2)  # protection index
        if infe_version >= 2:
            item_type = r.take(4)
            r.cstring()  # name
            content_type = r.cstring() if item_type == b"mime" else b""
        else:
            r.cstring()
            item_type, content_type = b"mime", r.cstring()
        items[item] = (item_type, content_type)
    primary = None
    if b"pitm" in by_kind:
        pitm = by_kind[b"pitm"]
        r = _Reader(data, pitm.body, pitm.end)
        pitm_version = r.uint(1)
        r.uint(3)
        primary = r.uint(4 if pitm_version >= 1 else 2)
    return HeifMeta(meta, children, iloc_version, locations, items, primary)


def item_bytes(data: bytes, meta: HeifMeta, loc: Location) -> bytes:
    """An item's bytes, its extents joined; CorruptInput when an extent lies outside the file (or the idat)."""
    if loc.method == 1:
        idat = next((b for b in meta.children if b.kind == b"idat"), None)
        if idat is None:
            raise CorruptInput("HEIF item refers to a missing idat box")
        base, limit = idat.body, idat.end
    else:
        base, limit = 0, len(data)
    parts = []
    for offset, length in loc.extents:
        start = base + offset
        stop = limit if length == 0 else start + length
        if stop > limit or start > stop:
            raise CorruptInput(f"HEIF item {loc.item} lies outside the file (truncated?)")
        parts.append(data[start:stop])
    return b"".join(parts)


def get_xmp(data: bytes) -> bytes | None:
    """The XMP item's bytes, or None when the file has no XMP item."""
    meta = read_meta(data)
    item = meta.xmp_item()
    loc = next((loc for loc in meta.locations if loc.item == item), None)
    return None if loc is None else item_bytes(data, meta, loc)


def put_xmp(data: bytes, packet: bytes) -> bytes:
    """The file with its XMP item replaced (or added, linked to the primary item by ``cdsc``).

    The coded image is not touched: top-level boxes keep their order, ``meta`` is rebuilt with a new item table, and
    every file-stored item (image, Exif, XMP) is copied into one ``mdat`` at the end with its offsets rewritten.
    Image sequences (a ``moov`` with tracks) keep their media data in place instead (:func:`_put_xmp_sequence`);
    fragmented ones (``moof``) are UnsupportedFormat. An empty packet is ValueError (an iloc extent of length 0
    means "to the end of the file", so it could not be read back).
    """
    if not packet:
        raise ValueError("an empty XMP packet cannot be stored as a HEIF item")
    top = boxes(data, 0, len(data))
    meta = read_meta(data)
    if any(b.kind == b"moof" for b in top):
        raise UnsupportedFormat("fragmented HEIF/AVIF image sequences are not supported")
    if any(b.kind == b"moov" for b in top):
        return _put_xmp_sequence(data, packet, top, meta)
    xmp_id, children = _xmp_item(data, meta)
    # every extent is read (and so bounds-checked) here, idat ones too, before any offset is rewritten
    payloads = {loc.item: item_bytes(data, meta, loc) for loc in meta.locations}
    locations = [loc for loc in meta.locations if loc.item != xmp_id]
    payloads[xmp_id] = packet
    locations.append(Location(xmp_id, 0, [(len(data), len(packet))]))  # sorts after the existing data
    order = [
        loc.item
        for loc in sorted(locations, key=lambda loc: loc.extents[0][0] if loc.extents else 0)
        if loc.method == 0
    ]
    wide = len(data) + len(packet) > 0xFFFFFFFF
    # version 1 carries the construction method (idat items); version 2 also 32-bit item ids and counts
    version = max(
        meta.iloc_version, 1 if any(loc.method for loc in locations) else 0, 2 if len(locations) > 0xFFFF else 0
    )
    full_box_head = data[meta.meta.body : meta.meta.body + 4]

    def rebuilt_meta(offsets: dict[int, int]) -> bytes:
        iloc = _iloc(version, locations, offsets, payloads, 8 if wide else 4)
        return box(b"meta", full_box_head + b"".join(iloc if kind == b"iloc" else b for kind, b in children))

    kept = [(b.kind, data[b.start : b.end]) for b in top if b.kind != b"mdat"]
    head_size = sum(len(rebuilt_meta(dict.fromkeys(order, 0))) if kind == b"meta" else len(b) for kind, b in kept)
    offsets, pos = {}, head_size + (16 if wide else 8)
    for item in order:  # the iloc's size does not depend on the offset values, so one pass places everything
        offsets[item] = pos
        pos += len(payloads[item])
    blob = b"".join(payloads[item] for item in order)
    head = b"".join(rebuilt_meta(offsets) if kind == b"meta" else b for kind, b in kept)
    mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + len(blob)) if wide else struct.pack(">I4s", 8 + len(blob), b"mdat")
    return head + mdat + blob


def _xmp_item(data: bytes, meta: HeifMeta) -> tuple[int, list[tuple[bytes, bytes]]]:
    """The XMP item's id and ``meta``'s children (kind, bytes); without an XMP item, a new id past every used one and
    the children with its ``infe`` (and ``cdsc`` link to the primary item) added."""
    xmp_id = meta.xmp_item()
    children = [(b.kind, data[b.start : b.end]) for b in meta.children]
    if xmp_id is None:
        xmp_id = max([*meta.items, *(loc.item for loc in meta.locations), 0]) + 1
        if xmp_id > 0xFFFF:
            raise UnsupportedFormat("HEIF item ids above 65535 are not supported")
        children = _add_xmp_item(children, xmp_id, meta.primary)
    return xmp_id, children


def _put_xmp_sequence(data: bytes, packet: bytes, top: list[Box], meta: HeifMeta) -> bytes:
    """An image sequence with its XMP item replaced or added: every byte after ``meta`` moves by what ``meta`` grows,
    so the item offsets and the tracks' chunk offsets (``stco``/``co64``) past it move with them; the packet goes in
    an ``mdat`` of its own at the end (a replaced packet's old bytes stay unreferenced in their mdat)."""
    xmp_id, children = _xmp_item(data, meta)
    for loc in meta.locations:  # every extent bounds-checked before anything is moved
        item_bytes(data, meta, loc)
    kept = [loc for loc in meta.locations if loc.item != xmp_id]
    version = max(meta.iloc_version, 1 if any(loc.method for loc in kept) else 0, 2 if len(kept) >= 0xFFFF else 0)
    size = 8 if len(data) + len(packet) + 4096 > 0xFFFFFFFF else 4
    full_box_head = data[meta.meta.body : meta.meta.body + 4]

    def rebuilt(delta: int, at: int) -> bytes:
        moved = [
            Location(loc.item, loc.method, [(o + delta if o >= meta.meta.end else o, n) for o, n in loc.extents])
            if loc.method == 0
            else loc
            for loc in kept
        ]
        iloc = _iloc_extents(version, [*moved, Location(xmp_id, 0, [(at, len(packet))])], size)
        return box(b"meta", full_box_head + b"".join(iloc if kind == b"iloc" else b for kind, b in children))

    delta = len(rebuilt(0, 0)) - (meta.meta.end - meta.meta.start)  # field sizes are fixed: values do not change it
    parts = []
    for b in top:
        if b.kind == b"meta":
            parts.append(b"")  # placed below, once the end offset is known
        elif b.kind == b"moov":
            parts.append(_moved_chunks(data, b, delta, meta.meta.end))
        else:
            parts.append(data[b.start : b.end])
    total = sum(map(len, parts)) + len(rebuilt(0, 0))
    mdat = box(b"mdat", packet)
    new_meta = rebuilt(delta, total + 8)
    return b"".join(new_meta if b.kind == b"meta" else part for b, part in zip(top, parts, strict=True)) + mdat


def _moved_chunks(data: bytes, moov: Box, delta: int, after: int) -> bytes:
    """``moov`` with every chunk offset at or past ``after`` moved by ``delta`` (its size unchanged)."""
    out = bytearray(data[moov.start : moov.end])

    def walk(start: int, end: int) -> None:
        for b in boxes(data, start, end):
            if b.kind in (b"trak", b"mdia", b"minf", b"stbl"):
                walk(b.body, b.end)
            elif b.kind in (b"stco", b"co64"):
                width = 4 if b.kind == b"stco" else 8
                r = _Reader(data, b.body + 4, b.end)
                for _ in range(r.uint(4)):
                    pos = r.pos
                    offset = r.uint(width)
                    if offset >= after:
                        offset += delta
                        if offset >= 1 << (8 * width):
                            raise UnsupportedFormat("a chunk offset no longer fits its stco box")
                        out[pos - moov.start : pos - moov.start + width] = offset.to_bytes(width, "big")

    walk(moov.body, moov.end)
    return bytes(out)


def _add_xmp_item(children: list[tuple[bytes, bytes]], item: int, primary: int | None) -> list[tuple[bytes, bytes]]:
    """meta children with an ``infe`` for a new XMP item and, when there is a primary item, its ``cdsc`` link."""
    infe = box(b"infe", b"\x02\x00\x00\x00" + struct.pack(">HH", item, 0) + b"mime" + b"XMP\x00" + XMP_MIME + b"\x00")
    out = []
    for kind, b in children:
        if kind == b"iinf":
            count_size = 2 if len(b) > 8 and b[8] == 0 else 4
            if len(b) < 12 + count_size:
                raise CorruptInput("truncated HEIF iinf box")
            count = int.from_bytes(b[12 : 12 + count_size], "big") + 1
            b = box(b"iinf", b[8:12] + count.to_bytes(count_size, "big") + b[12 + count_size :] + infe)
        out.append((kind, b))
    if primary is not None:
        iref = next((b for kind, b in out if kind == b"iref"), None)
        if iref is not None and len(iref) < 12:
            raise CorruptInput("truncated HEIF iref box")
        # version 1 references use 32-bit item ids: needed when the primary item's id does not fit 16 bits
        wide = iref[8] == 1 if iref is not None else primary > 0xFFFF
        if not wide and primary > 0xFFFF:
            raise UnsupportedFormat("HEIF primary item id above 65535 with 16-bit item references")
        link = box(b"cdsc", struct.pack(">IHI", item, 1, primary) if wide else struct.pack(">HHH", item, 1, primary))
        new = box(b"iref", (iref[8:] if iref is not None else bytes([int(wide), 0, 0, 0])) + link)
        out = [(k, new if k == b"iref" else b) for k, b in out] if iref is not None else [*out, (b"iref", new)]
    return out


def _iloc(
    version: int, locations: list[Location], offsets: dict[int, int], payloads: dict[int, bytes], size: int
) -> bytes:
    """An iloc box: one extent per file-stored item at its new offset; idat items keep their extents."""
    id_fmt = ">H" if version < 2 else ">I"
    out = bytearray([version, 0, 0, 0, (size << 4) | size, 0]) + struct.pack(id_fmt, len(locations))
    for loc in locations:
        out += struct.pack(id_fmt, loc.item)
        if version >= 1:
            out += struct.pack(">H", loc.method)
        extents = [(offsets[loc.item], len(payloads[loc.item]))] if loc.method == 0 else loc.extents
        out += struct.pack(">HH", 0, len(extents))
        for offset, length in extents:
            out += offset.to_bytes(size, "big") + length.to_bytes(size, "big")
    return box(b"iloc", bytes(out))


def _iloc_extents(version: int, locations: list[Location], size: int) -> bytes:
    """An iloc box writing each location's extents as they are (file offsets already final)."""
    id_fmt = ">H" if version < 2 else ">I"
    out = bytearray([version, 0, 0, 0, (size << 4) | size, 0]) + struct.pack(id_fmt, len(locations))
    for loc in locations:
        out += struct.pack(id_fmt, loc.item)
        if version >= 1:
            out += struct.pack(">H", loc.method)
        out += struct.pack(">HH", 0, len(loc.extents))
        for offset, length in loc.extents:
            out += offset.to_bytes(size, "big") + length.to_bytes(size, "big")
    return box(b"iloc", bytes(out))


# --- item properties (meta/iprp/ipco) -------------------------------------------------------------------------------
def item_property(data: bytes, kind: bytes) -> bytes | None:
    """The body of the first ``kind`` item property, or None when absent or when the container does not parse."""
    try:
        meta = read_meta(data)
        for iprp in meta.children:
            if iprp.kind == b"iprp":
                for ipco in boxes(data, iprp.body, iprp.end):
                    if ipco.kind == b"ipco":
                        for prop in boxes(data, ipco.body, ipco.end):
                            if prop.kind == kind:
                                return data[prop.body : prop.end]
    except (CorruptInput, UnsupportedFormat):
        return None
    return None


def av1_subsampling(data: bytes) -> str:
    """The AV1 chroma subsampling from ``av1C`` ("4:2:0" when unknown), so a 4:4:4 or monochrome AVIF stays so."""
    av1c = item_property(data, b"av1C")
    if av1c is None or len(av1c) < 3:
        return "4:2:0"
    flags = av1c[2]  # tier, high_bitdepth, twelve_bit, monochrome, subsampling_x, subsampling_y, position (2)
    if flags & 0x10:
        return "4:0:0"
    return {(0, 0): "4:4:4", (1, 0): "4:2:2"}.get(((flags >> 3) & 1, (flags >> 2) & 1), "4:2:0")


def hevc_chroma(data: bytes) -> int:
    """The HEVC chroma format from ``hvcC`` as 420, 422 or 444 (420 when unknown)."""
    hvcc = item_property(data, b"hvcC")
    if hvcc is None or len(hvcc) < 17:
        return 420
    return {2: 422, 3: 444}.get(hvcc[16] & 3, 420)


def _child(data: bytes, parent: Box, kind: bytes) -> Box | None:
    return next((b for b in boxes(data, parent.body, parent.end) if b.kind == kind), None)


class _Edit(NamedTuple):
    """One track's edit list and duration fields: where they are and what they hold."""

    tkhd_at: int  # the duration field's offset
    width: int  # 4 or 8 bytes
    duration: int
    elst: Box
    segment: int  # the first edit's duration


def _edits(data: bytes) -> tuple[Box | None, list[_Edit]]:
    """The ``mvhd`` box and every track's edit list (tracks without one left out)."""
    moov = next((b for b in boxes(data, 0, len(data)) if b.kind == b"moov"), None)
    if moov is None:
        return None, []
    found = []
    for trak in (b for b in boxes(data, moov.body, moov.end) if b.kind == b"trak"):
        tkhd, edts = _child(data, trak, b"tkhd"), _child(data, trak, b"edts")
        elst = _child(data, edts, b"elst") if edts is not None else None
        if tkhd is None or elst is None:
            continue
        wide = data[tkhd.body] == 1
        at, width = tkhd.body + (28 if wide else 20), 8 if wide else 4
        r = _Reader(data, elst.body, elst.end)
        version = r.uint(1)
        r.take(3)
        segment = r.uint(8 if version == 1 else 4) if r.uint(4) else 0
        found.append(_Edit(at, width, _Reader(data, at, tkhd.end).uint(width), elst, segment))
    return _child(data, moov, b"mvhd"), found


def sequence_loop(data: bytes) -> int | None:
    """How many times an image sequence plays (0: for ever), read from its first track's edit list as libavif reads
    it; None when there is none (not recorded)."""
    _, edits = _edits(data)
    if not edits:
        return None
    edit = edits[0]
    if not data[edit.elst.body + 3] & 1:
        return 1
    if edit.duration == (1 << (8 * edit.width)) - 1:
        return 0
    return max(1, -(-edit.duration // edit.segment)) if edit.segment else 0


def set_sequence_loop(data: bytes, plays: int) -> bytes:
    """``data`` playing ``plays`` times (0: for ever): every track's edit list flag and duration, and the movie's
    duration, rewritten in place (no box changes size, no offset moves)."""
    mvhd, edits = _edits(data)
    out = bytearray(data)
    longest, for_ever = 0, plays == 0
    for edit in edits:
        never_ends = (1 << (8 * edit.width)) - 1
        duration = never_ends if plays == 0 else edit.segment * plays
        if duration > never_ends:
            raise UnsupportedFormat(f"{plays} plays do not fit the track's duration field")
        out[edit.tkhd_at : edit.tkhd_at + edit.width] = duration.to_bytes(edit.width, "big")
        out[edit.elst.body + 3] = (out[edit.elst.body + 3] & 0xFE) | (plays != 1)
        longest = max(longest, duration)
    if mvhd is not None and edits:
        wide = data[mvhd.body] == 1
        at, width = mvhd.body + (24 if wide else 16), 8 if wide else 4
        never_ends = (1 << (8 * width)) - 1
        out[at : at + width] = (never_ends if for_ever else min(longest, never_ends)).to_bytes(width, "big")
    return bytes(out)
