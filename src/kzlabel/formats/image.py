"""Still images: PNG, JPEG, WebP, TIFF, GIF and AVIF with Pillow, HEIF/HEIC with pillow-heif when installed.

mark: decode (Pillow's bomb check on, pixel limit checked from the header before decoding) → warning drawn in the
displayed orientation (EXIF orientation respected) → watermark in the stored pixels → re-encode keeping the
source's quality (JPEG: estimated quality and the same chroma subsampling; PNG/TIFF/GIF lossless; WebP lossless when
the source was), ICC profile and EXIF → XMP (IPTC, TC260 AIGC, kzlabel label) merged into the existing packet by
container surgery, not by another lossy encode → (pipeline) C2PA.

AVIF and HEIF carry XMP as a ``mime`` item of the ISO-BMFF ``meta`` box; writing it rebuilds ``meta`` + ``mdat``
(every item's bytes copied, offsets rewritten) and never touches the coded image. Without pillow-heif, HEIF is
read-only: XMP, C2PA and training permissions are read (and opt-outs written) from the container alone.
"""

from __future__ import annotations

import functools
import io
import json
import struct
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin, UnidentifiedImageError

from ..errors import CorruptInput, KzlabelError, LimitExceeded, UnsupportedFormat
from ..label import Label, Training, TrainingSignal
from ..layers import visible
from ..layers.metadata import LABEL_PROPS, TRAINING_PROPS, label_values, merge_xmp, training_values, xmp_values
from ..io import Input, Limits
from ..rights.vocab import TrainingPolicy, signal_from_plus, signal_from_tdmrep
from . import register
from .base import Findings, Handler, LabelMatch, MarkOptions, rewrite

ImageFile.LOAD_TRUNCATED_IMAGES = False
XMP_JPEG_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_INVERSE_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
# IJG's standard luminance quantisation table (JPEG Annex K), in natural (row-major) order as Pillow reports it.
_IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29,
     51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121,
     120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)


def _watermark_available() -> bool:
    try:
        from .. import watermark  # noqa: F401
    except ImportError:
        return False
    return True


def estimate_jpeg_quality(qtables: Mapping[int, Any]) -> int:
    """The IJG quality whose scaled standard table is closest to the file's luma table (90 when unknown)."""
    table = qtables.get(0) if qtables else None
    if table is None or len(table) != 64:
        return 90
    q = np.arange(1, 101, dtype=np.float64)[:, None]
    scale = np.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
    candidates = np.clip(np.floor((_IJG_LUMA[None, :] * scale + 50) / 100), 1, 255)
    error = np.abs(candidates - np.asarray(table, dtype=np.float64)[None, :]).sum(axis=1)
    return int(np.argmin(error)) + 1


@dataclass
class ImageDoc:
    inp: Input
    original: Image.Image
    work: Image.Image  # RGB/RGBA 8-bit working copy, stored orientation
    orientation: int
    info: dict[str, Any] = field(default_factory=dict)
    placement: visible.Placement | None = None


def jpeg_watermark_strength(quality: int) -> float:
    """Watermark amplitude for a JPEG written at ``quality``: kept just above the codec's own quantisation noise.

    At quality ≥ 90 the default amplitude (≈ 43-45 dB PSNR) survives; coarser tables erase part of it, so the amplitude
    grows linearly to 2.2× at quality 54 and below — still well under the noise such a JPEG already carries.
    """
    return float(min(2.2, max(1.0, 1.0 + (90 - quality) / 30)))


def _open(inp: Input, limits: Limits, fmt: str) -> Image.Image:
    """Open with the pixel limit checked from the header, Pillow's bomb check on, and all failures translated."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = limits.max_pixels
            im = Image.open(io.BytesIO(inp.data))
            w, h = im.size
            if w * h > limits.max_pixels:
                raise LimitExceeded(f"{w}×{h} is over the {limits.max_pixels}-pixel limit", source=inp.source, format=fmt)
            if w < 1 or h < 1:
                raise CorruptInput("image has no pixels", source=inp.source, format=fmt)
            if getattr(im, "n_frames", 1) > 1:
                raise UnsupportedFormat(f"animated {im.format} ({im.n_frames} frames) is not supported yet",
                                        source=inp.source, format=fmt)
            im.load()
    except KzlabelError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LimitExceeded(f"decompression bomb refused: {exc}", source=inp.source, format=fmt) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        raise CorruptInput(f"unreadable image: {exc}", source=inp.source, format=fmt) from None
    return im


def _working(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        return im.convert("RGBA")
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def _back_to_mode(doc: ImageDoc) -> Image.Image:
    """The working copy in the original's colour mode (16-bit kept by adding the 8-bit change ×257)."""
    orig, work = doc.original, doc.work
    mode = orig.mode
    if mode in ("RGB", "RGBA"):
        return work.convert(mode)
    if mode in ("L", "LA", "CMYK"):
        return work.convert(mode)
    if mode in ("P", "PA"):
        rgb = work.convert("RGBA" if work.mode == "RGBA" else "RGB")
        return rgb.quantize(256) if rgb.mode == "RGB" else rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    if mode == "1":
        return work.convert("1")
    if mode.startswith("I;16") or mode == "I":
        base = np.asarray(orig, dtype=np.int32)
        before = np.asarray(_working(orig).convert("L"), dtype=np.int32)
        after = np.asarray(work.convert("L"), dtype=np.int32)
        scale = 257 if mode.startswith("I;16") or base.max() > 255 else 1
        out = np.clip(base + (after - before) * scale, 0, 65535)
        return Image.fromarray(out.astype(np.uint16)) if mode.startswith("I;16") else Image.fromarray(out.astype(np.int32))
    return work.convert("RGB")


