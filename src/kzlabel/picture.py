"""Picture fingerprints that bind a signed image label to what a person sees (numpy and Pillow, no file I/O).

A label binds its picture exactly (a SHA-256 of the decoded pixels, which any re-encode breaks) and perceptually, with
a grid of cell statistics that a platform's re-encode or resize keeps and an edit a person would see does not:

- the picture is cut into about :data:`GRID_CELLS` square cells (at least :data:`MIN_CELL_PX` pixels on a side, so a
  0.1-megapixel picture has ~700), each split into 2×2 sub-cells whose mean colour one Pillow BOX reduction gives;
- per cell the mean luma (Y), per 2×2 cells the mean chroma (Cb, Cr, as a JPEG encoder subsamples it) and the *detail*:
  how far the sub-cells' luma stray from their cell's (mean absolute deviation), which a blur or a flat patch removes
  while the means stay;
- stored quantised (luma and chroma in steps of 2 levels, detail in whole levels), each plane left-differenced,
  zlib-compressed and base64-encoded: 588-4,656 characters on the 21 pictures of benchmarks/bench_binding.py.

Verify takes the same grid of the picture it has. When the picture has the signed size (a re-encode, a format
conversion, a metadata strip — or an edit in place), every cell is compared with a tight tolerance; when the size
differs (a resize), the cell differences are averaged over blocks of at least :data:`RESIZED_BLOCK_PX` pixels of the
resized picture, with a tolerance that grows with the local contrast the signed grid shows (a resampling filter moves
an edge's energy across a cell border), so a local edit then has to be larger to be seen. Measured with
``benchmarks/bench_binding.py --part images`` on 21 pictures (photos, flat posters, text and UI screenshots from 0.1
to 1 MP, the bundled samples) × 16 transformations (JPEG 95 to 40 with 4:2:0 or 4:4:4 chroma, WebP 75/50, AVIF 60,
PNG, resizes to 0.9-0.5 and to 1080/512 px on the long side, a bilinear resize with sharpening): the largest change
was 0.70 of the tolerance at the same size (6.5 levels of luma, 4.8 of chroma, 2.8 of detail) and 0.53 resized, while
every JPEG entropy-data flip that moved ≥ 0.5 % of the picture by more than 16 levels, and every pasted patch,
cloned region, line of text, swapped face or inpainted object over 1-5 % of it, went over.

Cells that touch a region the caller leaves out (the drawn warning's box) are not compared.
"""

from __future__ import annotations

import base64
import binascii
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["PictureGrid", "PictureMatch", "grid_dims", "match_picture", "pack_grids", "picture_grid", "unpack_grids"]

GRID_CELLS = 4096  # cells of the luma grid (fewer for small pictures: MIN_CELL_PX)
MIN_CELL_PX = 12  # smallest cell side: below it a re-encode's ringing moves a cell mean by ~8 levels
LUMA_STEP = 2.0  # quantisation of the stored luma and chroma means (levels)
CHROMA_STEP = 2.0
# same size: the largest change of one cell still taken as the same picture (module doc: benign at most 0.70 of it)
LUMA_TOL = 10.0
CHROMA_TOL = 8.0
DETAIL_TOL = 4.0
# resized: cell differences summed over blocks of at least RESIZED_BLOCK_PX pixels of the resized picture and
# RESIZED_BLOCK_SIGNED_PX of the signed one; a block may change by RESIZED_TOL + CONTRAST_SHARE × the largest
# step between neighbouring signed cells in it (module doc)
RESIZED_BLOCK_PX = 16
RESIZED_BLOCK_SIGNED_PX = 36
RESIZED_TOL = 8.0
CONTRAST_SHARE = 0.1
BOX_MARGIN_PX = 8  # cells this close to a left-out region are not compared (a codec's ringing from its edge)

# ITU-R BT.601 full range, as JPEG and Pillow's YCbCr use it
_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
_OFFSET = np.array([0.0, 128.0, 128.0], np.float32)


def grid_dims(width: int, height: int, cells: int = GRID_CELLS) -> tuple[int, int]:
    """The luma grid's (columns, rows) for a picture: about ``cells`` square cells, none under MIN_CELL_PX."""
    cell = max(float(MIN_CELL_PX), (width * height / cells) ** 0.5)
    return max(1, round(width / cell)), max(1, round(height / cell))


