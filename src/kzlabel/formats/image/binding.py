"""The content binding of an image label: the picture's body (the drawn warning's box blanked, as a text's body is
the text without its notice) bound exactly and perceptually.

``kz-picture-2`` (written now): ``sha256`` of the body's 8-bit RGB pixels, and the body's cell grid
(:mod:`kzlabel.picture`: ``size``, ``grid``, ``cells``), compared cell by cell with a tight tolerance when the picture
has the signed size and block by block when it was resized.

``kz-picture-1`` (labels written before): ``sha256`` and a 16×16 RGB thumbnail, checked as it always was: the
thumbnail cannot tell local damage from a re-encode, so such labels keep that limit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from ...picture import PictureGrid, match_picture, picture_grid

__all__ = ["BINDING_ALG", "LEGACY_ALG", "PictureCheck", "picture_binding", "picture_body", "picture_matches"]

BINDING_ALG = "kz-picture-2"
LEGACY_ALG = "kz-picture-1"
# kz-picture-1: a 16×16 colour thumbnail (BOX filter, 768 bytes hex); a cell off by more than 24 levels, or the mean
# by more than 4, is a changed picture
_THUMB = 16
THUMB_MAX_DIFF = 24
THUMB_MEAN_DIFF = 4.0


def picture_body(image: Image.Image, box: Sequence[float] | None) -> Image.Image:
    """The picture without the drawn warning (its box blanked), as text bindings have a body without the notice:
    covering the warning then reads as the warning gone, not as the picture changed."""
    body = image.convert("RGB")
    if box:
        fx, fy, fw, fh = box
        w, h = body.size
        body = body.copy()
        body.paste((0, 0, 0), (int(fx * w) - 1, int(fy * h) - 1, int((fx + fw) * w) + 2, int((fy + fh) * h) + 2))
    return body


def _digest(body: Image.Image) -> str:
    return hashlib.sha256(f"{body.width}x{body.height}:".encode() + body.tobytes()).hexdigest()


class PictureCheck(NamedTuple):
    """same: True (the signed picture, exactly or re-encoded/resized), False (changed), None (no binding or nothing to
    compare); detail: a phrase for the evidence line; exact: True when the pixels are exactly as signed, False when the
    picture matched only within the perceptual tolerance (LabelMatch.exact)."""

    same: bool | None
    detail: str
    exact: bool | None = None


def picture_binding(image: Image.Image, box: Sequence[float] | None = None) -> dict[str, Any]:
    """The signed label's binding to a picture (displayed orientation) outside the warning's ``box`` (fractions)."""
    body = picture_body(image, box)
    return {"alg": BINDING_ALG, "sha256": _digest(body), **picture_grid(body).pack()}


def picture_matches(
    image: Image.Image | None, binding: Mapping[str, Any] | None, box: Sequence[float] | None = None
) -> PictureCheck:
    """How ``image`` (displayed orientation) compares with the picture the label was signed over, the warning's
    ``box`` (fractions) left out."""
    alg = binding.get("alg") if binding else None
    if image is None or binding is None or alg not in (BINDING_ALG, LEGACY_ALG):
        return PictureCheck(None, "")
    body = picture_body(image, box)
    if _digest(body) == binding.get("sha256"):
        return PictureCheck(True, "pixels exactly as signed", True)
    if alg == LEGACY_ALG:
        return _thumbnail_matches(body, binding)
    try:
        signed = PictureGrid.unpack(binding)
    except ValueError:
        return PictureCheck(False, "the signed picture binding is malformed")
    found = match_picture(signed, body, box)
    return PictureCheck(found.same, found.detail, False)


def _thumbnail_matches(body: Image.Image, binding: Mapping[str, Any]) -> PictureCheck:
    try:
        expected = np.frombuffer(bytes.fromhex(str(binding["thumb"])), dtype=np.uint8).astype(np.int16)
    except (KeyError, ValueError):
        return PictureCheck(False, "the signed picture binding is malformed")
    thumb = np.asarray(body.resize((_THUMB, _THUMB), Image.Resampling.BOX), dtype=np.int16).reshape(-1)
    diff = np.abs(thumb - expected) if expected.size == thumb.size else None
    if diff is not None and int(diff.max()) <= THUMB_MAX_DIFF and float(diff.mean()) <= THUMB_MEAN_DIFF:
        detail = f"re-encoded or resized since signing, the same picture (thumbnail within {int(diff.max())})"
        return PictureCheck(True, detail, False)
    return PictureCheck(False, "the picture changed since signing")
