"""AVIF and HEIF/HEIC: the ISO-BMFF image family, XMP as a ``mime`` item of the ``meta`` box.

Both are re-encoded lossy at HEIF_FAMILY_QUALITY with the source's chroma subsampling; writing XMP rebuilds ``meta``
+ ``mdat`` (kzlabel.containers.bmff) and never touches the coded image. AVIF decodes with Pillow's own plugin; HEIF
needs pillow-heif (the ``heif`` extra), and without it is read-only: XMP, C2PA and training permissions are read
(and opt-outs written) from the container alone.
"""

from __future__ import annotations

import functools
from typing import IO, Any, ClassVar

from PIL import Image, ImageFile

from ...containers import bmff
from ...errors import CorruptInput, UnsupportedFormat
from ...io import Input, Limits
from ...label import Label
from ...layers.metadata import TRAINING_PROPS, merge_xmp, training_values, xmp_values
from ...rights.vocab import TrainingPolicy
from ..base import Findings, LabelMatch
from .base import ImageDoc, ImageHandler

__all__ = ["HEIF_FAMILY_QUALITY", "Avif", "Heif", "heif_codec_available"]

# AV1 and HEVC do not record an encoder quality. 90 keeps re-encoding loss small (≈ 37 dB on noisy test images) and
# leaves the watermark at its default amplitude far above the detection threshold (p ≈ 1e-16 or lower at q90 on
# every test image; q60 is where it nears 1e-6 — see docs/images.md).
HEIF_FAMILY_QUALITY = 90
_GENERIC_BRANDS = (b"mif1", b"msf1", b"miaf")
ANIMATED_CQ = (13, 53)  # an AVIF sequence's quality range, as 63 - aom cq-level (50 to 10)


@functools.lru_cache(maxsize=1)
def heif_codec_available() -> bool:
    """Whether pillow-heif (HEVC decode + encode) is installed; its Pillow plugin is registered on first use."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


class _HeifFamily(ImageHandler):
    """AVIF and HEIF: lossy re-encode at HEIF_FAMILY_QUALITY with the source's chroma subsampling."""

    brands: ClassVar[tuple[bytes, ...]] = ()
    # libavif / libheif report a damaged bitstream as RuntimeError ("Decoding of color planes failed")
    save_errors = (OSError, ValueError, RuntimeError)
    decode_errors = (*ImageHandler.decode_errors, RuntimeError)

    def score(self, header: bytes, name: str | None) -> int:
        found = bmff.brands(header)
        if not found:
            return 0
        if found[0] in self.brands:
            return 100
        # a generic major brand (mif1/msf1/miaf) with ours among the compatible brands
        return 95 if found[0] in _GENERIC_BRANDS and any(b in self.brands for b in found[1:]) else 0

    def get_xmp(self, data: bytes) -> bytes | None:
        return bmff.get_xmp(data)

    def put_xmp(self, data: bytes, packet: bytes) -> bytes:
        return bmff.put_xmp(data, packet)

    def source_xmp(self, data: bytes) -> bytes | None:
        """Strict: the item table is the container itself, so a broken one is CorruptInput, not "no XMP"."""
        return self.get_xmp(data)

    def load(self, inp: Input, limits: Limits) -> ImageDoc:
        bmff.read_meta(inp.data)  # a broken item table is CorruptInput before any decoder sees it
        return super().load(inp, limits)

    def output_image(self, doc: ImageDoc) -> Image.Image:
        im = doc.work if doc.work.mode in ("RGB", "RGBA") else doc.work.convert("RGB")
        if doc.original.mode in ("L", "LA", "I", "I;16") and im.mode == "RGB":
            im = im.convert("L")
        return im