def _displayed(im: Image.Image, orientation: int) -> Image.Image:
    return ImageOps.exif_transpose(im) if orientation in _INVERSE_TRANSPOSE else im


# --- XMP carriage per container ------------------------------------------------------------------------------------
def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of the segments before the scan."""
    out, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        out.append((marker, pos, pos + 2 + length))
        if marker == 0xDA:
            break
        pos += 2 + length
    return out


def _jpeg_xmp(data: bytes) -> bytes | None:
    for marker, start, end in _jpeg_segments(data):
        if marker == 0xE1 and data[start + 4 : start + 4 + len(XMP_JPEG_HEADER)] == XMP_JPEG_HEADER:
            return data[start + 4 + len(XMP_JPEG_HEADER) : end]
    return None


def _jpeg_put_xmp(data: bytes, packet: bytes) -> bytes:
    segments = _jpeg_segments(data)
    keep = [(m, s, e) for m, s, e in segments
            if not (m == 0xE1 and data[s + 4 : s + 4 + len(XMP_JPEG_HEADER)] == XMP_JPEG_HEADER)]
    body = XMP_JPEG_HEADER + packet
    if len(body) + 2 > 65535:
        raise KzlabelError("XMP packet too large for one JPEG segment")
    seg = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    insert_after = 2
    for m, s, e in keep:
        if m in (0xE0, 0xE1):
            insert_after = e
        else:
            break
    head = data[:2] + b"".join(data[s:e] for m, s, e in keep if e <= insert_after)
    scan_start = segments[-1][1] if segments and segments[-1][0] == 0xDA else len(data)
    rest = b"".join(data[s:e] for m, s, e in keep if s >= insert_after and m != 0xDA)
    return head + seg + rest + data[scan_start:]


def _png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    out, pos = [], 8
    while pos + 12 <= len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        ctype = data[pos + 4 : pos + 8]
        out.append((ctype, pos, pos + 12 + length))
        pos += 12 + length
        if ctype == b"IEND":
            break
    return out


def _png_is_xmp(data: bytes, start: int) -> bool:
    return data[start + 8 : start + 8 + 18] == b"XML:com.adobe.xmp\x00"


def _png_xmp(data: bytes) -> bytes | None:
    for ctype, s, e in _png_chunks(data):
        if ctype == b"iTXt" and _png_is_xmp(data, s):
            body = data[s + 8 : e - 4]
            parts = body.split(b"\x00", 1)[1]  # keyword\0
            flag, method = parts[0], parts[1]
            rest = parts[2:].split(b"\x00", 2)[2]  # language\0 translated\0 text
            return zlib.decompress(rest) if flag == 1 and method == 0 else rest
    return None


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


def _png_put_xmp(data: bytes, packet: bytes) -> bytes:
    chunks = _png_chunks(data)
    new = _png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + packet)
    out = [data[:8]]
    for ctype, s, e in chunks:
        if ctype == b"iTXt" and _png_is_xmp(data, s):
            continue
        out.append(data[s:e])
        if ctype == b"IHDR":
            out.append(new)
    return b"".join(out)


def _riff_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    out, pos = [], 12
    while pos + 8 <= len(data):
        ctype = data[pos : pos + 4]
        size = struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        end = pos + 8 + size + (size & 1)
        out.append((ctype, pos, min(end, len(data))))
        pos = end
    return out


def _webp_xmp(data: bytes) -> bytes | None:
    for ctype, s, e in _riff_chunks(data):
        if ctype == b"XMP ":
            size = struct.unpack("<I", data[s + 4 : s + 8])[0]
            return data[s + 8 : s + 8 + size]
    return None


def _webp_put_xmp(data: bytes, packet: bytes) -> bytes:
    chunks = [(c, data[s:e]) for c, s, e in _riff_chunks(data) if c != b"XMP "]
    if not chunks or chunks[0][0] != b"VP8X":
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            alpha = im.mode == "RGBA"
        vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x10 if alpha else 0]) + b"\x00\x00\x00"
        vp8x += (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
        chunks.insert(0, (b"VP8X", vp8x))
    head = bytearray(chunks[0][1])
    head[8] |= 0x04  # XMP metadata present
    body = bytes(packet) + (b"\x00" if len(packet) & 1 else b"")
    chunks[0] = (b"VP8X", bytes(head))
    chunks.append((b"XMP ", b"XMP " + struct.pack("<I", len(packet)) + body))
    payload = b"WEBP" + b"".join(c for _, c in chunks)
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


_GIF_XMP_ID = b"XMP DataXMP"
_GIF_MAGIC = bytes([1]) + bytes(range(255, -1, -1))


def _gif_body_start(data: bytes) -> int:
    flags = data[10]
    return 13 + (3 * (2 ** ((flags & 7) + 1)) if flags & 0x80 else 0)


def _gif_blocks(data: bytes) -> list[tuple[int, int, bool]]:
    """(start, end, is_xmp) of the extension blocks before the first image descriptor."""
    out, pos = [], _gif_body_start(data)
    while pos < len(data) and data[pos] == 0x21:
        label = data[pos + 1]
        is_xmp = label == 0xFF and data[pos + 2 : pos + 3 + 11] == b"\x0b" + _GIF_XMP_ID
        p = pos + 2
        if is_xmp:
            end = data.find(_GIF_MAGIC[-3:] + b"\x00", p)
            end = len(data) if end < 0 else end + 4
        else:
            while p < len(data) and data[p] != 0:
                p += data[p] + 1
            end = p + 1
        out.append((pos, end, is_xmp))
        pos = end
    return out


def _gif_xmp(data: bytes) -> bytes | None:
    for s, e, is_xmp in _gif_blocks(data):
        if is_xmp:
            return data[s + 14 : e - len(_GIF_MAGIC) - 1]
    return None


def _gif_put_xmp(data: bytes, packet: bytes) -> bytes:
    blocks = _gif_blocks(data)
    start = _gif_body_start(data)
    end = blocks[-1][1] if blocks else start
    kept = b"".join(data[s:e] for s, e, x in blocks if not x)
    ext = b"\x21\xff\x0b" + _GIF_XMP_ID + packet + _GIF_MAGIC + b"\x00"
    return data[:start] + kept + ext + data[end:]


# --- HEIF family (AVIF, HEIC): XMP as a 'mime' item in the ISO-BMFF 'meta' box -------------------------------------
_XMP_MIME = b"application/rdf+xml"
_AVIF_BRANDS = (b"avif", b"avis")
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"heif")


def _bmff_boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int, int]]:
    """(type, start, body start, end) of the boxes in ``data[start:end]``; a length past the end is corrupt."""
    out, pos = [], start
    while pos < end:
        if pos + 8 > end:
            raise CorruptInput("truncated ISO-BMFF box header")
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = pos + 8
        if size == 1:
            if pos + 16 > end:
                raise CorruptInput("truncated ISO-BMFF box header")
            size, body = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], pos + 16
        elif size == 0:
            size = end - pos
        if kind == b"uuid":
            body += 16
        if size < body - pos or pos + size > end:
            raise CorruptInput(f"ISO-BMFF box {kind!r} runs past the end of its container")
        out.append((kind, pos, body, pos + size))
        pos += size
    return out


def _bmff_box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def _bmff_brands(header: bytes) -> tuple[bytes, ...]:
    """The ftyp major brand followed by the compatible brands (empty when there is no ftyp first)."""
    if header[4:8] != b"ftyp" or len(header) < 16:
        return ()
    size = min(struct.unpack(">I", header[:4])[0], len(header))
    return (header[8:12],) + tuple(header[p : p + 4] for p in range(16, size - 3, 4))


class _Reader:
    """Big-endian fields off a box body, every read bounds-checked (a lying length is CorruptInput)."""

    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def uint(self, size: int) -> int:
        if size == 0:
            return 0
        if self.pos + size > self.end:
            raise CorruptInput("malformed ISO-BMFF item table")
        value = int.from_bytes(self.data[self.pos : self.pos + size], "big")
        self.pos += size
        return value

    def cstring(self) -> bytes:
        nul = self.data.find(b"\x00", self.pos, self.end)
        value = self.data[self.pos : self.end if nul < 0 else nul]
        self.pos = self.end if nul < 0 else nul + 1
        return value


@dataclass
class _Location:
    item: int
    method: int  # 0: file offsets, 1: inside the meta box's idat
    extents: list[tuple[int, int]]  # (offset, length), base offset already added


@dataclass
class _HeifMeta:
    """The parts of a HEIF ``meta`` box that locating and adding an XMP item needs."""

    meta: tuple[bytes, int, int, int]
    children: list[tuple[bytes, int, int, int]]
    iloc_version: int
    locations: list[_Location]
    items: dict[int, tuple[bytes, bytes]]  # item id -> (item type, content type)
    primary: int | None

    def xmp_item(self) -> int | None:
        return next((i for i, (kind, ctype) in self.items.items() if kind == b"mime" and ctype == _XMP_MIME), None)


def _heif_meta(data: bytes) -> _HeifMeta:
    top = _bmff_boxes(data, 0, len(data))
    metas = [b for b in top if b[0] == b"meta"]
    if len(metas) != 1:
        raise CorruptInput(f"a HEIF file has one meta box, this one has {len(metas)}")
    meta = metas[0]
    children = _bmff_boxes(data, meta[2] + 4, meta[3])
    by_kind = {b[0]: b for b in children}
    if b"iloc" not in by_kind or b"iinf" not in by_kind:
        raise CorruptInput("HEIF meta box without an item table (iloc/iinf)")
    _, _, body, end = by_kind[b"iloc"]
    r = _Reader(data, body, end)
    version = r.uint(1)
    r.uint(3)
    sizes = r.uint(2)
    off_size, len_size, base_size = sizes >> 12, (sizes >> 8) & 15, (sizes >> 4) & 15
    idx_size = sizes & 15 if version in (1, 2) else 0
    locations = []
    for _ in range(r.uint(2 if version < 2 else 4)):
        item = r.uint(2 if version < 2 else 4)
        method = r.uint(2) & 15 if version in (1, 2) else 0
        if r.uint(2) != 0 or method > 1:
            raise UnsupportedFormat("HEIF items stored in other files or by item offset are not supported")
        base = r.uint(base_size)
        extents = []
        for _ in range(r.uint(2)):
            r.uint(idx_size)
            extents.append((base + r.uint(off_size), r.uint(len_size)))
        locations.append(_Location(item, method, extents))
    _, _, body, end = by_kind[b"iinf"]
    iinf_version = data[body] if body < end else 0
    items: dict[int, tuple[bytes, bytes]] = {}
    for kind, _, ibody, iend in _bmff_boxes(data, body + (6 if iinf_version == 0 else 8), end):
        if kind != b"infe":
            continue
        r = _Reader(data, ibody, iend)
        infe_version = r.uint(1)
        r.uint(3)
        item = r.uint(4 if infe_version >= 3 else 2)
        r.uint(2)  # protection index
        if infe_version >= 2:
            item_type = data[r.pos : r.pos + 4]
            r.pos += 4
            r.cstring()  # name
            content_type = r.cstring() if item_type == b"mime" else b""
        else:
            r.cstring()
            item_type, content_type = b"mime", r.cstring()
        items[item] = (item_type, content_type)
    primary = None
    if b"pitm" in by_kind:
        _, _, body, end = by_kind[b"pitm"]
        r = _Reader(data, body, end)
        version = r.uint(1)
        r.uint(3)
        primary = r.uint(4 if version >= 1 else 2)
    return _HeifMeta(meta, children, version, locations, items, primary)


def _heif_item_bytes(data: bytes, meta: _HeifMeta, loc: _Location) -> bytes:
    if loc.method == 1:
        idat = next((b for b in meta.children if b[0] == b"idat"), None)
        if idat is None:
            raise CorruptInput("HEIF item refers to a missing idat box")
        base, limit = idat[2], idat[3]
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


def _heif_xmp(data: bytes) -> bytes | None:
    meta = _heif_meta(data)
    item = meta.xmp_item()
    loc = next((loc for loc in meta.locations if loc.item == item), None)
    return None if loc is None else _heif_item_bytes(data, meta, loc)


def _heif_put_xmp(data: bytes, packet: bytes) -> bytes:
    """The file with its XMP item replaced (or added, linked to the primary item by ``cdsc``).

    The coded image is not touched: top-level boxes keep their order, ``meta`` is rebuilt with a new item table, and
    every file-stored item (image, Exif, XMP) is copied into one ``mdat`` at the end with its offsets rewritten.
    """
    meta = _heif_meta(data)
    if any(kind in (b"moov", b"moof") for kind, *_ in _bmff_boxes(data, 0, len(data))):
        raise UnsupportedFormat("HEIF/AVIF image sequences (tracks) are not supported")
    xmp_id = meta.xmp_item()
    payloads = {loc.item: _heif_item_bytes(data, meta, loc) for loc in meta.locations if loc.method == 0}
    locations = [loc for loc in meta.locations if loc.item != xmp_id]
    children = [(kind, data[s:e]) for kind, s, _, e in meta.children]
    if xmp_id is None:
        xmp_id = max([*meta.items, *(loc.item for loc in meta.locations), 0]) + 1
        if xmp_id > 0xFFFF:
            raise UnsupportedFormat("HEIF item ids above 65535 are not supported")
        children = _heif_add_xmp_item(children, xmp_id, meta.primary)
    payloads[xmp_id] = packet
    locations.append(_Location(xmp_id, 0, [(len(data), len(packet))]))  # sorts after the existing data
    order = [loc.item for loc in sorted(locations, key=lambda loc: loc.extents[0][0] if loc.extents else 0)
             if loc.method == 0]
    wide = len(data) + len(packet) > 0xFFFFFFFF
    version = max(meta.iloc_version, 1 if any(loc.method for loc in locations) else 0)

    def rebuilt_meta(offsets: dict[int, int]) -> bytes:
        iloc = _heif_iloc(version, locations, offsets, payloads, 8 if wide else 4)
        body = b"".join(iloc if kind == b"iloc" else box for kind, box in children)
        return _bmff_box(b"meta", data[meta.meta[2] : meta.meta[2] + 4] + body)

    kept = [(kind, data[s:e]) for kind, s, _, e in _bmff_boxes(data, 0, len(data)) if kind != b"mdat"]
    head_size = sum(len(rebuilt_meta(dict.fromkeys(order, 0))) if kind == b"meta" else len(box) for kind, box in kept)
    offsets, pos = {}, head_size + (16 if wide else 8)
    for item in order:  # the iloc's size does not depend on the offset values, so one pass places everything
        offsets[item] = pos
        pos += len(payloads[item])
    blob = b"".join(payloads[item] for item in order)
    head = b"".join(rebuilt_meta(offsets) if kind == b"meta" else box for kind, box in kept)
    mdat = struct.pack(">I4sQ", 1, b"mdat", 16 + len(blob)) if wide else struct.pack(">I4s", 8 + len(blob), b"mdat")
    return head + mdat + blob


def _heif_add_xmp_item(children: list[tuple[bytes, bytes]], item: int, primary: int | None) -> list[tuple[bytes, bytes]]:
    """meta children with an ``infe`` for a new XMP item and, when there is a primary item, its ``cdsc`` link."""
    infe = _bmff_box(b"infe", b"\x02\x00\x00\x00" + struct.pack(">HH", item, 0) + b"mime" + b"XMP\x00" + _XMP_MIME + b"\x00")
    out = []
    for kind, box in children:
        if kind == b"iinf":
            count_size = 2 if box[8] == 0 else 4
            count = int.from_bytes(box[12 : 12 + count_size], "big") + 1
            box = _bmff_box(b"iinf", box[8:12] + count.to_bytes(count_size, "big") + box[12 + count_size :] + infe)
        out.append((kind, box))
    if primary is not None:
        iref = next((box for kind, box in out if kind == b"iref"), None)
        wide = iref is not None and iref[8] == 1
        link = _bmff_box(b"cdsc", struct.pack(">IHI", item, 1, primary) if wide else struct.pack(">HHH", item, 1, primary))
        new = _bmff_box(b"iref", (iref[8:] if iref is not None else b"\x00\x00\x00\x00") + link)
        out = [(k, new if k == b"iref" else b) for k, b in out] if iref is not None else [*out, (b"iref", new)]
    return out


def _heif_iloc(version: int, locations: list[_Location], offsets: dict[int, int], payloads: dict[int, bytes],
               size: int) -> bytes:
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
    return _bmff_box(b"iloc", bytes(out))


class _ImageHandler(Handler[ImageDoc]):
    pil: str = ""
    layers = frozenset({"visible", "metadata", "c2pa"} | ({"watermark"} if _watermark_available() else set()))

    # --- mark ---------------------------------------------------------------------------------------------------
    def load(self, inp: Input, limits: Limits) -> ImageDoc:
        im = _open(inp, limits, self.id)
        orientation = int(im.getexif().get(0x0112, 1) or 1) if hasattr(im, "getexif") else 1
        info = dict(im.info)
        if self.pil == "JPEG":
            info["quality"] = estimate_jpeg_quality(getattr(im, "quantization", {}) or {})
            info["subsampling"] = JpegImagePlugin.get_sampling(im) if im.mode != "CMYK" else 0
        if self.pil == "WEBP":
            info["lossless"] = b"VP8L" in inp.data[12:4096]
        try:
            info["xmp_packet"] = self._get_xmp(inp.data)
        except (struct.error, IndexError, ValueError, OSError, zlib.error):
            info["xmp_packet"] = None  # unreadable XMP is not carried over
        return ImageDoc(inp, im, _working(im), orientation, info)

    def draw_warning(self, doc: ImageDoc, label: Label, opts: MarkOptions) -> None:
        shown = _displayed(doc.work, doc.orientation)
        doc.placement = visible.draw(shown, label, corner=opts.position or "bottom-left", style=opts.style)
        back = _INVERSE_TRANSPOSE.get(doc.orientation)
        doc.work = shown.transpose(back) if back is not None and doc.orientation in _INVERSE_TRANSPOSE else shown

    def embed_watermark(self, doc: ImageDoc, payload: bytes, key: bytes | None) -> None:
        from ..watermark import embed_image

        mode = doc.work.mode
        strength = jpeg_watermark_strength(doc.info["quality"]) if self.pil == "JPEG" else 1.0
        doc.work = Image.fromarray(embed_image(np.asarray(doc.work), payload, key=key, strength=strength), mode=mode)

    def encode(self, doc: ImageDoc, opts: MarkOptions, out: Path) -> None:
        out.write_bytes(self._encoded(doc))

    def _encoded(self, doc: ImageDoc) -> bytes:
        im = _back_to_mode(doc)
        info = doc.info
        params: dict[str, Any] = {}
        if info.get("icc_profile"):
            params["icc_profile"] = info["icc_profile"]
        if info.get("exif"):
            params["exif"] = info["exif"]
        if self.pil == "JPEG":
            params.update(quality=info["quality"], subsampling=info["subsampling"], progressive="progressive" in info,
                          dpi=info.get("dpi", (72, 72)))
        elif self.pil == "PNG":
            from PIL.PngImagePlugin import PngInfo

            text = PngInfo()
            for k, v in info.items():
                if isinstance(v, str) and k != "XML:com.adobe.xmp":
                    text.add_text(k, v)
            params.update(pnginfo=text, compress_level=6)
            if "dpi" in info:
                params["dpi"] = info["dpi"]
            if "transparency" in info and im.mode in ("P", "L", "RGB"):
                params["transparency"] = info["transparency"]
        elif self.pil == "WEBP":
            # WebP does not record its quality: lossy sources are re-encoded high (95) to avoid generation loss
            params.update(lossless=info.get("lossless", False), quality=100 if info.get("lossless") else 95, method=4)
        elif self.pil == "TIFF":
            params["compression"] = info.get("compression", "tiff_lzw") if info.get("compression") != "jpeg" else "tiff_lzw"
        buf = io.BytesIO()
        try:
            im.save(buf, format=self.pil, **params)
        except (OSError, ValueError) as exc:
            raise KzlabelError(f"could not encode {self.name}: {exc}", format=self.id) from None
        packet = info.get("xmp_packet")
        return self._put_xmp(buf.getvalue(), packet) if packet else buf.getvalue()

    def bind(self, doc: ImageDoc, out: Path) -> Mapping[str, Any]:
        if doc.placement is None:
            return {}
        with Image.open(out) as im:
            shown = _displayed(_working(im), doc.orientation)
            record = doc.placement.record(shown.width, shown.height, "")
            record["thumb"] = visible.fingerprint(shown, record["box"])
        return {"warning": record}

    def write_metadata(self, out: Path, label: Label, token: str) -> None:
        rewrite(out, lambda data: self._labelled(data, label, token))

    def _labelled(self, data: bytes, label: Label, token: str) -> bytes:
        values = label_values(label, token)
        replace = LABEL_PROPS
        if label.training == Training.NOT_ALLOWED:
            values |= training_values(TrainingPolicy.from_lists(deny=["all"]))
            replace = LABEL_PROPS + TRAINING_PROPS
        if self.pil == "JPEG":
            data = self._exif_comment(data, label.aigc_json(token))
        return self._put_xmp(data, merge_xmp(self._get_xmp(data), values, replace))

    @staticmethod
    def _exif_comment(data: bytes, aigc: str) -> bytes:
        """GB 45438's JPEG carrier: EXIF UserComment ``{"AIGC": {...}}`` (ASCII), other EXIF kept."""
        import piexif

        try:
            exif = piexif.load(data)
        except Exception:  # noqa: BLE001 - piexif raises bare errors on odd EXIF; start a fresh block then
            exif = {"0th": {}, "Exif": {}, "GPS": {}, "1st": {}, "thumbnail": None}
        comment = json.dumps({"AIGC": json.loads(aigc)}, separators=(",", ":"))
        exif.setdefault("Exif", {})[piexif.ExifIFD.UserComment] = b"ASCII\x00\x00\x00" + comment.encode("ascii")
        try:
            out = io.BytesIO()
            piexif.insert(piexif.dump(exif), data, out)
            return out.getvalue()
        except Exception as exc:  # noqa: BLE001
            raise KzlabelError(f"could not write EXIF: {exc}", format="jpeg") from None

    def _get_xmp(self, data: bytes) -> bytes | None:
        if self.pil == "TIFF":
            with Image.open(io.BytesIO(data)) as im:
                raw = im.tag_v2.get(700) if hasattr(im, "tag_v2") else None
            return bytes(raw) if isinstance(raw, (bytes, bytearray)) else (raw.encode() if isinstance(raw, str) else None)
        return {"JPEG": _jpeg_xmp, "PNG": _png_xmp, "WEBP": _webp_xmp, "GIF": _gif_xmp, "AVIF": _heif_xmp,
                "HEIF": _heif_xmp}[self.pil](data)

    def _put_xmp(self, data: bytes, packet: bytes) -> bytes:
        if self.pil == "TIFF":  # lossless: re-save with tag 700 (XMP) replaced, every other tag kept
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                tags = dict(im.tag_v2)
                tags[700] = packet
                buf = io.BytesIO()
                im.save(buf, format="TIFF", tiffinfo=tags, compression=im.info.get("compression", "raw"))
            return buf.getvalue()
        return {"JPEG": _jpeg_put_xmp, "PNG": _png_put_xmp, "WEBP": _webp_put_xmp, "GIF": _gif_put_xmp,
                "AVIF": _heif_put_xmp, "HEIF": _heif_put_xmp}[self.pil](data, packet)

    # --- verify -------------------------------------------------------------------------------------------------
    def inspect(self, inp: Input, limits: Limits, key: bytes | None) -> Findings:
        im = _open(inp, limits, self.id)
        try:
            values = xmp_values(self._get_xmp(inp.data))
        except (struct.error, IndexError, zlib.error, ValueError, OSError):
            values = {}
        tokens = [("XMP kzlabel:Label", values.pop("kzlabel:Label"))] if values.get("kzlabel:Label") else []
        fields: dict[str, Any] = dict(values)
        work = _working(im)
        mark = None
        if "watermark" in self.layers:
            from ..watermark import detect_image

            mark = detect_image(np.asarray(work), key=key)
        orientation = int(im.getexif().get(0x0112, 1) or 1)
        return Findings(tokens=tokens, fields=fields, watermark=mark, state=_displayed(work, orientation))

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        record = label.warning or {}
        if record.get("kind") != "overlay":
            return LabelMatch(None, None, "no warning recorded")
        ok = visible.region_matches(findings.state, record)
        return LabelMatch(None, ok, "warning region matches" if ok else "warning region changed")

    def read_training(self, inp: Input, limits: Limits) -> list[TrainingSignal]:
        values = xmp_values(self._get_xmp(inp.data))
        found = [signal_from_plus(values.get("plus:DataMining")),
                 signal_from_tdmrep(values.get("tdm:reservation"), values.get("tdm:policy"), "XMP tdm:reservation")]
        return [s for s in found if s is not None]

    def write_training(self, data: bytes, policy: Any, limits: Limits) -> bytes:
        _open(Input(data), limits, self.id)
        return self._put_xmp(data, merge_xmp(self._get_xmp(data), training_values(policy), TRAINING_PROPS))


