"""Container byte surgery (kzlabel.containers) property-tested over small real files made with Pillow:
put_xmp then get_xmp returns the packet, putting twice leaves one packet, every other segment/chunk/box is kept
byte for byte, and truncated or garbled input raises only CorruptInput (or gives None where that is the contract)."""

from __future__ import annotations

import io
import json
import random
import subprocess
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from kzlabel.containers import bmff, gif, jpeg, png, riff
from kzlabel.errors import CorruptInput, KzlabelError, UnsupportedFormat

AVIF_SAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "samples" / "picture.avif"
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title><rdf:Alt>'
       b'<rdf:li xml:lang="x-default">Seed</rdf:li></rdf:Alt></dc:title></rdf:Description></rdf:RDF></x:xmpmeta>')
FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def picture(mode: str = "RGB", size: tuple[int, int] = (24, 16)) -> Image.Image:
    h, w = size[1], size[0]
    arr = (np.indices((h, w, 4)).sum(axis=0) * 37 % 256).astype(np.uint8)
    return Image.fromarray(arr, "RGBA").convert(mode)


def save(fmt: str, mode: str = "RGB", **params: Any) -> bytes:
    buf = io.BytesIO()
    picture(mode).save(buf, fmt, **params)
    return buf.getvalue()


def png_with_text(zip_xmp: bool) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "seed")
    info.add_itxt("XML:com.adobe.xmp", XMP.decode(), zip=zip_xmp)
    return save("PNG", pnginfo=info, dpi=(300, 300))


EXIF = Image.Exif()
EXIF[0x010F] = "Cam"


# --- one description per container: how to count its XMP packets and list everything else ------------------------
@dataclass(frozen=True)
class Container:
    name: str
    get: Callable[[bytes], bytes | None]
    put: Callable[[bytes, bytes], bytes]
    count: Callable[[bytes], int]  # XMP packets in the file
    others: Callable[[bytes], Any]  # everything that is not the XMP packet, to compare before and after
    seeds: dict[str, bytes]
    max_packet: int | None = None  # over this, put_xmp refuses (KzlabelError, not CorruptInput)
    no_nul: bool = False  # the container cannot carry a NUL byte in the packet
    nonempty: bool = False  # the container cannot carry an empty packet
    errors: tuple[type[Exception], ...] = (CorruptInput,)  # what malformed input may raise


def jpeg_others(data: bytes) -> list[bytes]:
    segs, tail = jpeg.segments(data)
    return [data[s.start : s.end] for s in segs if not jpeg.is_xmp(data, s)] + [data[tail:]]


def png_others(data: bytes) -> list[bytes]:
    return [data[c.start : c.end] for c in png.chunks(data) if not png.is_xmp(data, c)]


def webp_others(data: bytes) -> tuple[list[tuple[bytes, bytes]], tuple[int, int, bool]]:
    # VP8X changes (its XMP flag, or it is added to a simple file): its canvas must not
    kept = [(c.kind, data[c.body : c.body + c.size]) for c in riff.chunks(data) if c.kind not in (b"XMP ", b"VP8X")]
    return kept, riff.webp_canvas(data)


def gif_others(data: bytes) -> list[bytes]:
    found = gif.blocks(data)
    end = found[-1].end if found else gif.body_start(data)
    return [data[: gif.body_start(data)], *(data[b.start : b.end] for b in found if not b.is_xmp), data[end:]]


def bmff_others(data: bytes) -> tuple[dict[int, bytes], list[bytes], list[bytes]]:
    meta = bmff.read_meta(data)
    xmp = meta.xmp_item()
    items = {loc.item: bmff.item_bytes(data, meta, loc) for loc in meta.locations if loc.item != xmp}
    top = [data[b.start : b.end] for b in bmff.boxes(data, 0, len(data)) if b.kind not in (b"meta", b"mdat")]
    # the item table (iloc, iinf, iref) is rewritten; every other meta child (hdlr, pitm, iprp, idat) is copied
    children = [data[b.start : b.end] for b in meta.children if b.kind not in (b"iloc", b"iinf", b"iref")]
    return items, top, children


def bmff_count(data: bytes) -> int:
    return sum(1 for kind, ctype in bmff.read_meta(data).items.values() if (kind, ctype) == (b"mime", bmff.XMP_MIME))


