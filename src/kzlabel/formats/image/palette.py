"""Marked animation frames back onto a palette: GIF's per-frame colour tables and a paletted APNG's one ``PLTE``.

A palette source keeps its colours: each marked frame is mapped onto the source's colours plus up to
WARNING_COLOURS for the warning's plate and text (when the source leaves at least MIN_ROOM entries free; otherwise an
adaptive palette, dithered). The mapping is nearest-colour when the first frame's mark reads back through it (dithered
sources, the usual case); Floyd-Steinberg dithering only when that is what keeps the mark (dithering costs size); a
flat picture that keeps it neither way is written from its unmarked frames (the mark would only add noise, and mark's
read-back then reports the layer skipped). Transparent pixels take index CLEAR.

When the source's frames show 256 colours or fewer in all (one palette: what converters write), every frame goes onto
one table (:func:`one_palette`), and a pixel whose marked colour did not change since the previous frame keeps the
previous frame's index (:func:`on_one_palette`), so the encoder's "unchanged" test holds wherever the picture did
not change: a table per frame (the warning's colours quantised on each frame), or a full palette's adaptive
re-quantising of every frame, changed indices all over the frame, and a cinemagraph GIF was stored whole on every
frame (1.36x its source; docs/images.md#animated-images).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "CLEAR",
    "MIN_ROOM",
    "WARNING_COLOURS",
    "WARNING_ROOM",
    "keeping_the_mark",
    "on_one_palette",
    "on_palette",
    "one_palette",
    "warning_colours",
]

CLEAR = 255  # the palette index of transparent pixels in a transparent animation
WARNING_COLOURS = 32  # palette entries added for the warning's plate and text, when the source leaves room
MIN_ROOM = 8  # fewer free entries than this: the frame gets an adaptive palette instead
# palette entries a full one-table palette gives up for the warning's plate and text (its least-used colours)
WARNING_ROOM = 16

Colour = tuple[int, int, int]


def warning_colours(frame: Image.Image, box: tuple[int, int, int, int], room: int) -> list[Colour]:
    """Up to ``room`` (at most WARNING_COLOURS) colours for the warning's region ``box`` (x, y, w, h) of ``frame``."""
    x, y, w, h = box
    region = frame.convert("RGB").crop((x, y, x + w, y + h)).quantize(min(WARNING_COLOURS, room))
    flat = region.getpalette() or []
    return [(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, 3 * len(region.getcolors() or []), 3)]


def on_palette(
    frame: Image.Image,
    colours: Sequence[Colour] | None,
    clear: bool,
    box: tuple[int, int, int, int] | None,
    dither: Image.Dither,
) -> Image.Image:
    """``frame`` on ``colours`` plus the warning's colours (``box``: its region; None: ``colours`` has them), or on
    an adaptive palette (dithered) when ``colours`` leaves no room; index CLEAR transparent when ``clear``."""
    rgb = frame.convert("RGB")
    room = (255 if clear else 256) - len(colours or [])
    if colours and room >= (MIN_ROOM if box else 0):
        table = list(colours) + (warning_colours(rgb, box, room) if box is not None else [])
        pal = Image.new("P", (1, 1))
        flat = [v for c in table for v in c]
        pal.putpalette(flat + flat[-3:] * (256 - len(table)))  # padding repeats the last colour
        p = rgb.quantize(palette=pal, dither=dither)
        last = len(table) - 1
    else:
        p = rgb.quantize(255 if clear else 256, dither=Image.Dither.FLOYDSTEINBERG)
        last = -1
    if not clear:
        return p
    idx = np.array(p)
    if last >= 0:
        idx[idx > last] = last  # a padding entry is the last colour again
    idx[np.asarray(frame.getchannel("A")) < 128] = CLEAR
    out = Image.fromarray(idx, "P")
    palette = (p.getpalette() or [])[: 3 * CLEAR]
    out.putpalette(palette + [0] * (768 - len(palette)))
    return out