class Png(_ImageHandler):
    id, name, mime, extensions, pil = "png", "PNG", "image/png", (".png",), "PNG"

    def score(self, header: bytes, name: str | None) -> int:
        return 100 if header.startswith(b"\x89PNG\r\n\x1a\n") else 0


class Jpeg(_ImageHandler):
    id, name, mime, extensions, pil = "jpeg", "JPEG", "image/jpeg", (".jpg", ".jpeg", ".jpe", ".jfif"), "JPEG"

    def score(self, header: bytes, name: str | None) -> int:
        return 100 if header.startswith(b"\xff\xd8\xff") else 0


class WebP(_ImageHandler):
    id, name, mime, extensions, pil = "webp", "WebP", "image/webp", (".webp",), "WEBP"

    def score(self, header: bytes, name: str | None) -> int:
        return 100 if header[:4] == b"RIFF" and header[8:12] == b"WEBP" else 0


class Tiff(_ImageHandler):
    id, name, mime, extensions, pil = "tiff", "TIFF", "image/tiff", (".tif", ".tiff"), "TIFF"

    def score(self, header: bytes, name: str | None) -> int:
        return 100 if header[:4] in (b"II*\x00", b"MM\x00*") else 0


class Gif(_ImageHandler):
    id, name, mime, extensions, pil = "gif", "GIF", "image/gif", (".gif",), "GIF"

    def score(self, header: bytes, name: str | None) -> int:
        return 100 if header[:6] in (b"GIF87a", b"GIF89a") else 0