def _pool(a: np.ndarray) -> np.ndarray:
    """2×2 means over the first two axes (an odd last row or column is its own mean)."""
    h, w = a.shape[:2]
    rows, cols = np.arange(0, h, 2), np.arange(0, w, 2)
    a = np.add.reduceat(a, rows, axis=0) / np.diff(np.append(rows, h)).reshape(-1, *([1] * (a.ndim - 1)))
    return np.add.reduceat(a, cols, axis=1) / np.diff(np.append(cols, w)).reshape(1, -1, *([1] * (a.ndim - 2)))


@dataclass(frozen=True)
class PictureGrid:
    """A picture's cell statistics: luma (rows, cols), chroma (rows/2, cols/2, 2: Cb, Cr), detail (rows/2, cols/2)."""

    size: tuple[int, int]  # (width, height) of the picture they were taken from
    luma: np.ndarray
    chroma: np.ndarray
    detail: np.ndarray

    @property
    def dims(self) -> tuple[int, int]:
        return self.luma.shape[1], self.luma.shape[0]

    def planes(self) -> tuple[np.ndarray, ...]:
        """The quantised planes as stored (int16): luma and chroma in steps, detail in whole levels."""
        return (
            np.rint(self.luma / LUMA_STEP).astype(np.int16),
            np.rint(self.chroma[..., 0] / CHROMA_STEP).astype(np.int16),
            np.rint(self.chroma[..., 1] / CHROMA_STEP).astype(np.int16),
            np.rint(np.minimum(self.detail, 255)).astype(np.int16),
        )

    def pack(self) -> dict[str, Any]:
        """The signed form: size, grid dims and the quantised planes (left-differenced, zlib, base64)."""
        raw = b"".join(_difference(p).tobytes() for p in self.planes())
        return {
            "size": list(self.size),
            "grid": list(self.dims),
            "cells": base64.b64encode(zlib.compress(raw, 9)).decode("ascii"),
        }

    @classmethod
    def unpack(cls, signed: Mapping[str, Any]) -> PictureGrid:
        """The grid a label carries (ValueError when it is malformed)."""
        return unpack_grids(signed, 1)[0]


