"""The perceptible warning for pixels (images and video frames): one renderer, so both look and verify the same.

GB 45438 asks that a visible AI label's text be at least 5% of the shorter side; the warning is drawn on a
semi-opaque plate (or outlined, with colours chosen from the local contrast) so it is legible on any background,
with a font shipped in kzlabel (DejaVu Sans Bold) that covers every Kazakh letter. When the full sentences do not fit
at that height, short forms are used ("ЖИ жасаған / Создано ИИ / AI-generated"), then word wrapping.

Verification keeps a fingerprint of the drawn region (a small grey thumbnail) in the label; ``region_matches``
compares the same region of the content later, tolerant of re-encoding and resizing (a region resized under 144 px
wide by its layout at 16 px) but not of the warning being painted over, faded or cropped away. Where the background
changes (video), ``pattern_score`` correlates the region with the rendered warning, and ``locate`` finds the best
such match near where it is expected, at a few scales.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, get_args

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import CapacityError, KzlabelError
from ..label import IPTC_COMPOSITE, Label
from . import Style

__all__ = [
    "CORNERS",
    "FONT_PATH",
    "STYLES",
    "Placement",
    "corner_origin",
    "draw",
    "fingerprint",
    "locate",
    "opaque_luma",
    "pattern_score",
    "region_matches",
    "render",
]

FONT_PATH = Path(__file__).resolve().parent.parent / "assets" / "DejaVuSans-Bold.ttf"
CORNERS = ("bottom-left", "bottom-right", "top-left", "top-right")
STYLES: tuple[Style, ...] = get_args(Style)
MIN_TEXT_FRACTION = 0.05  # text height ≥ 5% of the shorter side (GB 45438)
MIN_SIDE = 16
WARNING_SIGN = "⚠"
_THUMB_W = 48
_THUMB_MAX = _THUMB_W * 24  # its bytes: 4-24 rows (_thumb)
# A region resized to under three times the thumbnail's width no longer lines up with it pixel for pixel (a 118-px
# warning at half size differed by 15-26 levels on the bundled samples, a 135-px one at 0.75 by 16): it is then
# compared at LAYOUT_W pixels wide. Measured on 33 marked pictures (photos, posters, screenshots, the samples)
# downscaled to 0.4-0.75 with Lanczos, bicubic or bilinear filters and saved as JPEG q75, the 213 whose region fell
# under 144 px: correlation ≥ 0.835, contrast ratio 0.82-1.21, mean within 6.1 levels; the warning half painted over:
# correlation ≤ 0.681 where its contrast stayed in range; painted over entirely: no contrast; faded to 40 %: contrast
# ≤ 0.46. Wider regions keep the thumbnail comparison (at 192 px a half-covered warning reached 0.777).
LAYOUT_BELOW_PX = 3 * _THUMB_W
LAYOUT_W = 16
LAYOUT_CORRELATION = 0.75
LAYOUT_CONTRAST = (0.7, 1.4)
_SHORT = {
    "generated": {"kk": "ЖИ жасаған", "ru": "Создано ИИ", "en": "AI-generated"},
    "modified": {"kk": "ЖИ өзгерткен", "ru": "Изменено ИИ", "en": "AI-modified"},
}


@dataclass(frozen=True)
class Placement:
    """Where the warning went, in displayed-image pixels, plus how it was drawn."""

    box: tuple[int, int, int, int]  # x, y, width, height
    corner: str
    style: str
    text_height: int

    def record(self, width: int, height: int) -> dict[str, Any]:
        """Where it went, for the label (a still adds its :func:`fingerprint`; video and animations record none)."""
        x, y, w, h = self.box
        return {
            "kind": "overlay",
            "style": self.style,
            "corner": self.corner,
            "box": [round(x / width, 5), round(y / height, 5), round(w / width, 5), round(h / height, 5)],
            "text_height_px": self.text_height,
            "size": [width, height],
        }


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(str(FONT_PATH), size)
    except OSError:
        raise KzlabelError(f"kzlabel's font is missing: {FONT_PATH}") from None


def _lines(label: Label, short: bool, compact: bool = False) -> list[str]:
    kind = "modified" if label.source_type == IPTC_COMPOSITE else "generated"
    texts = [(_SHORT[kind].get(lang, text) if short else text) for lang, text in label.notices]
    if compact:  # one line, e.g. a persistent corner label on video
        return [f"{WARNING_SIGN} " + " · ".join(texts)]
    return [f"{WARNING_SIGN} {texts[0]}"] + texts[1:]


def _wrap(lines: list[str], font: ImageFont.FreeTypeFont, max_w: float) -> list[str] | None:
    out: list[str] = []
    for line in lines:
        current = ""
        for word in line.split(" "):
            trial = f"{current} {word}".strip()
            if font.getlength(trial) <= max_w:
                current = trial
            elif not current:
                return None  # a single word wider than the room
            else:
                out.append(current)
                current = word
        out.append(current)
    return out


def _layout(
    label: Label, width: int, height: int, style: str, fraction: float, compact: bool
) -> tuple[list[str], ImageFont.FreeTypeFont, int]:
    side = min(width, height)
    if side < MIN_SIDE:
        raise CapacityError(f"{width}×{height} is too small for a legible warning (min {MIN_SIDE} px)")
    text_h = max(int(np.ceil(side * fraction)), 6)
    if style == "icon":
        return ["AI"], _font(text_h * 2), text_h * 2
    room = width * 0.94 - text_h
    font = _font(text_h)
    for short in (True,) if compact else (False, True):
        lines = _lines(label, short, compact)
        if max(font.getlength(line) for line in lines) <= room:
            return lines, font, text_h
    wrapped = _wrap(_lines(label, True), font, room)
    if wrapped is None or len(wrapped) * text_h * 1.3 > height * 0.9:
        # the rule's minimum height cannot fit: fall back to the EU "AI" icon, which always fits
        return ["AI"], _font(max(text_h * 2, 8)), max(text_h * 2, 8)
    return wrapped, font, text_h


def corner_origin(corner: str, width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """Top-left of a ``box_w``×``box_h`` warning in ``corner`` of a ``width``×``height`` picture (a small margin)."""
    margin = max(1, min(width, height) // 50)
    x = margin if "left" in corner else width - margin - box_w
    y = margin if "top" in corner else height - margin - box_h
    return x, y


def render(
    label: Label,
    width: int,
    height: int,
    *,
    corner: str = "bottom-left",
    style: str = "plate",
    background: np.ndarray | None = None,
    fraction: float = MIN_TEXT_FRACTION,
    compact: bool = False,
) -> tuple[Image.Image, Placement]:
    """The warning as an RGBA image the size of its box, and where it goes in a ``width``×``height`` picture.

    ``fraction`` is the text height over the shorter side; ``compact`` puts the short forms on one line (the smaller
    persistent label that follows a video's full-size opening warning).
    """
    if corner not in CORNERS:
        raise KzlabelError(f"unknown corner {corner!r}; one of {', '.join(CORNERS)}")
    if style not in STYLES:
        raise KzlabelError(f"unknown warning style {style!r}; one of {', '.join(STYLES)}")
    lines, font, text_h = _layout(label, width, height, style, fraction, compact)
    icon = lines == ["AI"]
    if icon:
        corner = "top-right"
    ascent, descent = font.getmetrics()
    lead = int((ascent + descent) * 1.08)
    pad = max(2, text_h // 3)
    text_w = int(max(font.getlength(line) for line in lines))
    box_w = min(width, text_w + 2 * pad)
    box_h = min(height, lead * len(lines) + 2 * pad)
    x, y = corner_origin(corner, width, height, box_w, box_h)
    plate = Image.new("RGBA", (box_w, box_h), (0, 0, 0, 0))
    d = ImageDraw.Draw(plate)
    light = True
    if style == "outline" and not icon and background is not None:
        region = background[y : y + box_h, x : x + box_w]
        light = float(region.mean()) < 140 if region.size else True
    if style == "plate" or icon:
        d.rounded_rectangle(
            [0, 0, box_w - 1, box_h - 1],
            radius=max(2, pad),
            fill=(20, 20, 20, 190),
            outline=(255, 196, 0, 255),
            width=max(1, text_h // 12),
        )
        fill, stroke = (255, 255, 255, 255), None
    else:
        fill = (255, 255, 255, 255) if light else (0, 0, 0, 255)
        stroke = (0, 0, 0, 255) if light else (255, 255, 255, 255)
    for i, line in enumerate(lines):
        d.text(
            (pad, pad + i * lead),
            line,
            font=font,
            fill=fill,
            stroke_width=max(1, text_h // 10) if stroke else 0,
            stroke_fill=stroke,
        )
    return plate, Placement((x, y, box_w, box_h), corner, "icon" if icon else style, text_h)


def draw(image: Image.Image, label: Label, *, corner: str = "bottom-left", style: str = "plate") -> Placement:
    """Composite the warning onto ``image`` (RGB or RGBA, displayed orientation) in place."""
    grey = np.asarray(image.convert("L")) if style == "outline" else None
    plate, place = render(label, image.width, image.height, corner=corner, style=style, background=grey)
    x, y, _, _ = place.box
    if image.mode == "RGBA":
        image.alpha_composite(plate, (x, y))
    else:
        image.paste(plate, (x, y), plate)
    return place


def fingerprint(image: Image.Image, box_fraction: list[float]) -> dict[str, str]:
    """A small grey thumbnail of the region, resolution-independent, as a still's warning record keeps it:
    ``thumb_z``, base64 of a zlib stream of its bytes. Labels written before 2026-12-06 hold ``thumb``, the bytes in
    hex: 2.2-2.3 kB of a still's payload against 1.2-1.3 kB now, in each of the label's copies."""
    return {"thumb_z": base64.b64encode(zlib.compress(_thumb(image, box_fraction).tobytes(), 9)).decode("ascii")}


def _recorded_thumb(record: Mapping[str, Any]) -> np.ndarray:
    """The thumbnail a warning record holds (either form); KeyError when it holds none, ValueError when the one it
    holds is malformed (both: the warning is not found)."""
    if "thumb_z" not in record:
        return np.frombuffer(bytes.fromhex(str(record["thumb"])), dtype=np.uint8)
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(base64.b64decode(str(record["thumb_z"]), validate=True), _THUMB_MAX + 1)
    except (binascii.Error, zlib.error) as exc:
        raise ValueError(f"malformed warning thumbnail: {exc}") from None
    if len(raw) > _THUMB_MAX or not inflate.eof:
        raise ValueError("malformed warning thumbnail")
    return np.frombuffer(raw, dtype=np.uint8)


def _crop(image: Image.Image, box_fraction: list[float]) -> Image.Image:
    fx, fy, fw, fh = box_fraction
    w, h = image.size
    return image.convert("L").crop((round(fx * w), round(fy * h), round((fx + fw) * w), round((fy + fh) * h)))


def _thumb(image: Image.Image, box_fraction: list[float], rows: int | None = None) -> np.ndarray:
    """The region's grey thumbnail, _THUMB_W wide and ``rows`` high (default: the region's aspect, 4-24 rows)."""
    fx, fy, fw, fh = box_fraction
    w, h = image.size
    th = rows or max(4, min(24, round(_THUMB_W * fh * h / max(fw * w, 1))))
    return np.asarray(_crop(image, box_fraction).resize((_THUMB_W, th), Image.Resampling.BOX), dtype=np.uint8)


def region_matches(image: Image.Image, record: Mapping[str, Any], tolerance: float = 14.0) -> bool:
    """Is the recorded warning still where it was drawn? Mean absolute thumbnail difference within ``tolerance``; in a
    picture resized until the region is under LAYOUT_BELOW_PX wide, failing that, its layout (``_layout_matches``)."""
    try:
        expected = _recorded_thumb(record)
        box = [float(v) for v in record["box"]]
        if not expected.size or expected.size % _THUMB_W:
            return False
        # as many rows as the recorded thumbnail: a resize that rounds the picture's sides moves the region's aspect
        got = _thumb(image, box, expected.size // _THUMB_W).reshape(-1)
    except (KeyError, ValueError, TypeError):
        return False
    if float(np.abs(got.astype(np.int16) - expected.astype(np.int16)).mean()) <= tolerance:
        return True
    if list(image.size) == list(record.get("size") or image.size):
        return False
    crop = _crop(image, box)
    return crop.width < LAYOUT_BELOW_PX and _layout_matches(expected.reshape(-1, _THUMB_W), crop)


def _layout_matches(expected: np.ndarray, crop: Image.Image, tolerance: float = 14.0) -> bool:
    """Does the region show the thumbnail's layout: the same light and dark places, as strong, as bright?"""
    height = max(2, round(expected.shape[0] * LAYOUT_W / _THUMB_W))
    want = np.asarray(Image.fromarray(expected).resize((LAYOUT_W, height), Image.Resampling.BOX), np.float32)
    got = np.asarray(crop.resize((LAYOUT_W, height), Image.Resampling.BOX), np.float32)
    if abs(float(want.mean() - got.mean())) > tolerance:
        return False
    want, got = want - want.mean(), got - got.mean()
    spread = float(np.sqrt((want * want).sum() * (got * got).sum()))
    if spread == 0:
        return False
    contrast = float(got.std() / want.std())
    return (
        float((want * got).sum()) / spread >= LAYOUT_CORRELATION
        and LAYOUT_CONTRAST[0] <= contrast <= LAYOUT_CONTRAST[1]
    )