# AV1 and HEVC do not record an encoder quality. 90 keeps re-encoding loss small (≈ 37 dB on noisy test images) and
# leaves the watermark at its default amplitude far above the detection threshold (p ≈ 1e-16 or lower at q90 on
# every test image; q60 is where it nears 1e-6 — see docs/images.md).
HEIF_FAMILY_QUALITY = 90


def _heif_property(data: bytes, kind: bytes) -> bytes | None:
    """The body of the first ``kind`` item property (meta/iprp/ipco), or None when absent or unparsable."""
    try:
        meta = _heif_meta(data)
        for ckind, _, body, end in meta.children:
            if ckind == b"iprp":
                for pkind, _, pbody, pend in _bmff_boxes(data, body, end):
                    if pkind == b"ipco":
                        for prop, _, qbody, qend in _bmff_boxes(data, pbody, pend):
                            if prop == kind:
                                return data[qbody:qend]
    except KzlabelError:
        return None
    return None


def _av1_subsampling(data: bytes) -> str:
    """The source's AV1 chroma subsampling (from av1C), so a 4:4:4 or monochrome AVIF stays so."""
    av1c = _heif_property(data, b"av1C")
    if av1c is None or len(av1c) < 3:
        return "4:2:0"
    flags = av1c[2]  # tier, high_bitdepth, twelve_bit, monochrome, subsampling_x, subsampling_y, position (2)
    if flags & 0x10:
        return "4:0:0"
    return {(0, 0): "4:4:4", (1, 0): "4:2:2"}.get(((flags >> 3) & 1, (flags >> 2) & 1), "4:2:0")