def _signed_dims(signed: Mapping[str, Any], cells: int) -> tuple[tuple[int, int], tuple[int, int], bytes]:
    try:
        width, height = (int(v) for v in signed["size"])
        cols, rows = (int(v) for v in signed["grid"])
        packed = base64.b64decode(str(signed["cells"]), validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ValueError(f"malformed picture grid: {exc}") from None
    if min(width, height) < 1 or (cols, rows) != grid_dims(width, height, cells):
        raise ValueError("the picture grid does not fit the signed size")
    return (width, height), (cols, rows), packed


def pack_grids(grids: Sequence[PictureGrid]) -> dict[str, Any]:
    """Several grids of one size (an animation's frames) in one signed form: each frame's planes minus the previous
    frame's (modulo 256), then left-differenced as :meth:`PictureGrid.pack` does, in one zlib stream. What stays
    still between frames packs to zeros, so the form grows with the motion, not with the frame count."""
    first = grids[0]
    raw, before = [], [np.zeros_like(p) for p in first.planes()]
    for grid in grids:
        if grid.size != first.size:
            raise ValueError("grids of one sequence must have one size")
        now = grid.planes()
        raw += [_difference(p - q).tobytes() for p, q in zip(now, before, strict=True)]
        before = list(now)
    return {
        "size": list(first.size),
        "grid": list(first.dims),
        "cells": base64.b64encode(zlib.compress(b"".join(raw), 9)).decode("ascii"),
    }


def unpack_grids(signed: Mapping[str, Any], count: int, cells: int = GRID_CELLS) -> list[PictureGrid]:
    """The ``count`` grids of about ``cells`` cells a label carries (:func:`pack_grids`; one grid:
    :meth:`PictureGrid.pack`); ValueError when it is malformed."""
    size, (cols, rows), packed = _signed_dims(signed, cells)
    crows, ccols = -(-rows // 2), -(-cols // 2)
    shapes = ((rows, cols), (crows, ccols), (crows, ccols), (crows, ccols))
    length = sum(r * c for r, c in shapes) * count
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(packed, length + 1)  # never more than the grids need, whatever the data says
    except zlib.error as exc:
        raise ValueError(f"malformed picture grid: {exc}") from None
    if len(raw) != length or not inflate.eof:
        raise ValueError("the picture grid has the wrong length")
    buf, at, out = np.frombuffer(raw, np.uint8), 0, []
    before = [np.zeros(shape, np.float32) for shape in shapes]
    for _ in range(count):
        planes = []
        for shape, prev in zip(shapes, before, strict=True):
            n = shape[0] * shape[1]
            planes.append((_undifference(buf[at : at + n].reshape(shape)) + prev) % 256)
            at += n
        before = planes
        luma = planes[0] * np.float32(LUMA_STEP)
        chroma = np.stack(planes[1:3], axis=-1) * np.float32(CHROMA_STEP)
        out.append(PictureGrid(size, luma, chroma, planes[3]))
    return out


def _difference(q: np.ndarray) -> np.ndarray:
    """Each value minus its left neighbour (the first column: minus the one above), modulo 256."""
    d = np.diff(q, axis=1, prepend=0)
    d[1:, 0] = q[1:, 0] - q[:-1, 0]
    return (d % 256).astype(np.uint8)


def _undifference(d: np.ndarray) -> np.ndarray:
    first = np.cumsum(d[:, 0].astype(np.int64)) % 256
    rest = d.astype(np.int64)
    rest[:, 0] = first
    return (np.cumsum(rest, axis=1) % 256).astype(np.float32)


def picture_grid(image: Image.Image, dims: tuple[int, int] | None = None) -> PictureGrid:
    """The grid of an RGB picture (``dims``: the signed grid's, to compare like with like)."""
    cols, rows = dims or grid_dims(*image.size)
    sub = np.asarray(image.resize((2 * cols, 2 * rows), Image.Resampling.BOX), np.float32)  # one pass over the pixels
    sub_luma = sub @ _TO_YCC[0]
    cells = _pool(sub)
    luma = cells @ _TO_YCC[0]
    chroma = _pool(cells) @ _TO_YCC[1:].T + _OFFSET[1:]
    spread = np.abs(sub_luma - np.repeat(np.repeat(luma, 2, axis=0), 2, axis=1))
    detail = _pool(spread.reshape(rows, 2, cols, 2).mean(axis=(1, 3)))
    return PictureGrid(image.size, luma, chroma, detail)


def _mask(box: Sequence[float] | None, cols: int, rows: int, size: tuple[int, int]) -> np.ndarray:
    """Cells (rows × cols) that touch ``box`` (fractions) widened by BOX_MARGIN_PX of a ``size`` picture."""
    out = np.zeros((rows, cols), bool)
    if not box:
        return out
    fx, fy, fw, fh = (float(v) for v in box)
    mx, my = BOX_MARGIN_PX / size[0], BOX_MARGIN_PX / size[1]
    xs, ys = np.arange(cols + 1) / cols, np.arange(rows + 1) / rows
    in_x = (xs[1:] > fx - mx) & (xs[:-1] < fx + fw + mx)
    in_y = (ys[1:] > fy - my) & (ys[:-1] < fy + fh + my)
    out[np.ix_(in_y, in_x)] = True
    return out


def _upsample(a: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """A half-resolution plane back on the luma grid (each value over its 2×2 cells)."""
    return np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)[:rows, :cols]


def _local_range(a: np.ndarray) -> np.ndarray:
    """Per cell, the largest difference to a neighbouring cell (4-neighbourhood), over the first two axes."""
    out = np.zeros_like(a)
    dx, dy = np.abs(np.diff(a, axis=1)), np.abs(np.diff(a, axis=0))
    out[:, 1:] = np.maximum(out[:, 1:], dx)
    out[:, :-1] = np.maximum(out[:, :-1], dx)
    out[1:] = np.maximum(out[1:], dy)
    out[:-1] = np.maximum(out[:-1], dy)
    return out


@dataclass(frozen=True)
class PictureMatch:
    same: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


def _where(cell: tuple[int, int], rows: int, cols: int) -> str:
    r, c = cell
    return f"around {round(100 * (c + 0.5) / cols)}% from the left, {round(100 * (r + 0.5) / rows)}% from the top"


def match_picture(signed: PictureGrid, image: Image.Image, leave_out: Sequence[float] | None = None) -> PictureMatch:
    """Is ``image`` (RGB) the signed picture, re-encoded or resized? ``leave_out``: a box (fractions) not compared."""
    if image.size == signed.size:
        return _same_size(signed, picture_grid(image, signed.dims), leave_out)
    return _resized(signed, image, leave_out)


def _same_size(signed: PictureGrid, got: PictureGrid, leave_out: Sequence[float] | None) -> PictureMatch:
    cols, rows = signed.dims
    mask = _mask(leave_out, cols, rows, signed.size)
    cmask = _pool(mask.astype(np.float32)) > 0
    luma = np.where(mask, 0, np.abs(got.luma - signed.luma))
    chroma = np.where(cmask, 0, np.abs(got.chroma - signed.chroma).max(axis=-1))
    detail = np.where(cmask, 0, np.abs(got.detail - signed.detail))
    # every statistic on the luma grid, as a share of its tolerance (a chroma/detail cell covers 2×2 luma cells)
    score = np.maximum(luma / LUMA_TOL, _upsample(np.maximum(chroma / CHROMA_TOL, detail / DETAIL_TOL), cols, rows))
    data = {  # the largest changes, and the largest as a share of its tolerance (over 1: changed)
        "luma": round(float(luma.max()), 1),
        "chroma": round(float(chroma.max()), 1),
        "detail": round(float(detail.max()), 1),
        "share": round(float(score.max()), 2),
    }
    if float(score.max()) <= 1.0:
        return PictureMatch(
            True, f"re-encoded since signing, the same picture (cells within {data['luma']} levels)", data
        )
    changed = int((score > 1.0).sum())
    worst = np.unravel_index(int(score.argmax()), score.shape)
    data["cells"] = changed
    share = 100 * changed / score.size
    return PictureMatch(
        False,
        f"the picture changed since signing ({share:.1f}% of it, {_where((int(worst[0]), int(worst[1])), rows, cols)})",
        data,
    )


def _blocks(a: np.ndarray, k: int, ufunc: np.ufunc = np.add) -> np.ndarray:
    """``ufunc`` over k×k blocks of the first two axes (the last blocks may be smaller)."""
    h, w = a.shape[:2]
    return ufunc.reduceat(ufunc.reduceat(a, np.arange(0, h, k), axis=0), np.arange(0, w, k), axis=1)


def _resized(signed: PictureGrid, image: Image.Image, leave_out: Sequence[float] | None) -> PictureMatch:
    cols, rows = signed.dims
    width, height = image.size
    # the resized picture over the signed cells (same fractions of the picture), then the differences summed over
    # blocks of k×k cells: BOX reduction moves a pixel on a cell border into one cell or the next, which cancels
    # inside a block, and a block is large enough that a resampling filter's spread across its border is small
    rgb = np.asarray(image.resize((cols, rows), Image.Resampling.BOX), np.float32)
    luma, chroma = rgb @ _TO_YCC[0], _pool(rgb) @ _TO_YCC[1:].T + _OFFSET[1:]
    got_cell = min(width / cols, height / rows)
    signed_cell = min(signed.size[0] / cols, signed.size[1] / rows)
    k = max(1, math.ceil(RESIZED_BLOCK_PX / got_cell), math.ceil(RESIZED_BLOCK_SIGNED_PX / signed_cell))
    kc = -(-k // 2)
    keep = ~_mask(leave_out, cols, rows, signed.size)
    ckeep = _pool(keep.astype(np.float32)) == 1
    luma_diff = _blocks((luma - signed.luma) * keep, k) / np.maximum(_blocks(keep.astype(np.float32), k), 1)
    chroma_diff = np.abs(
        _blocks((chroma - signed.chroma) * ckeep[..., None], kc)
        / np.maximum(_blocks(ckeep.astype(np.float32), kc), 1)[..., None]
    ).max(axis=-1)
    # a block's tolerance grows with the contrast the signed picture has in it (filters ring and blur at edges)
    luma_tol = RESIZED_TOL + CONTRAST_SHARE * _blocks(_local_range(signed.luma) * keep, k, np.maximum)
    chroma_tol = RESIZED_TOL + CONTRAST_SHARE * _blocks(
        _local_range(signed.chroma).max(axis=-1) * ckeep, kc, np.maximum
    )
    luma_score, chroma_score = np.abs(luma_diff) / luma_tol, chroma_diff / chroma_tol
    share = max(float(luma_score.max()), float(chroma_score.max()))
    data = {
        "luma": round(float(np.abs(luma_diff).max()), 1),
        "chroma": round(float(chroma_diff.max()), 1),
        "share": round(share, 2),
    }
    if share <= 1.0:
        return PictureMatch(
            True, f"resized since signing, the same picture (blocks within {data['luma']} levels)", data
        )
    if float(luma_score.max()) >= float(chroma_score.max()):
        worst, shape = np.unravel_index(int(luma_score.argmax()), luma_score.shape), luma_score.shape
    else:
        worst, shape = np.unravel_index(int(chroma_score.argmax()), chroma_score.shape), chroma_score.shape
    return PictureMatch(
        False, f"the picture changed since signing ({_where((int(worst[0]), int(worst[1])), *shape)})", data
    )
