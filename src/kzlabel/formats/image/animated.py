"""Animated images (GIF, WebP, APNG, AVIF sequences): the frames as a person sees them, and what binds a label to them.

Every frame is decoded composited, as a viewer shows it (disposal and blending applied), at the canvas size. mark
draws the warning on every frame, in the same corner (a sticker is seen from any frame, and a platform's poster
frame may be any of them), embeds the watermark in every frame (so one frame taken out of the animation still
carries it), and re-encodes with the source's timing, loop count and disposal.

The label binds the frames (``kz-animation-2``; ``kz-animation-1`` labels still verify): a SHA-256 over every
frame's body (the warning's box blanked) and its duration, and one cell grid per frame
(:func:`kzlabel.picture.pack_grids`: the frames' grids differenced against the previous frame, so a mostly still
animation costs little more than one picture). Verify compares each signed frame with the frame the file shows at the
same time (a re-encoder that merges two identical frames keeps the timeline), with the still picture's tolerances: a
benign re-encode of every frame is the same animation, an edit of
any one frame is a changed one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ...errors import KzlabelError, LimitExceeded
from ...label import Label
from ...layers import visible
from ...picture import GRID_CELLS, grid_dims, match_picture, pack_grids, picture_grid, unpack_grids
from .binding import PictureCheck, picture_body

__all__ = [
    "ANIMATION_ALG",
    "ANIMATION_ALGS",
    "Animation",
    "animation_binding",
    "animation_matches",
    "detection_planes",
    "frame_cells",
    "frame_count",
    "read_animation",
    "warning_matches",
    "warning_record",
]

ANIMATION_ALG = "kz-animation-2"
# each binding's cell budget: (cells over all frames, the least a frame gets). kz-animation-1 shared one still's 4096
# cells, at least 256 a frame; kz-animation-2 halves both: on the test animations the grids were 2.7 kB of the label's
# 5.7 kB (twice in a file, in XMP and in the manifest), and at half (six 512×400 frames: 21×16 cells of 24 px, not
# 30×23 of 17 px) a 30×25-px patch on one frame re-encoded was still tampered, a re-encode of every frame compliant
# (1024 cells kept both too: docs/label-format.md#animation-binding)
CELL_BUDGETS = {"kz-animation-1": (GRID_CELLS, 256), ANIMATION_ALG: (GRID_CELLS // 2, 128)}
ANIMATION_ALGS = frozenset(CELL_BUDGETS)
# verify's watermark search: the first frame, then the mean of up to this many frames spread over the animation (the
# same mark is in every frame, the content differs, so averaging raises the mark over the picture)
DETECT_FRAMES = 16
# pattern_score of the re-drawn warning above which it counts as present on a frame (as for video's warning)
PRESENT_SCORE = 0.5
# a label claiming more than this many signed frames per frame of the file is not unpacked: frames were removed (a
# re-encoder merges identical neighbours, never this many)
MAX_MERGED = 16
# a signed timeline this far (ms) from the file's, in all, is a re-timed animation (GIF stores centiseconds)
TIMING_SLACK_MS = 10


@dataclass
class Animation:
    """An animation's frames (RGB or RGBA working copies, canvas size) and how it plays."""

    frames: list[Image.Image]
    durations: list[int]  # ms per frame
    loop: int | None = None  # 0: for ever; None: not recorded
    disposal: list[int] | None = None  # GIF / APNG disposal per frame
    blend: list[int] | None = None  # APNG blend op per frame
    colours: list[list[tuple[int, int, int]] | None] = field(default_factory=list)  # each frame's palette (≤ 256)

    def starts(self) -> list[int]:
        return [int(v) for v in np.cumsum([0, *self.durations[:-1]])]


def frame_count(im: Image.Image) -> int:
    return int(getattr(im, "n_frames", 1) or 1)


