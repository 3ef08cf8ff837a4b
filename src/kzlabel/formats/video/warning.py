"""The burned-in warning: a full-size plate over the opening seconds, then a small persistent label, drawn in the
frames' stored orientation and checked again by sampling frames."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from typing import Any

import numpy as np
from PIL import Image

from ...errors import KzlabelError
from ...io import Input
from ...label import IPTC_COMPOSITE, IPTC_TRAINED, Label
from ...layers import visible
from ..base import LabelMatch, MarkOptions
from .codec import FrameOp, VideoInfo, chroma_planes, sample_frames
from .soundtrack import split_position

# the burned-in warning ------------------------------------------------------------------------------------------
OPENING_S = 2.0  # the full-size warning covers the opening seconds (≥ 2 s), then the small persistent label takes over
PERSISTENT_FRACTION = 0.03  # persistent label: one line of short forms, text 3% of the shorter side
PRESENT_SCORE = 0.5  # pattern_score above which the recorded warning counts as still there
FOUND_SCORE = 0.6  # without a label: the built-in warning's match needed to say a warning is shown
MATCH_SIDE = 360  # frames are matched at most this size (shorter side)
LAYOUT_SIDES = (240, 270, 360, 480, 540, 720, 1080)  # short sides the label-free search also lays it out at
_KINDS = (IPTC_TRAINED, IPTC_COMPOSITE)
_TO_DISPLAY = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}
_TO_STORED = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}
# BT.601 limited range, the matrix swscale uses for yuv420p
_RGB_TO_YUV = np.array([[0.257, 0.504, 0.098], [-0.148, -0.291, 0.439], [0.439, -0.368, -0.071]], dtype=np.float32).T
_YUV_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float32)


def displayed(rgb: np.ndarray, rotation: int) -> Image.Image:
    """A decoded frame (stored orientation) as viewers see it."""
    shown = Image.fromarray(rgb)
    return shown.transpose(_TO_DISPLAY[rotation]) if rotation in _TO_DISPLAY else shown


def _display_size(info: VideoInfo) -> tuple[int, int]:
    return (info.height, info.width) if info.rotation in (90, 270) else (info.width, info.height)


def _part_settings(part: str) -> dict[str, Any]:
    return (
        {"fraction": visible.MIN_TEXT_FRACTION, "compact": False}
        if part == "opening"
        else {"fraction": PERSISTENT_FRACTION, "compact": True}
    )


@dataclass
class _Overlay:
    """A rendered warning converted once to I420 planes plus alpha, at an even offset in the stored frame."""

    x: int
    y: int
    luma: np.ndarray
    alpha: np.ndarray
    chroma: np.ndarray  # (2, h/2, w/2): U and V
    alpha2: np.ndarray

    @classmethod
    def build(cls, plate: Image.Image, place: visible.Placement, info: VideoInfo) -> _Overlay:
        canvas = Image.new("RGBA", _display_size(info), (0, 0, 0, 0))
        canvas.paste(plate, place.box[:2])
        if info.rotation in _TO_STORED:  # frames are stored unrotated: draw upright as displayed, then turn back
            canvas = canvas.transpose(_TO_STORED[info.rotation])
        x0, y0, x1, y1 = canvas.getchannel("A").getbbox() or (0, 0, 2, 2)
        x0, y0 = x0 - x0 % 2, y0 - y0 % 2
        x1, y1 = min(x1 + x1 % 2, info.width - info.width % 2), min(y1 + y1 % 2, info.height - info.height % 2)
        rgba = np.asarray(canvas.crop((x0, y0, x1, y1)), dtype=np.float32)
        alpha = rgba[..., 3] / 255.0
        yuv = rgba[..., :3] @ _RGB_TO_YUV + _YUV_OFFSET
        h2, w2 = alpha.shape[0] // 2, alpha.shape[1] // 2
        alpha2 = alpha.reshape(h2, 2, w2, 2).mean(axis=(1, 3))
        weighted = (yuv[..., 1:] * alpha[..., None]).reshape(h2, 2, w2, 2, 2).sum(axis=(1, 3)) / 4.0
        chroma = np.moveaxis(weighted / np.maximum(alpha2, 1e-6)[..., None], -1, 0)
        return cls(x0, y0, yuv[..., 0], alpha, chroma, alpha2)

    def apply(self, yuv: np.ndarray, width: int, height: int) -> None:
        h, w = self.luma.shape
        y = yuv[self.y : self.y + h, self.x : self.x + w]
        y[...] = np.rint(y + self.alpha * (self.luma - y))
        if width % 2 or height % 2:
            return  # odd frame sizes have no simple I420 plane layout here: the warning is drawn in luma only
        for i, plane in enumerate(chroma_planes(yuv, width, height)):  # views: writes land in yuv
            c = plane[self.y // 2 : self.y // 2 + h // 2, self.x // 2 : self.x // 2 + w // 2]
            c[...] = np.rint(c + self.alpha2 * (self.chroma[i] - c))


def warning_op(label: Label, info: VideoInfo, opts: MarkOptions) -> tuple[FrameOp, dict[str, Any]]:
    """The frame operation that burns in the warning, and the record of it for the label."""
    dw, dh = _display_size(info)
    corner, _ = split_position(opts.position)
    parts = ("opening", "persistent") if opts.video_warning == "both" else (opts.video_warning,)
    overlays: dict[str, _Overlay] = {}
    record: dict[str, Any] = {"kind": "burned-in", "mode": opts.video_warning, "opening_s": OPENING_S, "parts": {}}
    for part in parts:
        plate, place = visible.render(label, dw, dh, corner=corner, style=opts.style, **_part_settings(part))
        overlays[part] = _Overlay.build(plate, place, info)
        entry = place.record(dw, dh)
        record["parts"][part] = entry
    opening, persistent = overlays.get("opening"), overlays.get("persistent")

    def op(yuv: np.ndarray, t: float, index: int) -> None:
        overlay = opening if opening is not None and t < OPENING_S else persistent
        if overlay is not None:
            overlay.apply(yuv, info.width, info.height)

    return op, record


def _when(record: Mapping[str, Any], info: VideoInfo) -> list[tuple[float, str]]:
    """(time, part) of the frames each recorded part of the warning shows in, sorted."""
    parts = record["parts"]
    opening_s = float(record.get("opening_s", OPENING_S))
    end = max(info.duration - 0.05, 0.0)
    when = {"opening": min(opening_s / 2, end)}
    if "persistent" in parts:
        when["persistent"] = min(opening_s + 0.5, end) if "opening" in parts else min(info.duration / 2, end)
        if "opening" in parts and info.duration <= opening_s:
            del when["persistent"]  # the clip ends before the persistent label begins
    return sorted((t, part) for part, t in when.items() if part in parts)


def _shown(inp: Input, info: VideoInfo, times: list[float]) -> list[np.ndarray]:
    """The frames at ``times`` as viewers see them (rotation applied), grey, shrunk to at most MATCH_SIDE px on the
    shorter side: the warning's text is ≥ 18 px high there, plenty to match, and a 1080p frame costs no more."""
    out = []
    for _, rgb in sample_frames(inp, times):
        shown = displayed(rgb, info.rotation).convert("L")
        f = MATCH_SIDE / min(shown.size)
        if f < 1:
            shown = shown.resize(
                (max(round(shown.width * f), 1), max(round(shown.height * f), 1)), Image.Resampling.BOX
            )
        out.append(np.asarray(shown))
    return out