def _hevc_chroma(data: bytes) -> int:
    """The source's HEVC chroma format (from hvcC) as pillow-heif's ``chroma`` value."""
    hvcc = _heif_property(data, b"hvcC")
    if hvcc is None or len(hvcc) < 17:
        return 420
    return {2: 422, 3: 444}.get(hvcc[16] & 3, 420)


class _HeifFamily(_ImageHandler):
    """AVIF and HEIF: lossy re-encode at HEIF_FAMILY_QUALITY with the source's chroma subsampling."""

    brands: tuple[bytes, ...] = ()

    def score(self, header: bytes, name: str | None) -> int:
        brands = _bmff_brands(header)
        if not brands:
            return 0
        if brands[0] in self.brands:
            return 100
        # a generic major brand (mif1/msf1/miaf) with ours among the compatible brands
        return 95 if brands[0] in (b"mif1", b"msf1", b"miaf") and any(b in self.brands for b in brands[1:]) else 0

    def load(self, inp: Input, limits: Limits) -> ImageDoc:
        _heif_meta(inp.data)  # a broken item table is CorruptInput before any decoder sees it
        return super().load(inp, limits)

    def _save_params(self, doc: ImageDoc) -> dict[str, Any]:
        raise NotImplementedError

    def _encoded(self, doc: ImageDoc) -> bytes:
        im = doc.work if doc.work.mode in ("RGB", "RGBA") else doc.work.convert("RGB")
        if doc.original.mode in ("L", "LA", "I", "I;16") and im.mode == "RGB":
            im = im.convert("L")
        params: dict[str, Any] = {"quality": HEIF_FAMILY_QUALITY, **self._save_params(doc)}
        for key in ("icc_profile", "exif"):
            if doc.info.get(key):
                params[key] = doc.info[key]
        buf = io.BytesIO()
        try:
            im.save(buf, format=self.pil, **params)
        except (OSError, ValueError, RuntimeError) as exc:
            raise KzlabelError(f"could not encode {self.name}: {exc}", format=self.id) from None
        packet = doc.info.get("xmp_packet")
        return _heif_put_xmp(buf.getvalue(), packet) if packet else buf.getvalue()