def read_animation(im: Image.Image, max_pixels: int, *, palettes: bool = False) -> Animation:
    """Every frame of ``im``, composited; the frames' pixels in all are held to ``max_pixels`` (LimitExceeded).
    ``palettes``: keep each frame's colours when it shows 256 or fewer (GIF output reuses them)."""
    n = frame_count(im)
    w, h = im.size
    if n * w * h > max_pixels:
        raise LimitExceeded(f"{n} frames of {w}×{h} are {n * w * h} pixels in all, over the {max_pixels}-pixel limit")
    frames, durations, disposal, blend, colours = [], [], [], [], []
    loop = im.info.get("loop")
    alpha = False
    for i in range(n):
        im.seek(i)
        im.load()
        frame = im.convert("RGBA")
        if np.asarray(frame.getchannel("A")).min() < 255:
            alpha = True
        frames.append(frame)
        durations.append(round(float(im.info.get("duration") or 0)))
        disposal.append(int(getattr(im, "disposal_method", im.info.get("disposal", 0)) or 0))
        blend.append(int(im.info.get("blend", 0) or 0))
        if palettes:
            found = frame.convert("RGB").getcolors(256)
            colours.append(sorted(_rgb(c) for _, c in found) if found else None)
    im.seek(0)
    if not alpha:
        frames = [f.convert("RGB") for f in frames]
    return Animation(frames, durations, None if loop is None else int(loop), disposal, blend, colours)


def _rgb(colour: Any) -> tuple[int, int, int]:
    return int(colour[0]), int(colour[1]), int(colour[2])


def _body_digest(bodies: Sequence[Image.Image], durations: Sequence[int]) -> str:
    h = hashlib.sha256()
    for body, duration in zip(bodies, durations, strict=True):
        h.update(f"{body.width}x{body.height}:{duration}:".encode())
        h.update(body.tobytes())
    return h.hexdigest()


def animation_binding(frames: Sequence[Image.Image], durations: Sequence[int], box: Sequence[float] | None) -> dict:
    """The signed label's binding to every frame (displayed orientation) outside the warning's ``box`` (fractions)."""
    bodies = [picture_body(f, box) for f in frames]
    return {
        "alg": ANIMATION_ALG,
        "sha256": _body_digest(bodies, durations),
        "frames": len(bodies),
        "durations": list(durations),
        **pack_grids([picture_grid(b, grid_dims(*b.size, frame_cells(len(bodies)))) for b in bodies]),
    }