CONTAINERS = [
    Container(
        "jpeg", jpeg.get_xmp, jpeg.put_xmp,
        lambda d: sum(jpeg.is_xmp(d, s) for s in jpeg.segments(d)[0]), jpeg_others,
        {"plain": save("JPEG"), "exif-comment-xmp": save("JPEG", exif=EXIF.tobytes(), comment=b"seed", xmp=XMP),
         "grey-progressive": save("JPEG", "L", progressive=True), "cmyk": save("JPEG", "CMYK")},
        max_packet=jpeg.MAX_XMP,
    ),
    Container(
        "png", png.get_xmp, png.put_xmp, lambda d: sum(png.is_xmp(d, c) for c in png.chunks(d)), png_others,
        {"plain": save("PNG"), "rgba": save("PNG", "RGBA"), "palette": save("PNG", "P"),
         "text-xmp": png_with_text(False), "text-zipped-xmp": png_with_text(True)},
    ),
    Container(
        "webp", riff.get_xmp, riff.put_xmp, lambda d: sum(c.kind == b"XMP " for c in riff.chunks(d)), webp_others,
        {"lossy": save("WEBP"), "lossless": save("WEBP", lossless=True),
         "lossless-alpha": save("WEBP", "RGBA", lossless=True), "lossy-alpha": save("WEBP", "RGBA"),
         "exif-xmp": save("WEBP", exif=EXIF.tobytes(), xmp=XMP)},
    ),
    Container(
        "gif", gif.get_xmp, gif.put_xmp, lambda d: sum(b.is_xmp for b in gif.blocks(d)), gif_others,
        {"plain": save("GIF"), "comment": save("GIF", comment=b"seed"), "grey": save("GIF", "L")},
        no_nul=True,
    ),
    Container(
        "bmff", bmff.get_xmp, bmff.put_xmp, bmff_count, bmff_others,
        {"avif": save("AVIF"), "avif-exif-xmp": save("AVIF", exif=EXIF.tobytes(), xmp=XMP),
         "avif-alpha": save("AVIF", "RGBA"), "sample": AVIF_SAMPLE.read_bytes()},
        nonempty=True,
        # a garbled item table can claim items stored by item offset or in other files
        errors=(CorruptInput, UnsupportedFormat),
    ),
]
CASES = [(c, seed) for c in CONTAINERS for seed in c.seeds]
IDS = [f"{c.name}-{seed}" for c, seed in CASES]