def pattern_score(grey: np.ndarray, plate: Image.Image) -> float:
    """How strongly a grey region shows the rendered warning: correlation with the plate's opaque luma, in [-1, 1].

    A drawn warning is ``(1 - alpha) * background + alpha * plate``; where alpha is high (the plate and its text) the
    region follows the plate whatever the background, so the correlation stays high across frames, re-encoding and
    scaling, and drops to noise level once the warning is covered or cropped away. Used where no fixed fingerprint
    exists (video, whose background changes every frame).
    """
    if grey.size < 16:
        return 0.0
    h, w = grey.shape
    resized = np.asarray(plate.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    alpha = resized[..., 3] / 255.0
    expected = (resized[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)) * alpha
    got = grey.astype(np.float32)
    e, g = expected - expected.mean(), got - got.mean()
    denom = float(np.sqrt((e * e).sum() * (g * g).sum()))
    return float((e * g).sum() / denom) if denom > 0 else 0.0


def opaque_luma(plate: Image.Image) -> np.ndarray:
    """The rendered warning's luma × alpha (float32): what of it stays the same on any background. Compute it once
    for a plate matched many times (:func:`locate` takes it in the plate's place)."""
    rgba = np.asarray(plate.convert("RGBA"), dtype=np.float32)
    return (rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)) * (rgba[..., 3] / 255.0)