def _expected_box(fractions: Any, grey: np.ndarray) -> tuple[int, int, int, int]:
    fx, fy, fw, fh = (float(v) for v in fractions)
    h, w = grey.shape
    return round(fx * w), round(fy * h), max(round(fw * w), 1), max(round(fh * h), 1)


def check_warning(inp: Input, info: VideoInfo, label: Label) -> LabelMatch:
    """Re-render each recorded part of the warning at the size it was drawn, and look for it where the record puts
    it in a frame where it shows, scaled to the frame as it is now (a re-encode at another size keeps the record's
    fractions of the displayed picture)."""
    record = label.warning or {}
    if record.get("kind") != "burned-in" or not isinstance(record.get("parts"), dict):
        return LabelMatch(None, None, "no burned-in warning recorded")
    wanted = _when(record, info)
    scores: dict[str, float] = {}
    for (_, part), grey in zip(wanted, _shown(inp, info, [t for t, _ in wanted]), strict=False):
        entry = record["parts"][part]
        try:
            size = [int(v) for v in entry["size"]]
            plate, _ = visible.render(
                label, size[0], size[1], corner=entry["corner"], style=entry["style"], **_part_settings(part)
            )
            box = _expected_box(entry["box"], grey)
        except (KeyError, TypeError, ValueError, KzlabelError):
            return LabelMatch(None, False, f"the {part} warning record is unreadable")
        scores[part], _ = visible.locate(grey, plate, box)
    if not scores:
        return LabelMatch(None, None, "no frame to check the warning in")
    missing = [p for p, s in scores.items() if s < PRESENT_SCORE]
    detail = ", ".join(
        f"{p} warning {'missing' if p in missing else 'present'} (match {s:.2f})" for p, s in scores.items()
    )
    return LabelMatch(None, not missing, detail)


