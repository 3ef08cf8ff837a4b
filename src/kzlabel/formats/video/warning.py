"""The burned-in warning: a full-size plate over the opening seconds, then a small persistent label, drawn in the
frames' stored orientation and checked again by sampling frames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ...errors import KzlabelError
from ...io import Input
from ...label import Label
from ...layers import visible
from ..base import LabelMatch, MarkOptions
from .codec import FrameOp, VideoInfo, sample_frames
from .soundtrack import split_position

# the burned-in warning ------------------------------------------------------------------------------------------
OPENING_S = 2.0  # the full-size warning covers the opening seconds (≥ 2 s), then the small persistent label takes over
PERSISTENT_FRACTION = 0.03  # persistent label: one line of short forms, text 3% of the shorter side
PRESENT_SCORE = 0.5  # pattern_score above which the warning counts as still there
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
        # U and V are packed row after row behind Y, not one plane row per array row: a 270-row frame's U plane
        # ends halfway through an array row, so the planes are cut from the flat buffer (a view: writes land in yuv)
        flat, n = yuv.reshape(-1), (height // 2) * (width // 2)
        for i, start in enumerate((height * width, height * width + n)):
            plane = flat[start : start + n].reshape(height // 2, width // 2)
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
        entry = place.record(dw, dh, "")
        entry.pop("thumb")
        record["parts"][part] = entry
    opening, persistent = overlays.get("opening"), overlays.get("persistent")

    def op(yuv: np.ndarray, t: float, index: int) -> None:
        overlay = opening if opening is not None and t < OPENING_S else persistent
        if overlay is not None:
            overlay.apply(yuv, info.width, info.height)

    return op, record


def check_warning(inp: Input, info: VideoInfo, label: Label) -> LabelMatch:
    """Re-render each recorded part of the warning and look for it where it was drawn, in a frame where it shows."""
    record = label.warning or {}
    if record.get("kind") != "burned-in" or not isinstance(record.get("parts"), dict):
        return LabelMatch(None, None, "no burned-in warning recorded")
    parts = record["parts"]
    opening_s = float(record.get("opening_s", OPENING_S))
    end = max(info.duration - 0.05, 0.0)
    when = {"opening": min(opening_s / 2, end)}
    if "persistent" in parts:
        when["persistent"] = min(opening_s + 0.5, end) if "opening" in parts else min(info.duration / 2, end)
        if "opening" in parts and info.duration <= opening_s:
            del when["persistent"]  # the clip ends before the persistent label begins
    wanted = sorted((t, part) for part, t in when.items() if part in parts)
    frames = list(sample_frames(inp, [t for t, _ in wanted]))
    scores: dict[str, float] = {}
    for (_, part), (_, rgb) in zip(wanted, frames, strict=False):
        shown = displayed(rgb, info.rotation)
        entry = parts[part]
        try:
            size = [int(v) for v in entry["size"]]
            fx, fy, fw, fh = (float(v) for v in entry["box"])
            plate, _ = visible.render(
                label, size[0], size[1], corner=entry["corner"], style=entry["style"], **_part_settings(part)
            )
        except (KeyError, TypeError, ValueError, KzlabelError):
            return LabelMatch(None, False, f"the {part} warning record is unreadable")
        w, h = shown.size
        box = (round(fx * w), round(fy * h), round((fx + fw) * w), round((fy + fh) * h))
        scores[part] = visible.pattern_score(np.asarray(shown.convert("L").crop(box)), plate)
    if not scores:
        return LabelMatch(None, None, "no frame to check the warning in")
    missing = [p for p, s in scores.items() if s < PRESENT_SCORE]
    detail = ", ".join(
        f"{p} warning {'missing' if p in missing else 'present'} (match {s:.2f})" for p, s in scores.items()
    )
    return LabelMatch(None, not missing, detail)