def locate(
    grey: np.ndarray,
    plate: Image.Image | np.ndarray,
    box: tuple[int, int, int, int],
    *,
    slack: float = 0.2,
    scales: tuple[float, ...] = (0.92, 1.0, 1.08),
) -> tuple[float, tuple[int, int, int, int]]:
    """The best :func:`pattern_score` of the rendered warning (or its :func:`opaque_luma`) near ``box`` (x, y, w,
    h in ``grey``'s pixels), and where: the plate is scaled to the box (× each of ``scales``) and slid over the box
    grown by ``slack`` of its size on every side (and 2 px), so a warning found a little off its expected place or
    size after the picture was rescaled, cropped by a few pixels or laid out again at another size still matches.
    (0.0, box) when the box is too small to tell.
    """
    import cv2

    x, y, w, h = box
    height, width = grey.shape
    gx, gy = round(w * slack) + 2, round(h * slack) + 2
    x0, y0 = max(0, x - gx), max(0, y - gy)
    x1, y1 = min(width, x + w + gx), min(height, y + h + gy)
    region = grey[y0:y1, x0:x1].astype(np.float32)
    luma = opaque_luma(plate) if isinstance(plate, Image.Image) else plate
    best: tuple[float, tuple[int, int, int, int]] = (0.0, box)
    for s in scales:
        tw, th = min(round(w * s), x1 - x0), min(round(h * s), y1 - y0)
        if tw * th < 16 or min(tw, th) < 3:
            continue
        template = cv2.resize(luma, (tw, th), interpolation=cv2.INTER_AREA)
        if float(template.std()) < 1e-3:
            continue
        scores = cv2.matchTemplate(region, template, cv2.TM_CCOEFF_NORMED)
        _, score, _, (px, py) = cv2.minMaxLoc(scores)
        if np.isfinite(score) and score > best[0]:
            best = (float(score), (x0 + px, y0 + py, tw, th))
    return best