@lru_cache(maxsize=128)
def _default_plate(kind: str, part: str, style: str, width: int, height: int) -> tuple[np.ndarray, tuple[int, int]]:
    """kzlabel's warning with the built-in notices as drawn on a ``width``×``height`` picture (the same plate in
    every corner), as its opaque luma, and its size."""
    label = Label(owner="kzlabel", system="kzlabel", source_type=kind)
    corner = "top-right" if style == "icon" else "bottom-left"
    plate = visible.render(label, width, height, corner=corner, style=style, **_part_settings(part))[0]
    return visible.opaque_luma(plate), plate.size


def _layouts(part: str, width: int, height: int) -> Iterator[tuple[np.ndarray, str, tuple[float, ...]]]:
    """Each distinct built-in warning a ``width``×``height`` picture may show as ``part``: (plate, corner, box as
    fractions of the picture), laid out at this size and at the common sizes of this aspect it may have been
    rescaled from (the layout rounds text sizes and picks short forms or wraps by the room in pixels, so a 480×270
    clip was laid out unlike a 426×240 one); layouts seen already are skipped."""
    short = min(width, height)
    sizes = [(width, height)] + [(round(width * s / short), round(height * s / short)) for s in LAYOUT_SIDES]
    seen: set[tuple[str, str, tuple[int, ...]]] = set()
    for kind, style, (w, h) in product(_KINDS, ("plate", "icon"), sizes):
        if min(w, h) < visible.MIN_SIDE:
            continue
        plate, (pw, ph) = _default_plate(kind, part, style, w, h)
        for corner in ("top-right",) if style == "icon" else visible.CORNERS:
            x, y = visible.corner_origin(corner, w, h, pw, ph)
            box = (x / w, y / h, pw / w, ph / h)
            tag = (kind, corner, tuple(round(v * 200) for v in box))  # within half a percent: the same layout
            if tag not in seen:
                seen.add(tag)
                yield plate, corner, box


def find_warning(inp: Input, info: VideoInfo) -> tuple[bool | None, str]:
    """Look for kzlabel's burned-in warning without a label (the tags are gone after most re-encodes): the built-in
    notices, as generated or as modified content, in any corner, plate or icon style, as the opening warning and as
    the persistent label, laid out at this size or at a common size of the same aspect, then located near its place.

    (True, where and how well it matched) when a match reaches :data:`FOUND_SCORE`; otherwise (None, why): without
    the label, custom notices or a warning drawn by someone else cannot be told from no warning at all.
    """
    end = max(info.duration - 0.05, 0.0)
    times = sorted({min(OPENING_S / 2, end), min(OPENING_S + 0.5, end)})
    best = 0.0
    for t, grey in zip(times, _shown(inp, info, times), strict=False):
        h, w = grey.shape
        for part in ("opening", "persistent") if t < OPENING_S else ("persistent",):
            for plate, corner, box in _layouts(part, w, h):
                score, _ = visible.locate(grey, plate, _expected_box(box, grey))
                best = max(best, score)
                if score >= FOUND_SCORE:
                    return True, f"kzlabel's built-in {part} warning, {corner}, match {score:.2f} at {t:.1f} s"
    return None, f"no built-in kzlabel warning recognised (best match {best:.2f})"