def keeping_the_mark(
    frames: list[Image.Image],
    info: dict[str, Any],
    first: Callable[[Image.Image, Image.Dither], Image.Image],
) -> tuple[list[Image.Image], Image.Dither]:
    """The frames to put on the palette (the marked ones, or the unmarked ones when the palette keeps no mark) and
    the dithering that keeps the mark; ``first(frame, dither)``: a frame on the palette. ``info``: the document's
    (``watermark``: the payload and key embedded; ``unmarked``: the frames before)."""
    mark = info.get("watermark")
    if mark is None:
        return frames, Image.Dither.NONE
    from ...watermark import detect_image  # heavy (cv2): loaded only when a mark is to be kept

    def keeps(how: Image.Dither) -> bool:
        found = detect_image(np.asarray(first(frames[0], how).convert("RGB")), key=mark[1])
        return bool(found.payload == mark[0])

    if keeps(Image.Dither.NONE):
        return frames, Image.Dither.NONE
    if keeps(Image.Dither.FLOYDSTEINBERG):
        return frames, Image.Dither.FLOYDSTEINBERG
    return info.get("unmarked", frames), Image.Dither.NONE


def one_palette(
    colours: Sequence[Sequence[Colour] | None],
    frames: Sequence[Image.Image],
    box: tuple[int, int, int, int] | None,
) -> list[Colour] | None:
    """One table of at most 255 colours for every frame: the colours the source's frames showed (``colours``, per
    frame) plus up to WARNING_COLOURS for the warning (its region ``box`` on every frame: the plate is semi-opaque, so
    its colours differ from frame to frame); a full palette gives up its least-used colours for WARNING_ROOM of them.
    Index 255 stays free: the transparent index (CLEAR), or the one the writers fill still pixels with (Pillow's GIF
    writer finds no free index in a full palette and stored a dithered cinemagraph's moving rectangle whole: 1.0x
    its source against 0.92x for one adaptive palette a frame). None when a frame showed more than 256 colours or the
    frames more than 256 in all."""
    if not colours or any(c is None for c in colours):
        return None
    table = sorted({colour for found in colours for colour in found or ()})
    if len(table) > 256:
        return None
    room = CLEAR - len(table)
    if box is None:
        return table if room >= 0 else _most_used(table, frames, CLEAR)
    if room < WARNING_ROOM:
        table = _most_used(table, frames, CLEAR - WARNING_ROOM)
        room = WARNING_ROOM
    x, y, w, h = box
    strip = Image.new("RGB", (w, h * len(frames)))
    for i, frame in enumerate(frames):
        strip.paste(frame.convert("RGB").crop((x, y, x + w, y + h)), (0, i * h))
    return table + warning_colours(strip, (0, 0, w, h * len(frames)), room)


def _most_used(table: list[Colour], frames: Sequence[Image.Image], keep: int) -> list[Colour]:
    """The ``keep`` colours of ``table`` that the most pixels of ``frames`` are nearest to."""
    pal = Image.new("P", (1, 1))
    flat = [v for c in table for v in c]
    pal.putpalette(flat + flat[-3:] * (256 - len(table)))
    counts = np.zeros(256, np.int64)
    for frame in frames:
        counts += np.bincount(np.asarray(frame.convert("RGB").quantize(palette=pal)).ravel(), minlength=256)
    return [table[i] for i in sorted(np.argsort(-counts[: len(table)], kind="stable")[:keep])]


def on_one_palette(
    frames: Sequence[Image.Image], table: Sequence[Colour], clear: bool, dither: Image.Dither
) -> list[Image.Image]:
    """Every frame on the one ``table``; a pixel whose colour (and alpha) equals the previous frame's keeps that
    frame's index, so dithering's error spreading from what moved leaves the still pixels as they were."""
    out: list[Image.Image] = []
    before: np.ndarray | None = None
    for frame in frames:
        p = on_palette(frame, table, clear, None, dither)
        now = np.asarray(frame)
        if before is not None and out and before.shape == now.shape and dither != Image.Dither.NONE:
            same = (before == now).reshape(now.shape[0], now.shape[1], -1).all(axis=2)
            idx = np.array(p)
            idx[same] = np.asarray(out[-1])[same]
            kept = Image.fromarray(idx, "P")
            kept.putpalette(p.getpalette() or [])
            p = kept
        out.append(p)
        before = now
    return out