class Avif(_HeifFamily):
    id, name, mime, extensions, pil = "avif", "AVIF", "image/avif", (".avif",), "AVIF"
    brands = _AVIF_BRANDS

    def _save_params(self, doc: ImageDoc) -> dict[str, Any]:
        return {"subsampling": _av1_subsampling(doc.inp.data)}


@functools.lru_cache(maxsize=1)
def heif_codec_available() -> bool:
    """Whether pillow-heif (HEVC decode + encode) is installed; its Pillow plugin is registered on first use."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


class Heif(_HeifFamily):
    """HEIF/HEIC: read + write with pillow-heif (extra ``heif``); without it read-only (XMP, C2PA, opt-outs)."""

    id, name, mime, extensions, pil = "heif", "HEIF", "image/heic", (".heic", ".heif", ".hif"), "HEIF"
    brands = _HEIF_BRANDS

    def load(self, inp: Input, limits: Limits) -> ImageDoc:
        if not heif_codec_available():
            raise UnsupportedFormat(
                "HEIF/HEIC is read-only here: verify reads its XMP and C2PA manifest, but marking needs an HEVC "
                "codec — pip install 'kzlabel[heif]' (pillow-heif)", source=inp.source, format=self.id)
        return super().load(inp, limits)

    def _save_params(self, doc: ImageDoc) -> dict[str, Any]:
        return {"chroma": _hevc_chroma(doc.inp.data)}

    def inspect(self, inp: Input, limits: Limits, key: bytes | None) -> Findings:
        if heif_codec_available():
            return super().inspect(inp, limits, key)
        _heif_meta(inp.data)  # the container must parse even when the pixels cannot be decoded
        values = xmp_values(_heif_xmp(inp.data))
        tokens = [("XMP kzlabel:Label", values.pop("kzlabel:Label"))] if values.get("kzlabel:Label") else []
        return Findings(tokens=tokens, fields=dict(values), watermark=None, state=None)

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        if findings.state is None:
            return LabelMatch(None, None, "pixels not decodable without pillow-heif")
        return super().check_label(findings, label)

    def write_training(self, data: bytes, policy: Any, limits: Limits) -> bytes:
        if heif_codec_available():
            return super().write_training(data, policy, limits)
        _heif_meta(data)
        return _heif_put_xmp(data, merge_xmp(_heif_xmp(data), training_values(policy), TRAINING_PROPS))


for _handler in (Png(), Jpeg(), WebP(), Tiff(), Gif(), Avif(), Heif()):
    register(_handler)
