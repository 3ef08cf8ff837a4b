"""PNG: lossless re-encode keeping text chunks, dpi and transparency; XMP in an ``iTXt`` chunk.

APNG (animated PNG) keeps each frame's duration and disposal and the loop count; the frames are composited, and
kzlabel.formats.image.apng writes each as the rectangle that changed, its still blocks left transparent with blend
OVER where that is smaller (the blend operation written is the one that stores the composited frame, not
necessarily the source's). A paletted APNG stays paletted: every frame on the source's colours plus the
warning's, in the one ``PLTE`` all frames share (kzlabel.formats.image.palette; written as RGB, the test paletted
animations grew 2.6-24x, the mark's noise costing deflate what the palette had saved).

ffmpeg reads a PNG as an APNG only when every chunk before the first IDAT lies in its first 2048 bytes
(containers.png.PROBE), so in an APNG kzlabel places the C2PA manifest itself, in a ``caBX`` chunk before IEND
(layers/c2pa_embed), and an XMP packet too large for that keeps the signed label in a private chunk after the frames
(containers.png.LABEL; docs/images.md, "APNG layout for ffmpeg"). Still PNGs keep the C2PA library's layout.
"""

from __future__ import annotations

import io
from typing import IO, Any

import numpy as np
from PIL import Image, ImageFile, PngImagePlugin

from ...containers import png
from ...errors import CorruptInput, KzlabelError
from ...io import Input
from ...label import Label
from ...layers.c2pa_embed import Slot
from . import apng
from .base import ImageDoc, ImageHandler
from .palette import CLEAR, keeping_the_mark, on_one_palette, on_palette, one_palette

__all__ = ["Png"]


