"""APNG frames as kzlabel writes them: each frame stored as the rectangle that changed, still pixels left out.

Pillow's APNG writer stores each frame as the bounding rectangle of what changed, every pixel of it, with its own
choice of PNG filters. A marked animation's still regions are byte-identical from frame to frame (the previous marked
frame's blocks are reused where the source did not change), but the rectangle around what moved holds many of them:
on a cinemagraph the moving part's rectangle grew 2x-4x in bytes with the mark's noise on its still background. Here
the 16x16 blocks inside the rectangle that did not change are written as transparent pixels with the APNG blend
operation OVER (the canvas shows through: the previous frame's pixels), when that is smaller than the whole rectangle
written with SOURCE; an RGB animation gets a colour key in ``tRNS`` that no frame shows, a paletted one a transparent
index. The first frame's rows are filtered Up on every row or as Pillow chooses per row, whichever deflates smaller
(palette indices also unfiltered), and the later frames the same way (trying every method on every frame doubled
the encoding time for 0-1 % of size): on the marked smooth test frames Up was 4-6 % smaller than a per-row choice,
the mark's noise defeating the predictors that win on clean pictures; on a grainy frame Pillow's choice was 6 %
smaller.

Frame 0 and the chunks before it (IHDR, PLTE, tRNS, text, pHYs, iCCP, eXIf) come from Pillow's still writer; each
frame keeps the source's duration and dispose operation, and the canvas each frame is compared with is the one a
decoder shows after that operation (APNG 1.0: a first frame's PREVIOUS counts as BACKGROUND).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from PIL import Image

from ...containers import png

__all__ = ["BLOCK", "INDEX_METHODS", "METHODS", "assemble", "unused_colour"]

BLOCK = 16  # the still-block size; the marking step reuses the previous marked frame's blocks of this size
LEVEL = 6  # deflate level: 9 took 6-8x the time for 5-6 % less on the test frames
# how a frame's scanlines are filtered: Pillow's per-row choice, Up on every row, none (palette indices only)
METHODS = ("pillow", "up")
INDEX_METHODS = (*METHODS, "none")
_NONE, _BACKGROUND, _PREVIOUS = 0, 1, 2
_SOURCE, _OVER = 0, 1


def unused_colour(frames: Sequence[np.ndarray]) -> tuple[int, int, int] | None:
    """An RGB colour none of ``frames`` (H×W×3 uint8) shows, for the ``tRNS`` colour key; None if they show all."""
    seen = np.zeros(1 << 24, bool)
    for f in frames:
        a = f.astype(np.uint32)
        seen[(a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]] = True
    free = np.flatnonzero(~seen)
    if free.size == 0:
        return None
    v = int(free[0])
    return v >> 16, (v >> 8) & 255, v & 255


def _deflated(pixels: np.ndarray, methods: Sequence[str]) -> tuple[bytes, str]:
    """The smallest zlib stream of ``pixels`` (H×W×C, or H×W palette indices) as PNG scanlines over ``methods``
    (METHODS), and the method that made it."""
    best, how = b"", ""
    for method in methods:
        data = _pillow_stream(pixels) if method == "pillow" else _filtered_stream(pixels, up=method == "up")
        if not best or len(data) < len(best):
            best, how = data, method
    return best, how


def _filtered_stream(pixels: np.ndarray, up: bool) -> bytes:
    """``pixels`` as scanlines all filtered Up (``up``) or all unfiltered, deflated."""
    h = pixels.shape[0]
    rows = pixels.reshape(h, -1)
    lines = np.empty((h, rows.shape[1] + 1), np.uint8)
    lines[:, 0] = 2 if up else 0
    lines[:, 1:] = rows
    if up:
        lines[1:, 1:] -= rows[:-1]  # uint8 arithmetic wraps modulo 256, as PNG's filters do
    return zlib.compress(lines.tobytes(), LEVEL)


def _pillow_stream(pixels: np.ndarray) -> bytes:
    """The zlib stream Pillow's PNG writer makes of ``pixels`` (its IDAT chunks' bodies, 8 bits a sample)."""
    mode = {1: "P", 3: "RGB", 4: "RGBA"}[1 if pixels.ndim == 2 else pixels.shape[2]]
    im = Image.fromarray(np.ascontiguousarray(pixels), mode)
    if mode == "P":
        im.putpalette(bytes(768))  # any 256 entries: only the indices are taken, at 8 bits
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=LEVEL, bits=8)
    data = buf.getvalue()
    return b"".join(data[c.start + 8 : c.end - 4] for c in png.chunks(data) if c.kind == b"IDAT")


def _fctl(seq: int, box: tuple[int, int, int, int], duration: int, dispose: int, blend: int) -> bytes:
    x0, y0, x1, y1 = box
    delay = Fraction(max(int(duration), 0), 1000).limit_denominator(65535)
    if delay.numerator > 65535:
        raise ValueError(f"cannot write a {duration}-ms frame duration")
    body = struct.pack(">IIIIIHHBB", seq, x1 - x0, y1 - y0, x0, y0, delay.numerator, delay.denominator, dispose, blend)
    return png.chunk(b"fcTL", body)


def _split(data: bytes, size: int = 1 << 20) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def assemble(
    still: bytes,
    pixels: Sequence[np.ndarray],
    shown: Sequence[np.ndarray],
    durations: Sequence[int],
    dispose: Sequence[int],
    loop: int,
    hole: np.ndarray | int | None,
    keyed: bool = False,
) -> bytes:
    """The APNG of ``still`` (Pillow's PNG of frame 0, with the chunks it should carry, 8-bit) and every frame's
    ``pixels`` as written (H×W×C, or H×W indices) and as ``shown`` (H×W×4 RGBA, what a decoder composites).
    ``hole``: the pixel value a decoder shows as transparent (``tRNS`` colour key, transparent index or RGBA zero),
    or None (no frame leaves still pixels out). ``keyed``: the still's ``tRNS`` is there only for ``hole`` and is
    left out when no frame used it (256 bytes of a paletted one's)."""
    chunks = png.chunks(still)
    idat = [i for i, c in enumerate(chunks) if c.kind == b"IDAT"]
    before = [still[c.start : c.end] for c in chunks[: idat[0]]]
    after = [still[c.start : c.end] for c in chunks[idat[-1] + 1 :] if c.kind != b"IEND"]
    count = len(pixels)
    out: list[bytes] = []
    h, w = shown[0].shape[:2]
    canvas = np.zeros((h, w, 4), np.uint8)  # what a decoder shows before each frame
    # pixels a BACKGROUND disposal cleared: always written again (Pillow fills them with index 0 in a paletted
    # APNG, not transparent black as APNG 1.0 says, so no decoder is left to show them through OVER)
    cleared = np.zeros((h, w), bool)
    seq, over = 0, False
    methods: Sequence[str] = INDEX_METHODS if pixels[0].ndim == 2 else METHODS
    for i in range(count):
        target = shown[i]
        op = _BACKGROUND if i == 0 and dispose[i] == _PREVIOUS else dispose[i]
        if i == 0:
            data, how = _deflated(pixels[0], methods)
            box, blend = (0, 0, w, h), _SOURCE
            methods = (how,)  # the later frames are filtered as the first was best filtered
        else:
            box, blend, data = _delta(pixels[i], target, canvas, cleared, hole, methods)
            over = over or blend == _OVER
        out.append(_fctl(seq, box, durations[i], dispose[i], blend))
        seq += 1
        if i == 0:
            out += [png.chunk(b"IDAT", part) for part in _split(data)]
        else:
            for part in _split(data):
                out.append(png.chunk(b"fdAT", struct.pack(">I", seq) + part))
                seq += 1
        prior = canvas, cleared
        canvas, cleared = target.copy(), np.zeros((h, w), bool)
        if op == _BACKGROUND:
            x0, y0, x1, y1 = box
            canvas[y0:y1, x0:x1] = 0
            cleared[y0:y1, x0:x1] = True
        elif op == _PREVIOUS:
            canvas, cleared = prior
    if keyed and not over:
        before = [b for b in before if b[4:8] != b"tRNS"]
    head = [png.SIGNATURE, *before, png.chunk(b"acTL", struct.pack(">II", count, loop))]
    return b"".join([*head, *out, *after, png.chunk(b"IEND", b"")])


def _delta(
    pixels: np.ndarray,
    target: np.ndarray,
    canvas: np.ndarray,
    cleared: np.ndarray,
    hole: np.ndarray | int | None,
    methods: Sequence[str],
) -> tuple[tuple[int, int, int, int], int, bytes]:
    """One frame after the first: the rectangle that changed, its blend operation and its zlib stream."""
    changed = (target != canvas).any(axis=2) | cleared
    ys, xs = np.nonzero(changed)
    if ys.size == 0:  # the same picture again (kept as a frame: its duration is its own)
        return (0, 0, 1, 1), _SOURCE, _deflated(pixels[:1, :1], methods)[0]
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    rect = pixels[y0:y1, x0:x1]
    whole = _deflated(rect, methods)[0]
    opaque = bool((target[y0:y1, x0:x1, 3][changed[y0:y1, x0:x1]] == 255).all())
    if hole is None or not opaque:  # OVER would blend a translucent pixel with what was there
        return (x0, y0, x1, y1), _SOURCE, whole
    h, w = changed.shape
    ph, pw = -h % BLOCK, -w % BLOCK
    padded = np.pad(changed, ((0, ph), (0, pw)))
    moved = padded.reshape((h + ph) // BLOCK, BLOCK, (w + pw) // BLOCK, BLOCK).any(axis=(1, 3))
    still = ~np.repeat(np.repeat(moved, BLOCK, axis=0), BLOCK, axis=1)[:h, :w][y0:y1, x0:x1]
    if not still.any():
        return (x0, y0, x1, y1), _SOURCE, whole
    holed = rect.copy()
    holed[still] = hole
    over = _deflated(holed, methods)[0]
    if len(over) < len(whole):
        return (x0, y0, x1, y1), _OVER, over
    return (x0, y0, x1, y1), _SOURCE, whole
