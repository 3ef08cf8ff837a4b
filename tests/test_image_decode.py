"""Image decoding enforces Limits.max_pixels itself, from the header, and leaves Pillow's process-wide state alone
(Image.MAX_IMAGE_PIXELS, the warning filters), so concurrent requests with different limits cannot disturb each
other."""

from __future__ import annotations

import io
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from kzlabel import Labeler
from kzlabel.errors import CorruptInput, LimitExceeded
from kzlabel.formats import get
from kzlabel.io import Input, Limits

W, H = 64, 48
FORMATS = ["PNG", "JPEG", "WEBP", "TIFF", "GIF", "AVIF"]


def encode(fmt: str) -> bytes:
    arr = (np.indices((H, W, 3)).sum(axis=0) * 23 % 256).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", FORMATS)
def test_decoding_leaves_max_image_pixels_unchanged_and_enforces_the_limit(fmt: str) -> None:
    handler = get(fmt.lower())
    data = encode(fmt)
    before = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning (nor any other) for an image within the limit
        doc = handler.load(Input(data), Limits(max_pixels=W * H))
        handler.inspect(Input(data), Limits(max_pixels=W * H), None)
    assert doc.original.size == (W, H)
    assert before == Image.MAX_IMAGE_PIXELS
    with pytest.raises(LimitExceeded, match="pixel limit"):
        handler.load(Input(data), Limits(max_pixels=W * H - 1))
    with pytest.raises(LimitExceeded, match="pixel limit"):
        handler.inspect(Input(data), Limits(max_pixels=W * H - 1), None)
    assert before == Image.MAX_IMAGE_PIXELS


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "AVIF"])
def test_our_limit_governs_above_pillows_bomb_threshold(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # stand-in for an image between Pillow's default threshold (89.5 MP, error at 2×) and Limits.max_pixels: these
    # plugins are opened directly, so only our limit applies
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", (W * H) // 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get(fmt.lower()).load(Input(encode(fmt)), Limits()).original.size == (W, H)


@pytest.mark.parametrize("fmt", ["WEBP", "TIFF"])
def test_pillows_own_plugin_bomb_check_is_reported_as_limit(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the WebP and TIFF plugins check Pillow's MAX_IMAGE_PIXELS themselves (at open, before allocating): above twice
    # that it is a DecompressionBombError, which kzlabel reports as LimitExceeded
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", (W * H) // 3)
    with pytest.raises(LimitExceeded, match="decompression bomb"):
        get(fmt.lower()).load(Input(encode(fmt)), Limits())


def test_limit_through_the_labeler_and_threads_with_different_limits(signer) -> None:
    data = encode("PNG")
    small = Labeler(signer, owner="O", system="S", limits=Limits(max_pixels=W * H - 1))
    with pytest.raises(LimitExceeded):
        small.verify(data, name="x.png")
    handler = get("png")

    def decode(limit: int) -> bool:
        try:
            handler.load(Input(data), Limits(max_pixels=limit))
        except LimitExceeded:
            return False
        return True

    limits = [W * H - 1, W * H] * 20
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(decode, limits)) == [limit >= W * H for limit in limits]


def test_a_tiff_whose_next_frame_has_no_size_is_corrupt_input() -> None:
    """Counting frames parses every IFD: a next-IFD pointer to a directory without ImageWidth made Pillow raise
    TypeError, which reached the user as an internal error instead of a damaged file."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(buf, format="TIFF")
    data = bytearray(buf.getvalue())
    first = int.from_bytes(data[4:8], "little")
    entries = int.from_bytes(data[first : first + 2], "little")
    bogus = len(data)  # one entry (Compression = 1), no width or height, no next directory
    data += (1).to_bytes(2, "little") + bytes.fromhex("0301 0300 01000000 0100 0000") + bytes(4)
    data[first + 2 + 12 * entries : first + 6 + 12 * entries] = bogus.to_bytes(4, "little")
    with pytest.raises(CorruptInput, match="unreadable image"):
        get("tiff").open_image(Input(bytes(data)), Limits())