class Png(ImageHandler):
    id, name, mime, extensions, pil = "png", "PNG", "image/png", (".png",), "PNG"
    animated = True

    def score(self, header: bytes, name: str | None) -> int:
        return 100 if header.startswith(png.SIGNATURE) else 0

    def c2pa_streams(self, inp: Input) -> bool:
        """An APNG's manifest is placed by kzlabel, before IEND (module docstring); a still PNG's by the C2PA
        library, right after IHDR."""
        try:
            return png.animated(inp.data)
        except CorruptInput:
            return False

    def c2pa_reserve(self, src: IO[bytes], dst: IO[bytes], size: int) -> Slot:
        """``src`` with one zero-filled ``caBX`` chunk of ``size`` bytes (any old one dropped): just before IEND in an
        APNG, after IHDR in a still PNG (where the C2PA library puts it). The hard binding excludes the whole chunk
        (length, type, data and CRC, the span the C2PA library checks); the CRC is written with the store."""
        src.seek(0)
        data = src.read()
        found = png.chunks(data)
        if not found or found[0].kind != b"IHDR":
            raise CorruptInput("PNG file does not start with IHDR")
        kept = [c for c in found if c.kind not in (png.C2PA, b"IEND")]
        cut = len(kept) if png.animated(data) else 1
        dst.write(png.SIGNATURE)
        for c in kept[:cut]:
            dst.write(data[c.start : c.end])
        start = dst.tell()
        dst.write(size.to_bytes(4, "big") + png.C2PA + bytes(size) + bytes(4))
        for c in kept[cut:]:
            dst.write(data[c.start : c.end])
        dst.write(png.chunk(b"IEND", b""))
        return Slot(start + 8, size, (start, size + 12), seal=_crc)

    def c2pa_slot(self, content: IO[bytes]) -> Slot | None:
        """The first ``caBX`` chunk's data, the whole chunk excluded (c2pa_reserve)."""
        data = content.read()
        for c in png.chunks(data):
            if c.kind == png.C2PA:
                return Slot(c.start + 8, c.end - c.start - 12, (c.start, c.end - c.start), seal=_crc)
        return None

    def image_file(self, fp: IO[bytes]) -> ImageFile.ImageFile:
        return PngImagePlugin.PngImageFile(fp)

    def get_xmp(self, data: bytes) -> bytes | None:
        return png.get_xmp(data)

    def put_xmp(self, data: bytes, packet: bytes) -> bytes:
        return png.put_xmp(data, packet)

    def labelled(self, data: bytes, label: Label, token: str) -> bytes:
        """An APNG whose XMP would push the first IDAT out of ffmpeg's probe read (png.PROBE: ffmpeg would show one
        still frame) keeps the label's other XMP properties there and carries the signed label in a private chunk
        after the frames (png.LABEL); when even that does not fit (a large palette or ICC profile), the XMP keeps
        it."""
        out = super().labelled(data, label, token)
        if not png.animated(out) or png.probe_fits(out):
            return out
        lean = png.put_label(self.put_xmp(data, self.label_packet(data, label, token, signed=False)), token)
        return lean if png.probe_fits(lean) else out

    def carrier_tokens(self, data: bytes) -> list[tuple[str, str]]:
        try:
            token = png.get_label(data)
        except CorruptInput:  # a damaged chunk layout: the XMP reader says what it finds
            return []
        return [(f"PNG {png.LABEL.decode()} chunk", token)] if token else []

    def save_params(self, doc: ImageDoc, im: Image.Image) -> dict[str, Any]:
        info = doc.info
        text = PngImagePlugin.PngInfo()
        for k, v in info.items():
            if isinstance(v, str) and k != png.XMP_KEYWORD.decode():  # XMP is put by container surgery, merged
                text.add_text(k, v)
        params: dict[str, Any] = {"pnginfo": text, "compress_level": 6}
        if "dpi" in info:
            params["dpi"] = info["dpi"]
        if "transparency" in info and im.mode in ("P", "L", "RGB"):
            params["transparency"] = info["transparency"]
        return params

    def animation_params(self, doc: ImageDoc, frames: list[Image.Image]) -> tuple[list[Image.Image], dict[str, Any]]:
        anim = doc.animation
        assert anim is not None
        params = self.save_params(doc, frames[0])
        params.pop("transparency", None)  # frames are RGB(A): transparency is their alpha
        params |= {"disposal": anim.disposal, "blend": anim.blend}
        clear = any(f.mode == "RGBA" for f in frames)
        table = _one_palette(doc, frames, clear)
        if table is None:
            return frames, params
        frames, dither = keeping_the_mark(frames, doc.info, lambda f, how: on_palette(f, table, clear, None, how))
        if clear:
            params["transparency"] = CLEAR
        return on_one_palette(frames, table, clear, dither), params

    def encode_frames(self, doc: ImageDoc, frames: list[Image.Image], params: dict[str, Any]) -> bytes:
        """The frames as kzlabel's APNG (kzlabel.formats.image.apng: the changed rectangle, still blocks left out),
        or Pillow's where that does not apply (one frame, mixed modes or sizes)."""
        anim = doc.animation
        assert anim is not None
        mode, size = frames[0].mode, frames[0].size
        if len(frames) < 2 or mode not in ("RGB", "RGBA", "P") or any(f.mode != mode or f.size != size for f in frames):
            return super().encode_frames(doc, frames, params)
        pixels = [np.asarray(f) for f in frames]
        still = {k: v for k, v in params.items() if k not in ("disposal", "blend", "loop")} | {"compress_level": 1}
        hole: np.ndarray | int | None = None
        keyed = False  # a tRNS chunk added for the holes only
        if mode == "RGB":
            key = apng.unused_colour(pixels)
            if key is not None:
                hole, still["transparency"], keyed = np.array(key, np.uint8), key, True
            opaque = np.full((*pixels[0].shape[:2], 1), 255, np.uint8)
            shown = [np.concatenate([p, opaque], axis=2) for p in pixels]
        elif mode == "RGBA":
            hole = np.zeros(4, np.uint8)
            shown = [np.where(p[..., 3:] == 0, 0, p).astype(np.uint8) for p in pixels]
        else:
            flat = frames[0].getpalette() or []
            if any((f.getpalette() or []) != flat for f in frames):
                return super().encode_frames(doc, frames, params)
            lut = np.zeros((256, 4), np.uint8)
            colours = np.array(flat[:768], np.uint8).reshape(-1, 3)
            lut[: len(colours), :3], lut[:, 3] = colours, 255
            if still.get("transparency") == CLEAR:
                hole = CLEAR
            elif max(int(p.max()) for p in pixels) < 255:
                hole = still["transparency"] = 255
                keyed = True
            if hole is not None:
                lut[int(hole)] = 0
            shown = [lut[p] for p in pixels]
            still["bits"] = 8
        buf = io.BytesIO()
        try:
            frames[0].save(buf, format="PNG", **still)
        except self.save_errors as exc:
            raise KzlabelError(f"could not encode animated {self.name}: {exc}", format=self.id) from None
        head = buf.getvalue()
        depth, colour, interlace = head[24], head[25], head[28]
        if depth != 8 or interlace or colour != {"RGB": 2, "RGBA": 6, "P": 3}[mode]:
            return super().encode_frames(doc, frames, params)
        loop = 0 if anim.loop is None else anim.loop
        dispose = anim.disposal or [0] * len(frames)
        try:
            return apng.assemble(head, pixels, shown, anim.durations, dispose, loop, hole, keyed)
        except ValueError as exc:  # a duration APNG cannot hold
            raise KzlabelError(f"could not encode animated {self.name}: {exc}", format=self.id) from None


def _one_palette(doc: ImageDoc, frames: list[Image.Image], clear: bool) -> list[tuple[int, int, int]] | None:
    """The one palette of a paletted source's frames (kzlabel.formats.image.palette.one_palette); None (frames
    written RGB(A)) when the source was not paletted or had translucent pixels (index CLEAR is the one transparent
    entry)."""
    anim = doc.animation
    if anim is None or doc.original.mode != "P":
        return None
    if clear and any(np.isin(np.asarray(f.getchannel("A")), (0, 255), invert=True).any() for f in frames):
        return None
    box = doc.placement.box if doc.placement is not None else None
    return one_palette(anim.colours, frames, box)


def _crc(store: bytes) -> bytes:
    """The CRC of a ``caBX`` chunk holding ``store``."""
    return png.crc(png.C2PA, store)