class Avif(_HeifFamily):
    """AVIF; image sequences (``avis``) are animations: every frame marked, durations kept, the quality matched to
    the source's size. Pillow neither reads nor takes a loop count (libavif's writer repeats for ever): the source's
    is read from its edit list and written into the encoded sequence's (kzlabel.containers.bmff)."""

    id, name, mime, extensions, pil = "avif", "AVIF", "image/avif", (".avif",), "AVIF"
    brands = (b"avif", b"avis")
    animated = True

    def image_file(self, fp: IO[bytes]) -> ImageFile.ImageFile:
        try:
            from PIL import AvifImagePlugin  # Pillow ≥ 11.3 (pyproject allows older Pillow, without AVIF)
        except ImportError:
            raise CorruptInput("AVIF needs Pillow 11.3 or newer (built with libavif) to decode") from None
        return AvifImagePlugin.AvifImageFile(fp)

    def save_params(self, doc: ImageDoc, im: Image.Image) -> dict[str, Any]:
        return {"quality": HEIF_FAMILY_QUALITY, "subsampling": bmff.av1_subsampling(doc.inp.data)}

    def load(self, inp: Input, limits: Limits) -> ImageDoc:
        doc = super().load(inp, limits)
        if doc.animation is not None:
            doc.animation.loop = bmff.sequence_loop(inp.data)
        return doc

    def encode_frames(self, doc: ImageDoc, frames: list[Image.Image], params: dict[str, Any]) -> bytes:
        data = super().encode_frames(doc, frames, params)
        loop = doc.animation.loop if doc.animation is not None else None
        return data if loop is None else bmff.set_sequence_loop(data, loop)

    def animation_params(self, doc: ImageDoc, frames: list[Image.Image]) -> tuple[list[Image.Image], dict[str, Any]]:
        # speed 8, not libavif's 6: eight times faster (0.2 against 1.2 s for six 512×400 frames), which the size
        # matching's five or more encodes need
        params = {"subsampling": bmff.av1_subsampling(doc.inp.data), "speed": 8}
        return frames, self.size_matched(doc, frames, params, ANIMATED_CQ)

    def lossy_animation(self, doc: ImageDoc) -> bool:
        return True

    def quality_params(self, quality: int) -> dict[str, Any]:
        # constant-quality mode (aom end-usage=q) at cq-level 63 - quality: libavif's default rate control starves
        # the predicted frames, whose mark was lost at every quality (p 0.3-1 on frames 2-6 of the test sequence at
        # quality 80-90), while cq-level 30 kept it in every frame (p < 1e-12) at the source's size
        return {"quality": HEIF_FAMILY_QUALITY, "advanced": {"end-usage": "q", "cq-level": str(63 - quality)}}


class Heif(_HeifFamily):
    """HEIF/HEIC: read + write with pillow-heif (extra ``heif``); without it read-only (XMP, C2PA, opt-outs)."""

    id, name, mime, extensions, pil = "heif", "HEIF", "image/heic", (".heic", ".heif", ".hif"), "HEIF"
    brands = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"heif")

    def image_file(self, fp: IO[bytes]) -> ImageFile.ImageFile:
        from pillow_heif import HeifImageFile  # the optional extra; load/inspect checked heif_codec_available()

        return HeifImageFile(fp)

    def load(self, inp: Input, limits: Limits) -> ImageDoc:
        if not heif_codec_available():
            raise UnsupportedFormat(
                "HEIF/HEIC is read-only here: verify reads its XMP and C2PA manifest, but marking needs an HEVC "
                "codec — pip install 'kzlabel[heif]' (pillow-heif)",
                source=inp.source,
                format=self.id,
            )
        return super().load(inp, limits)

    def save_params(self, doc: ImageDoc, im: Image.Image) -> dict[str, Any]:
        return {"quality": HEIF_FAMILY_QUALITY, "chroma": bmff.hevc_chroma(doc.inp.data)}

    def inspect(self, inp: Input, limits: Limits, key: bytes | None, watermark: bool = True) -> Findings:
        if heif_codec_available():
            return super().inspect(inp, limits, key, watermark)
        values = xmp_values(self.get_xmp(inp.data))  # the container must parse even when the pixels cannot be decoded
        tokens = [("XMP kzlabel:Label", values.pop("kzlabel:Label"))] if values.get("kzlabel:Label") else []
        return Findings(tokens=tokens, fields=dict(values), watermark=None, state=None)

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        if findings.state is None:
            return LabelMatch(None, None, "pixels not decodable without pillow-heif")
        return super().check_label(findings, label)

    def write_training(self, data: bytes, policy: TrainingPolicy, limits: Limits) -> bytes:
        if heif_codec_available():
            return super().write_training(data, policy, limits)
        return self.put_xmp(data, merge_xmp(self.get_xmp(data), training_values(policy), TRAINING_PROPS))