def big(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


# small arbitrary packets, and large ones (over JPEG's 64 KiB segment, where the others must still carry them)
PACKETS = st.one_of(
    st.binary(max_size=300),
    st.builds(big, st.sampled_from([jpeg.MAX_XMP - 1, jpeg.MAX_XMP, jpeg.MAX_XMP + 1, 100_000, 200_000]),
              st.integers(0, 2**32)),
)


def fit(c: Container, packet: bytes) -> bytes:
    """``packet`` made carriable by ``c`` where the container's contract rules out some bytes."""
    if c.no_nul:
        packet = packet.replace(b"\x00", b"\x01")
    return (packet or b"x") if c.nonempty else packet


@pytest.mark.parametrize("c,seed", CASES, ids=IDS)
@FAST
@given(packet=PACKETS)
def test_put_then_get_returns_the_packet_and_keeps_everything_else(c: Container, seed: str, packet: bytes) -> None:
    data = c.seeds[seed]
    packet = fit(c, packet)
    if c.max_packet is not None and len(packet) > c.max_packet:
        with pytest.raises(KzlabelError) as refused:
            c.put(data, packet)
        assert not isinstance(refused.value, CorruptInput)  # the file is fine; the packet does not fit one segment
        return
    out = c.put(data, packet)
    assert c.get(out) == packet
    assert c.count(out) == 1
    assert c.others(out) == c.others(data)


@pytest.mark.parametrize("c,seed", CASES, ids=IDS)
@FAST
@given(first=st.binary(max_size=200), second=st.binary(max_size=200))
def test_putting_twice_leaves_exactly_one_packet(c: Container, seed: str, first: bytes, second: bytes) -> None:
    data = c.seeds[seed]
    first, second = fit(c, first), fit(c, second)
    twice = c.put(c.put(data, first), second)
    assert c.count(twice) == 1
    assert c.get(twice) == second
    assert c.others(twice) == c.others(data)


@pytest.mark.parametrize("c,seed", CASES, ids=IDS)
@FAST
@given(cut=st.floats(0.0, 1.0), junk=st.binary(max_size=16), flip=st.integers(0, 2**31), bit=st.integers(0, 7),
       garble=st.booleans())
def test_truncated_or_garbled_input_raises_only_corrupt_input(c: Container, seed: str, cut: float, junk: bytes,
                                                             flip: int, bit: int, garble: bool) -> None:
    data = bytearray(c.seeds[seed])
    if garble:  # one flipped bit somewhere
        data[flip % len(data)] ^= 1 << bit
        broken = bytes(data)
    else:
        broken = bytes(data[: int(len(data) * cut)]) + junk
    try:
        found = c.get(broken)
    except c.errors:
        pass
    else:
        assert found is None or isinstance(found, bytes)
    try:
        out = c.put(broken, fit(c, XMP))
    except c.errors:
        pass
    else:
        assert c.get(out) == XMP
    if c.name == "bmff":  # unparsable properties give None or the defaults, never an error
        bmff.item_property(broken, b"av1C")
        assert bmff.av1_subsampling(broken) in ("4:2:0", "4:2:2", "4:4:4", "4:0:0")
        assert bmff.hevc_chroma(broken) in (420, 422, 444)


# --- independent readers and container contracts --------------------------------------------------------------------
@pytest.mark.parametrize("c,seed", CASES, ids=IDS)
def test_pillow_reads_the_packet_and_the_same_pixels(c: Container, seed: str) -> None:
    data = c.seeds[seed]
    packet = XMP.replace(b"Seed", b"Put")
    out = c.put(data, packet)
    with Image.open(io.BytesIO(out)) as im, Image.open(io.BytesIO(data)) as before:
        if c.name == "gif":  # Pillow notes GIF's XMP extension but does not read it: exiftool does
            tags = subprocess.run(["exiftool", "-j", "-XMP-dc:Title", "-"], input=out, capture_output=True,
                                  check=True).stdout
            assert json.loads(tags)[0]["Title"] == "Put"
        else:
            info = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
            assert (info.encode() if isinstance(info, str) else info) == packet
        assert im.size == before.size and im.mode == before.mode
        assert np.array_equal(np.asarray(im), np.asarray(before))


@pytest.mark.parametrize("seed", ["lossy", "lossless", "lossless-alpha", "lossy-alpha"])
def test_webp_canvas_matches_pillow(seed: str) -> None:
    data = CONTAINERS[2].seeds[seed]
    with Image.open(io.BytesIO(data)) as im:
        assert riff.webp_canvas(data) == (*im.size, im.mode == "RGBA")


def test_jpeg_packet_size_limit_is_one_segment() -> None:
    data = CONTAINERS[0].seeds["plain"]
    assert jpeg.get_xmp(jpeg.put_xmp(data, b"a" * jpeg.MAX_XMP)) == b"a" * jpeg.MAX_XMP
    with pytest.raises(KzlabelError, match="too large"):
        jpeg.put_xmp(data, b"a" * (jpeg.MAX_XMP + 1))


def test_gif_refuses_a_nul_and_bmff_an_empty_packet() -> None:
    with pytest.raises(ValueError, match="NUL"):
        gif.put_xmp(CONTAINERS[3].seeds["plain"], b"a\x00b")
    with pytest.raises(ValueError, match="empty"):
        bmff.put_xmp(CONTAINERS[4].seeds["avif"], b"")


def test_files_without_xmp_give_none() -> None:
    for c in CONTAINERS:
        for name, data in c.seeds.items():
            if "xmp" not in name:
                assert c.get(data) is None, f"{c.name}-{name}"


def test_png_reads_a_compressed_xmp_chunk() -> None:
    assert png.get_xmp(png_with_text(True)) == XMP


def test_riff_walker_reads_a_wav_file_object_like_bytes() -> None:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x01\x00" * 101)  # odd-sized data chunk: a pad byte follows it
    data = buf.getvalue() + riff.chunk(b"LIST", b"INFOabc")
    data = data[:4] + (len(data) - 8).to_bytes(4, "little") + data[8:]
    assert riff.form(data) == riff.form(io.BytesIO(data)) == b"WAVE"
    assert riff.chunks(data) == riff.chunks(io.BytesIO(data))
    assert [(c.kind, c.size) for c in riff.chunks(data)] == [(b"fmt ", 16), (b"data", 202), (b"LIST", 7)]


def test_bmff_brands_and_properties() -> None:
    avif = CONTAINERS[4].seeds["avif"]
    assert bmff.brands(avif)[0] == b"avif"
    assert bmff.brands(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic") == (b"heic", b"mif1", b"heic")
    assert bmff.brands(b"\x89PNG\r\n\x1a\n" + bytes(8)) == ()
    assert bmff.item_property(avif, b"av1C") is not None and bmff.item_property(avif, b"hvcC") is None
    assert bmff.av1_subsampling(save("AVIF", subsampling="4:4:4")) == "4:4:4"
