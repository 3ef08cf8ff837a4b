"""The picture grid behind kz-picture-2 (kzlabel.picture): its size rules, its packed form, pictures of awkward sizes,
the region it leaves out, and which comparison a picture gets (same size: cells; resized: blocks)."""

from __future__ import annotations

import base64
import io
import zlib

import numpy as np
import pytest
from PIL import Image

from kzlabel.picture import GRID_CELLS, MIN_CELL_PX, PictureGrid, grid_dims, match_picture, picture_grid


def _noise(width: int, height: int, seed: int = 3) -> Image.Image:
    """Smooth colour fields with grain: texture in every cell, no flat areas."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, height // 16), max(2, width // 16), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.int16)
    return Image.fromarray(np.clip(smooth + rng.integers(-8, 9, smooth.shape), 0, 255).astype(np.uint8))


def _jpeg(image: Image.Image, quality: int = 75) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


@pytest.mark.parametrize(
    ("size", "dims"),
    [((1, 1), (1, 1)), ((3, 500), (1, 42)), ((400, 260), (33, 22)), ((1920, 1080), (85, 48)), ((8000, 6000), (74, 55))],
)
def test_grid_dims_keep_cells_square_and_few(size: tuple[int, int], dims: tuple[int, int]) -> None:
    assert grid_dims(*size) == dims
    cols, rows = dims
    assert cols * rows <= GRID_CELLS * 1.05
    if size[0] >= MIN_CELL_PX and size[1] >= MIN_CELL_PX:
        assert size[0] / cols >= MIN_CELL_PX * 0.9 and size[1] / rows >= MIN_CELL_PX * 0.9


def test_the_packed_grid_holds_every_statistic_within_its_quantisation() -> None:
    grid = picture_grid(_noise(640, 427))
    back = PictureGrid.unpack(grid.pack())
    assert back.size == grid.size and back.dims == grid.dims
    assert np.abs(back.luma - grid.luma).max() <= 1.0 + 1e-4  # stored in steps of 2 levels
    assert np.abs(back.chroma - grid.chroma).max() <= 1.0 + 1e-4
    assert np.abs(back.detail - grid.detail).max() <= 0.5 + 1e-4


@pytest.mark.parametrize("size", [(1, 1), (3, 500), (37, 23), (13, 7), (500, 3)])
def test_pictures_of_awkward_sizes_compare(size: tuple[int, int]) -> None:
    """Odd grid rows and columns (chroma cells over one row or column), cells wider than the picture."""
    picture = _noise(*size)
    signed = PictureGrid.unpack(picture_grid(picture).pack())
    assert match_picture(signed, picture).same is True
    inverted = Image.fromarray(255 - np.asarray(picture))
    assert match_picture(signed, inverted).same is False
    bigger = picture.resize((size[0] * 2, size[1] * 2), Image.Resampling.BICUBIC)
    assert "resized" in match_picture(signed, bigger).detail


def test_an_edit_inside_the_left_out_box_is_not_compared_and_one_outside_is() -> None:
    picture = _noise(480, 320)
    box = [0.05, 0.7, 0.3, 0.2]
    signed = PictureGrid.unpack(picture_grid(picture).pack())
    inside, outside = picture.copy(), picture.copy()
    inside.paste((255, 0, 255), (40, 230, 160, 280))  # within the box (24-168 × 224-288)
    outside.paste((255, 0, 255), (300, 40, 360, 80))
    assert match_picture(signed, inside, box).same is True
    found = match_picture(signed, outside, box)
    assert found.same is False
    assert "from the left" in found.detail and found.data["cells"] >= 4


def test_a_re_encode_is_compared_cell_by_cell_and_a_resize_block_by_block() -> None:
    picture = _noise(800, 600)
    signed = PictureGrid.unpack(picture_grid(picture).pack())
    same = match_picture(signed, _jpeg(picture, 50))
    assert same.same is True and same.detail.startswith("re-encoded since signing")
    resized = match_picture(signed, _jpeg(picture.resize((400, 300), Image.Resampling.LANCZOS), 85))
    assert resized.same is True and resized.detail.startswith("resized since signing")
    shifted = Image.fromarray(np.clip(np.asarray(picture, np.int16) + 30, 0, 255).astype(np.uint8))
    assert match_picture(signed, shifted.resize((400, 300), Image.Resampling.LANCZOS)).same is False


def test_malformed_grids_are_refused() -> None:
    packed = picture_grid(_noise(200, 150)).pack()
    raw = zlib.decompress(base64.b64decode(packed["cells"]))
    bomb = base64.b64encode(zlib.compress(raw + bytes(10_000_000))).decode()
    for broken in (
        {**packed, "cells": packed["cells"][:-8]},
        {**packed, "cells": "not base64!"},
        {**packed, "cells": bomb},  # inflates past the grid: refused after one byte too many, not inflated
        {**packed, "grid": [5, 5]},
        {**packed, "size": [0, 150]},
        {key: value for key, value in packed.items() if key != "size"},
    ):
        with pytest.raises(ValueError):
            PictureGrid.unpack(broken)