def frame_cells(count: int, alg: str = ANIMATION_ALG) -> int:
    """The cell budget of each of ``count`` frames' grids in an ``alg`` binding (CELL_BUDGETS)."""
    total, least = CELL_BUDGETS[alg]
    return max(least, total // max(count, 1))


def _timeline(signed: Sequence[int], found: Sequence[int]) -> list[int] | None:
    """For each signed frame, the index of the file's frame shown at its middle (the last one: at its start); None
    when the timing changed. The last frame's duration is not compared: converters do not keep it (ffmpeg gave the
    test GIF's last frame 80 or 40 ms instead of 200)."""
    if len(signed) == len(found) and all(
        abs(a - b) <= TIMING_SLACK_MS for a, b in zip(signed[:-1], found[:-1], strict=True)
    ):
        return list(range(len(found)))
    if abs(sum(signed[:-1]) - sum(found[:-1])) > TIMING_SLACK_MS * max(len(signed), len(found)):
        return None
    ends = np.cumsum(found)
    starts = np.cumsum([0, *signed[:-1]])
    marks = [*(starts[:-1] + np.asarray(signed[:-1]) / 2), starts[-1] + 1]
    return [min(int(np.searchsorted(ends, m, side="right")), len(found) - 1) for m in marks]


def animation_matches(anim: Animation, binding: Mapping[str, Any] | None, box: Sequence[float] | None) -> PictureCheck:
    """How the animation compares with the frames the label was signed over, the warning's ``box`` left out."""
    alg = binding.get("alg") if binding is not None else None
    if binding is None or alg not in ANIMATION_ALGS:
        return PictureCheck(None, "")
    bodies = [picture_body(f, box) for f in anim.frames]
    if _body_digest(bodies, anim.durations) == binding.get("sha256"):
        return PictureCheck(True, f"all {len(bodies)} frames exactly as signed", True)
    if int(binding.get("frames") or 0) > MAX_MERGED * len(anim.frames):  # before unpacking what it claims
        return PictureCheck(False, f"frames removed since signing ({len(anim.frames)} now, {binding['frames']} signed)")
    try:
        durations = [int(v) for v in binding["durations"]]
        count = int(binding["frames"])
        if count != len(durations) or count < 1:
            raise ValueError("frame count and durations disagree")
        grids = unpack_grids(binding, count, frame_cells(count, str(alg)))
    except (KeyError, TypeError, ValueError):
        return PictureCheck(False, "the signed animation binding is malformed")
    order = _timeline(durations, anim.durations)
    if order is None:
        now, then = sum(anim.durations[:-1]), sum(durations[:-1])
        return PictureCheck(False, f"the timing changed since signing (last frame at {then} ms signed, {now} ms now)")
    if len(set(order)) < len(anim.frames):
        return PictureCheck(False, f"frames added since signing ({len(anim.frames)} now, {count} signed)")
    shares = []
    for i, (grid, j) in enumerate(zip(grids, order, strict=True)):
        found = match_picture(grid, bodies[j], box)
        if not found.same:
            return PictureCheck(False, f"frame {i + 1} of {count}: {found.detail}")
        shares.append(float(found.data.get("share", 0.0)))
    detail = (
        f"the same {count} frames, re-encoded or resized since signing (the largest change "
        f"{max(shares):.2f} of the tolerance, frame {shares.index(max(shares)) + 1})"
    )
    return PictureCheck(True, detail, False)


def warning_record(frames: Sequence[Image.Image], placement: visible.Placement) -> dict[str, Any]:
    """Where the warning went, as for a still (``box``, ``corner``, ``style``), and on how many ``frames``. No
    thumbnail: the plate is semi-opaque, so each frame's region differs and every frame, the first too, is checked
    against the warning drawn again; a still's 48-px thumbnail was 2.2 kB of hex in each of the label's two copies,
    a tenth of what the label and manifest add to an animation (docs/label-format.md#animation-binding)."""
    first = frames[0]
    record = placement.record(first.width, first.height)
    record["frames"] = len(frames)
    return record


def warning_matches(anim: Animation, record: Mapping[str, Any], label: Label) -> bool:
    """Is the recorded warning still on every frame? Each frame by its correlation with the warning drawn again
    (PRESENT_SCORE); a label written before 2026-12-06 also carries the first frame's thumbnail, checked as a
    still's."""
    legacy = "thumb" in record
    if legacy and not visible.region_matches(anim.frames[0], record):
        return False
    try:
        width, height = (int(v) for v in record["size"])
        fx, fy, fw, fh = (float(v) for v in record["box"])
        plate, _ = visible.render(label, width, height, corner=record["corner"], style=record["style"])
    except (KeyError, TypeError, ValueError, KzlabelError):
        return False
    for frame in anim.frames[1:] if legacy else anim.frames:
        w, h = frame.size
        box = (round(fx * w), round(fy * h), round((fx + fw) * w), round((fy + fh) * h))
        if visible.pattern_score(np.asarray(frame.convert("L").crop(box)), plate) < PRESENT_SCORE:
            return False
    return True


def detection_planes(anim: Animation) -> list[np.ndarray]:
    """What verify searches for the watermark, in order: the first frame, then the mean of up to DETECT_FRAMES
    frames."""
    first = np.asarray(anim.frames[0].convert("RGB"))
    if len(anim.frames) == 1:
        return [first]
    picks = np.unique(np.linspace(0, len(anim.frames) - 1, min(DETECT_FRAMES, len(anim.frames))).round().astype(int))
    mean = np.mean([np.asarray(anim.frames[i].convert("RGB"), np.float32) for i in picks], axis=0)
    return [first, np.clip(mean + 0.5, 0, 255).astype(np.uint8)]
