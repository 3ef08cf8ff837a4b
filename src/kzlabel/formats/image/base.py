"""The still-image handler base: decoding within limits, the working copy, and the mark/verify steps every image
format shares.

mark: decode (the pixel limit checked from the header before any pixel is decoded) → warning drawn in the displayed
orientation (EXIF orientation respected) → watermark in the stored pixels → re-encode keeping the source's quality,
ICC profile and EXIF → XMP (IPTC, TC260 AIGC, kzlabel label) merged into the existing packet by container surgery
(kzlabel.containers), not by another lossy encode → (pipeline) C2PA.

A subclass per format carries what differs, by class: its Pillow plugin, XMP get/put, what it reads from the source
to re-encode alike, its encoder parameters, its watermark strength and any extra label carrier.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, ClassVar, cast

import numpy as np
from PIL import Image, ImageFile, ImageOps

from ...errors import CorruptInput, KzlabelError, LimitExceeded, UnsupportedFormat
from ...io import Input, Limits
from ...label import Label, Training, TrainingSignal
from ...layers import LAYERS, visible
from ...layers.metadata import LABEL_PROPS, TRAINING_PROPS, label_values, merge_xmp, training_values, xmp_values
from ...rights.vocab import TrainingPolicy, signal_from_plus, signal_from_tdmrep
from ...watermark.core import P_THRESHOLD, WatermarkResult
from ..base import Findings, Handler, LabelMatch, MarkOptions, Survival, rewrite
from .animated import (
    ANIMATION_ALGS,
    Animation,
    animation_binding,
    animation_matches,
    detection_planes,
    frame_count,
    read_animation,
    warning_matches,
    warning_record,
)
from .apng import BLOCK as _DELTA_BLOCK  # the APNG writer's still blocks are these
from .binding import picture_binding, picture_matches

__all__ = ["ImageDoc", "ImageHandler"]

ImageFile.LOAD_TRUNCATED_IMAGES = False
_INVERSE_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
# what a Pillow plugin raises on a file it cannot parse: Image.open turns the first four into "cannot identify"
_HEADER_ERRORS: tuple[type[Exception], ...] = (
    SyntaxError,
    IndexError,
    TypeError,
    struct.error,
    OSError,
    ValueError,
    EOFError,
    zlib.error,
)
# a lossy animation's quality is raised by QUALITY_STEP until every frame's mark reads back, the first frame's with p
# under MARK_MARGIN (the detection threshold is 1e-6: two orders of magnitude to spare)
QUALITY_STEP = 3
MARK_MARGIN = 1e-8
ANIMATED_STRENGTH_MAX = 3.0
CHECKED_FRAMES = 8  # frames read back while choosing the quality, spread from the first to the last
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)


@dataclass(frozen=True)
class Undecodable:
    """Findings state of a labelled image whose pixels no longer decode."""

    reason: str


@dataclass
class ImageDoc:
    inp: Input
    original: Image.Image
    work: Image.Image  # RGB/RGBA 8-bit working copy, stored orientation
    orientation: int
    info: dict[str, Any] = field(default_factory=dict)
    placement: visible.Placement | None = None
    written: Image.Image | None = None  # the picture as encoded and decoded again (set by bind)
    animation: Animation | None = None  # an animated image's frames (work is then its first frame)


def _working(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        return im.convert("RGBA")
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def _back_to_mode(doc: ImageDoc) -> Image.Image:
    """The working copy in the original's colour mode (16-bit kept by adding the 8-bit change ×257)."""
    orig, work = doc.original, doc.work
    mode = orig.mode
    if mode in ("RGB", "RGBA"):
        return work.convert(mode)
    if mode in ("L", "LA", "CMYK"):
        return work.convert(mode)
    if mode in ("P", "PA"):
        rgb = work.convert("RGBA" if work.mode == "RGBA" else "RGB")
        return rgb.quantize(256) if rgb.mode == "RGB" else rgb.convert("P", palette=Image.Palette.ADAPTIVE)
    if mode == "1":
        return work.convert("1")
    if mode.startswith("I;16") or mode == "I":
        base = np.asarray(orig, dtype=np.int32)
        before = np.asarray(_working(orig).convert("L"), dtype=np.int32)
        after = np.asarray(work.convert("L"), dtype=np.int32)
        scale = 257 if mode.startswith("I;16") or base.max() > 255 else 1
        out = np.clip(base + (after - before) * scale, 0, 65535)
        return Image.fromarray(out.astype(np.uint16) if mode.startswith("I;16") else out.astype(np.int32))
    return work.convert("RGB")


def _psnr_strength(embed: Any, frame: Image.Image, payload: bytes, key: bytes | None, psnr: float) -> float:
    """The watermark amplitude that puts ``frame`` at ``psnr`` dB after marking (1 to ANIMATED_STRENGTH_MAX).

    Frames decoded from a lossy animation are smooth, where the mark's texture-masked amplitude is lowest (about
    50 dB PSNR on the test animations' frames), and re-encoded at the source's size they lost it on some frames until
    quality, and so size, had grown by half or more (docs/images.md#animated-images). The mark's change is linear in
    its strength, so one trial embed measures it. ``embed`` leaves out the still mark's texture gain: on smooth frames
    the warning's glyph edges are the only texture, the gain put ~60 % of the mark's energy into its box (8 % of the
    frame), the rest got a quarter less at the same PSNR (strength 1.43, not 1.93, on the test AVIF) and the quality
    search raised the test WebP to 1.52× and the AVIF to 2.15× the source (1.02× and 0.94× without the gain)."""
    before = np.asarray(frame.convert("RGB"), np.float32)
    after = np.asarray(Image.fromarray(embed(np.asarray(frame), payload, key=key)).convert("RGB"), np.float32)
    mse = float(np.mean((after - before) ** 2))
    target = 255.0**2 / 10 ** (psnr / 10)
    return float(np.clip((target / mse) ** 0.5, 1.0, ANIMATED_STRENGTH_MAX)) if mse > 0 else 1.0


def _displayed(im: Image.Image, orientation: int) -> Image.Image:
    return ImageOps.exif_transpose(im) if orientation in _INVERSE_TRANSPOSE else im


class ImageHandler(Handler[ImageDoc]):
    """A still-image format: a subclass supplies ``image_file``, ``get_xmp`` and ``put_xmp``, and overrides the
    hooks below where its format differs."""

    layers = frozenset(LAYERS)
    pil: ClassVar[str] = ""  # Pillow's format name, to save with
    save_errors: ClassVar[tuple[type[Exception], ...]] = (OSError, ValueError)  # what the encoder raises on bad input
    decode_errors: ClassVar[tuple[type[Exception], ...]] = _DECODE_ERRORS  # what the decoder raises on damaged data
    animated: ClassVar[bool] = False  # the format's animations are marked frame by frame (else refused)
    palette_frames: ClassVar[bool] = False  # an animation's frames go back onto their own palettes (GIF)
    animation_psnr: ClassVar[float] = 43.0  # a lossy animation's mark, in dB PSNR (the still mark's aim on photos)

    # --- what each format supplies ------------------------------------------------------------------------------
    def image_file(self, fp: IO[bytes]) -> ImageFile.ImageFile:
        """The format's Pillow plugin over ``fp``: the header is parsed, no pixel decoded.

        Opening through the plugin class, not Image.open, skips Pillow's check against its process-wide
        MAX_IMAGE_PIXELS: :meth:`open_image` checks ``Limits.max_pixels`` itself, so no global is set per call.
        """
        raise NotImplementedError

    def get_xmp(self, data: bytes) -> bytes | None:
        """The XMP packet in ``data`` (None: none); CorruptInput when the container does not parse."""
        raise NotImplementedError

    def put_xmp(self, data: bytes, packet: bytes) -> bytes:
        """``data`` with its XMP packet replaced by ``packet`` (one packet, everything else kept)."""
        raise NotImplementedError

    def source_xmp(self, data: bytes) -> bytes | None:
        """The XMP of a file given to kzlabel: an unreadable packet counts as none (marking replaces it)."""
        try:
            return self.get_xmp(data)
        except CorruptInput:
            return None

    def source_info(self, im: Image.Image, data: bytes) -> dict[str, Any]:
        """What the encoder needs to re-encode like the source, beyond Pillow's ``im.info``."""
        return {}

    def save_params(self, doc: ImageDoc, im: Image.Image) -> dict[str, Any]:
        """Encoder parameters for ``im`` (ICC profile and EXIF are added by :meth:`encode`)."""
        return {}

    def output_image(self, doc: ImageDoc) -> Image.Image:
        """The marked pixels as the encoder takes them: the source's own colour mode."""
        return _back_to_mode(doc)

    def watermark_strength(self, doc: ImageDoc) -> float:
        """The watermark amplitude for this output (1.0: the default, for lossless or high-quality output)."""
        return 1.0

    def write_carriers(self, data: bytes, label: Label, token: str) -> bytes:
        """Label carriers besides XMP (none by default)."""
        return data

    def animation_params(self, doc: ImageDoc, frames: list[Image.Image]) -> tuple[list[Image.Image], dict[str, Any]]:
        """An animated format's frames as its encoder takes them, and the encoder's parameters beyond the timing."""
        raise NotImplementedError

    def lossy_animation(self, doc: ImageDoc) -> bool:
        """Whether this animation is re-encoded lossy (its mark then gets _psnr_strength's amplitude)."""
        return False

    def quality_params(self, quality: int) -> dict[str, Any]:
        """Encoder parameters for a lossy animation at ``quality`` (higher: better, larger)."""
        return {"quality": quality}

    def size_matched(
        self, doc: ImageDoc, frames: list[Image.Image], params: dict[str, Any], qualities: tuple[int, int]
    ) -> dict[str, Any]:
        """``params`` at the highest quality in ``qualities`` whose encoding is no larger than the source (a lossy
        animation records no quality; four encodes), raised by QUALITY_STEP while the watermark does not read back
        from up to CHECKED_FRAMES frames spread over the animation (the first with MARK_MARGIN to spare): at a source
        rate too low for the mark, the mark is kept and the size grows (docs/images.md)."""
        low, high = qualities
        target, best = len(doc.inp.data), low
        for _ in range(4):  # a 40-step range to about 3 steps: a few percent of size
            if low > high:
                break
            mid = (low + high) // 2
            if len(self.encode_frames(doc, frames, params | self.quality_params(mid))) <= target:
                best, low = mid, mid + 1
            else:
                high = mid - 1
        mark = doc.info.get("watermark")
        picks = sorted({round(i * (len(frames) - 1) / max(CHECKED_FRAMES - 1, 1)) for i in range(CHECKED_FRAMES)})
        while mark is not None:
            from ...watermark import detect_image

            data = self.encode_frames(doc, frames, params | self.quality_params(best))
            with self.image_file(io.BytesIO(data)) as im:
                kept = True
                for index in picks:
                    im.seek(index)
                    found = detect_image(np.asarray(im.convert("RGB")), key=mark[1])
                    # every frame read; the first (what verify and a poster frame start from) with a margin
                    kept = found.payload == mark[0] and (index > 0 or found.p_value < MARK_MARGIN)
                    if not kept:
                        break
            if kept or best >= qualities[1]:
                break
            best = min(best + QUALITY_STEP, qualities[1])
        return params | self.quality_params(best)

    def encode_frames(self, doc: ImageDoc, frames: list[Image.Image], params: dict[str, Any]) -> bytes:
        """The frames encoded as an animation with the source's durations and loop count."""
        anim = doc.animation
        assert anim is not None
        if anim.loop is not None:
            params.setdefault("loop", anim.loop)
        buf = io.BytesIO()
        try:
            frames[0].save(
                buf, format=self.pil, save_all=True, append_images=frames[1:], duration=anim.durations, **params
            )
        except self.save_errors as exc:
            raise KzlabelError(f"could not encode animated {self.name}: {exc}", format=self.id) from None
        return buf.getvalue()

    # --- decoding -------------------------------------------------------------------------------------------------
    def open_image(self, inp: Input, limits: Limits) -> ImageFile.ImageFile:
        """Decode with the pixel limit checked from the header first, and every failure translated.

        Pillow's own checks inside a plugin stay on (WebP at open, TIFF before allocating): above twice its
        MAX_IMAGE_PIXELS they raise DecompressionBombError, reported as LimitExceeded.
        """
        src, fmt = inp.source, self.id
        try:
            im = self.image_file(io.BytesIO(inp.data))
        except KzlabelError as exc:
            exc.source, exc.format = exc.source or src, exc.format or fmt
            raise
        except Image.DecompressionBombError as exc:
            raise LimitExceeded(f"decompression bomb refused: {exc}", source=src, format=fmt) from None
        except _HEADER_ERRORS + self.decode_errors as exc:
            raise CorruptInput(f"unreadable image: {exc}", source=src, format=fmt) from exc
        w, h = im.size
        if w * h > limits.max_pixels:
            raise LimitExceeded(f"{w}×{h} is over the {limits.max_pixels}-pixel limit", source=src, format=fmt)
        if w < 1 or h < 1:
            raise CorruptInput("image has no pixels", source=src, format=fmt)
        try:
            if frame_count(im) > 1 and not self.animated:
                raise UnsupportedFormat(
                    f"animated {im.format} ({getattr(im, 'n_frames', 1)} frames) is not supported yet",
                    source=src,
                    format=fmt,
                )
            im.load()
        except Image.DecompressionBombError as exc:
            raise LimitExceeded(f"decompression bomb refused: {exc}", source=src, format=fmt) from None
        except _HEADER_ERRORS + self.decode_errors as exc:  # n_frames parses every frame's header (TIFF IFDs)
            raise CorruptInput(f"unreadable image: {exc}", source=src, format=fmt) from exc
        return im

    # --- mark ---------------------------------------------------------------------------------------------------
    def load(self, inp: Input, limits: Limits) -> ImageDoc:
        im = self.open_image(inp, limits)
        orientation = int(im.getexif().get(0x0112, 1) or 1)
        info = cast(dict[str, Any], dict(im.info))
        info.update(self.source_info(im, inp.data))
        info["xmp_packet"] = self.source_xmp(inp.data)  # unreadable XMP is not carried over
        if frame_count(im) > 1:
            anim = self.decode_animation(im, limits, inp.source)
            return ImageDoc(inp, im, anim.frames[0], 1, info, animation=anim)
        return ImageDoc(inp, im, _working(im), orientation, info)

    def decode_animation(self, im: Image.Image, limits: Limits, source: str | None) -> Animation:
        try:
            # a paletted source's colours are kept whatever the format (a paletted APNG stays paletted)
            return read_animation(im, limits.max_pixels, palettes=self.palette_frames or im.mode == "P")
        except LimitExceeded as exc:
            exc.source, exc.format = source, self.id
            raise
        except Image.DecompressionBombError as exc:
            raise LimitExceeded(f"decompression bomb refused: {exc}", source=source, format=self.id) from None
        except _HEADER_ERRORS + self.decode_errors as exc:
            raise CorruptInput(f"unreadable frame: {exc}", source=source, format=self.id) from exc

    def draw_warning(self, doc: ImageDoc, label: Label, opts: MarkOptions) -> None:
        if doc.animation is not None:  # every frame, the same corner (frames have no EXIF orientation of their own)
            corner = opts.position or "bottom-left"
            for frame in doc.animation.frames:
                doc.placement = visible.draw(frame, label, corner=corner, style=opts.style)
            doc.work = doc.animation.frames[0]
            return
        shown = _displayed(doc.work, doc.orientation)
        doc.placement = visible.draw(shown, label, corner=opts.position or "bottom-left", style=opts.style)
        back = _INVERSE_TRANSPOSE.get(doc.orientation)
        doc.work = shown.transpose(back) if back is not None else shown

    def embed_watermark(self, doc: ImageDoc, payload: bytes, key: bytes | None) -> None:
        from ...watermark import embed_image  # heavy (cv2): loaded only when pixels are marked

        strength = self.watermark_strength(doc)
        doc.info["watermark"] = (payload, key)  # what an encoder that must keep the mark checks it against
        if doc.animation is not None:  # every frame carries the whole mark: one frame taken out still has it
            frames = doc.animation.frames
            doc.info["unmarked"] = list(frames)  # an encoder that cannot keep the mark writes these (GIF)
            gain = not self.lossy_animation(doc)
            if not gain:  # the amplitude is set for the whole frame, without the still's texture gain (_psnr_strength)
                embed = partial(embed_image, texture_gain=False)
                strength = _psnr_strength(embed, frames[0], payload, key, self.animation_psnr)
            # a lossless animation's warning box is left unmarked when the first frame keeps the mark without it
            bare = doc.placement.box if gain and doc.placement is not None else None
            previous: tuple[np.ndarray, np.ndarray] | None = None
            for i, frame in enumerate(frames):
                source = np.asarray(frame)
                # no budget fill (a still picture's): its noise would grow a lossless animation by a fifth
                marked = embed_image(source, payload, key=key, strength=strength, texture_gain=gain, fill=False)
                if bare is not None:
                    marked, bare = _bare_box(source, marked, bare, payload, key, check=i == 0)
                if previous is not None and previous[0].shape == source.shape:
                    marked = _reuse_unchanged(previous[0], source, previous[1], marked)
                previous = (source, marked)
                frames[i] = Image.fromarray(marked)
            doc.work = frames[0]
            return
        mode = doc.work.mode
        doc.work = Image.fromarray(embed_image(np.asarray(doc.work), payload, key=key, strength=strength), mode=mode)

    def encode(self, doc: ImageDoc, opts: MarkOptions, out: Path) -> None:
        out.write_bytes(self.encoded(doc))

    def encoded(self, doc: ImageDoc) -> bytes:
        """The marked image re-encoded like the source, its XMP packet carried over."""
        params: dict[str, Any] = {key: doc.info[key] for key in ("icc_profile", "exif") if doc.info.get(key)}
        if doc.animation is not None:
            frames, extra = self.animation_params(doc, doc.animation.frames)
            data = self.encode_frames(doc, frames, params | extra)
        else:
            im = self.output_image(doc)
            params.update(self.save_params(doc, im))
            buf = io.BytesIO()
            try:
                im.save(buf, format=self.pil, **params)
            except self.save_errors as exc:
                raise KzlabelError(f"could not encode {self.name}: {exc}", format=self.id) from None
            data = buf.getvalue()
        packet = doc.info.get("xmp_packet")
        return self.put_xmp(data, packet) if packet else data

    def bind(self, doc: ImageDoc, out: Path) -> Mapping[str, Any]:
        """The picture as written, decoded the way verify decodes it: the content binding, and where the warning is."""
        with self.image_file(io.BytesIO(out.read_bytes())) as im:
            if doc.animation is not None:
                written = read_animation(im, frame_count(im) * im.width * im.height)
                doc.written = written.frames[0]
                found: dict[str, Any] = {}
                if doc.placement is not None:
                    found["warning"] = warning_record(written.frames, doc.placement)
                box = found["warning"]["box"] if doc.placement is not None else None
                found["binding"] = animation_binding(written.frames, written.durations, box)
                return found
            doc.written = _working(im)
            shown = _displayed(doc.written, doc.orientation)
            fields: dict[str, Any] = {}
            box = None
            if doc.placement is not None:
                record = doc.placement.record(shown.width, shown.height)
                record |= visible.fingerprint(shown, record["box"])
                fields["warning"] = record
                box = list(record["box"])
            fields["binding"] = picture_binding(shown, box)
        return fields

    def write_metadata(self, out: Path, label: Label, token: str) -> None:
        rewrite(out, lambda data: self.labelled(data, label, token))

    def survival(self, doc: ImageDoc, out: Path, payload: bytes, key: bytes | None) -> Survival | None:
        """The picture as written (decoded once, by ``bind``), re-encoded as a JPEG of quality 75 (what platforms do
        to uploads), searched again."""
        from ...watermark.image import SURVIVAL_JPEG_QUALITY, detect_after_jpeg, survival_class

        if doc.written is None:
            with self.image_file(io.BytesIO(out.read_bytes())) as im:
                doc.written = _working(im)
        found = detect_after_jpeg(np.asarray(doc.written), key=key)
        size_class, caveat = survival_class(doc.written.height, doc.written.width)
        degradation = f"JPEG quality {SURVIVAL_JPEG_QUALITY}"
        return Survival(degradation, found.payload == payload, found.p_value, size_class, caveat)

    def labelled(self, data: bytes, label: Label, token: str) -> bytes:
        """``data`` with the label's XMP merged into its packet (and the format's other carriers written)."""
        data = self.write_carriers(data, label, token)
        return self.put_xmp(data, self.label_packet(data, label, token))

    def label_packet(self, data: bytes, label: Label, token: str, signed: bool = True) -> bytes:
        """``data``'s XMP packet with the label's properties merged in; ``signed=False``: without the signed label
        (``kzlabel:Label``), for a format that carries it elsewhere."""
        values = label_values(label, token)
        if not signed:
            del values[("kzlabel", "Label")]
        replace: tuple[tuple[str, str], ...] = LABEL_PROPS
        if label.training == Training.NOT_ALLOWED:
            values |= training_values(TrainingPolicy.from_lists(deny=["all"]))
            replace = LABEL_PROPS + TRAINING_PROPS
        return merge_xmp(self.get_xmp(data), values, replace)

    def carrier_tokens(self, data: bytes) -> list[tuple[str, str]]:
        """Signed labels in the format's own carriers besides XMP, as (carrier, token) (none by default)."""
        return []

    # --- verify -------------------------------------------------------------------------------------------------
    def inspect(self, inp: Input, limits: Limits, key: bytes | None, watermark: bool = True) -> Findings:
        values = xmp_values(self.source_xmp(inp.data))
        tokens = [("XMP kzlabel:Label", values.pop("kzlabel:Label"))] if values.get("kzlabel:Label") else []
        tokens += self.carrier_tokens(inp.data)
        try:
            im = self.open_image(inp, limits)
        except CorruptInput as exc:
            if not tokens:
                raise
            # a signed label in a picture that no longer decodes: the content was damaged after signing (tampered),
            # which is evidence, not an unusable input
            return Findings(tokens=tokens, fields=dict(values), state=Undecodable(exc.message))
        if frame_count(im) > 1:
            return self.inspect_animation(im, limits, inp, key, watermark, tokens, dict(values))
        work = _working(im)
        mark = None
        if watermark:
            from ...watermark import detect_image  # heavy (cv2): loaded only when pixels are checked

            mark = detect_image(np.asarray(work), key=key)
        orientation = int(im.getexif().get(0x0112, 1) or 1)
        return Findings(tokens=tokens, fields=dict(values), watermark=mark, state=_displayed(work, orientation))

    def inspect_animation(
        self,
        im: Image.Image,
        limits: Limits,
        inp: Input,
        key: bytes | None,
        watermark: bool,
        tokens: list[tuple[str, str]],
        values: dict[str, Any],
    ) -> Findings:
        """An animation's findings: every frame decoded; the watermark searched in the first frame, then in the mean
        of frames spread over the animation."""
        try:
            anim = self.decode_animation(im, limits, inp.source)
        except CorruptInput as exc:
            if not tokens:
                raise
            return Findings(tokens=tokens, fields=values, state=Undecodable(exc.message))
        mark = None
        if watermark:
            from ...watermark import detect_image  # heavy (cv2): loaded only when pixels are checked

            planes, best = detection_planes(anim), 1.0
            for plane in planes:
                mark = detect_image(plane, key=key)
                if mark.found:
                    break
                best = min(best, mark.p_value)
            else:  # nothing decoded: a pilot alone counts only past the threshold divided by the planes tried
                best = min(1.0, best * len(planes))
                mark = WatermarkResult(False, None, None, best, unreadable=best < P_THRESHOLD)
        return Findings(tokens=tokens, fields=values, watermark=mark, state=anim)

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        if isinstance(findings.state, Undecodable):
            return LabelMatch(False, False, f"the picture no longer decodes ({findings.state.reason})")
        record = label.warning or {}
        box = list(record["box"]) if record.get("kind") == "overlay" and "box" in record else None
        if isinstance(findings.state, Animation):
            return self.check_animation(findings.state, label, record, box)
        if label.binding is not None and label.binding.get("alg") in ANIMATION_ALGS:  # one frame kept of an animation
            frames = label.binding.get("frames")
            return LabelMatch(
                False, False, f"the label was signed over an animation of {frames} frames, this is a still"
            )
        content, detail, exact = picture_matches(findings.state, label.binding, box)
        if record.get("kind") != "overlay":
            return LabelMatch(content, None, "; ".join(filter(None, (detail, "no warning recorded"))), exact)
        ok = visible.region_matches(findings.state, record)
        seen = "warning region matches" if ok else "warning region changed"
        return LabelMatch(content, ok, "; ".join(filter(None, (detail, seen))), exact)

    def check_animation(
        self, anim: Animation, label: Label, record: Mapping[str, Any], box: list[float] | None
    ) -> LabelMatch:
        binding = label.binding
        if binding is not None and binding.get("alg") not in ANIMATION_ALGS:  # a still's label on an animation
            return LabelMatch(False, False, "the label was signed over a still picture, this is an animation")
        content, detail, exact = animation_matches(anim, binding, box)
        if record.get("kind") != "overlay":
            return LabelMatch(content, None, "; ".join(filter(None, (detail, "no warning recorded"))), exact)
        ok = warning_matches(anim, record, label)
        seen = "warning on every frame" if ok else "warning missing or altered on a frame"
        return LabelMatch(content, ok, "; ".join(filter(None, (detail, seen))), exact)

    def read_training(self, inp: Input, limits: Limits) -> list[TrainingSignal]:
        values = xmp_values(self.source_xmp(inp.data))
        found = [
            signal_from_plus(values.get("plus:DataMining")),
            signal_from_tdmrep(values.get("tdm:reservation"), values.get("tdm:policy"), "XMP tdm:reservation"),
        ]
        return [s for s in found if s is not None]

    def write_training(self, data: bytes, policy: TrainingPolicy, limits: Limits) -> bytes:
        self.open_image(Input(data), limits)
        return self.put_xmp(data, merge_xmp(self.source_xmp(data), training_values(policy), TRAINING_PROPS))


def _reuse_unchanged(before: np.ndarray, source: np.ndarray, marked_before: np.ndarray, marked: np.ndarray) -> Any:
    """``marked`` with every block whose source pixels equal the previous frame's taken from the previous marked
    frame: unchanged regions stay byte-identical, so the encoder writes only the changed rectangle and leaves its still
    blocks out (the mark is the same keyed pattern on every frame, so the mix still carries it)."""
    h, w = source.shape[:2]
    b = _DELTA_BLOCK
    same = (before == source).reshape(h, w, -1).all(axis=2)
    ph, pw = -h % b, -w % b
    padded = np.pad(same, ((0, ph), (0, pw)), constant_values=True)
    blocks = padded.reshape((h + ph) // b, b, (w + pw) // b, b).all(axis=(1, 3))
    keep = np.repeat(np.repeat(blocks, b, axis=0), b, axis=1)[:h, :w]
    out = marked.copy()
    out[keep] = marked_before[keep]
    return out


def _bare_box(
    source: np.ndarray,
    marked: np.ndarray,
    box: tuple[int, int, int, int],
    payload: bytes,
    key: bytes | None,
    check: bool,
) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """``marked`` with the warning's ``box`` (x, y, w, h) given back its unmarked pixels, and the box to leave bare
    on the next frames; with ``check``, only if the frame still reads after JPEG quality 75 with MARK_MARGIN to spare
    (else ``marked`` as it was, and None).

    A lossless format stores the mark's noise as it is, and the warning's glyph edges, where texture masking puts
    the most amplitude, cost the most: on the bundled APNG the frames with the box marked were 1.61x the source and
    1.47x without it (watermark p ~1e-35 either way, JPEG 75 2.6e-12 -> 1.9e-11). On a flat cartoon the text is the
    only texture and the mark no longer survived JPEG 75 without it: the check keeps it there."""
    x, y, w, h = box
    bare = marked.copy()
    bare[y : y + h, x : x + w] = source[y : y + h, x : x + w]
    if check:
        from ...watermark.image import detect_after_jpeg

        found = detect_after_jpeg(bare, key=key)
        if found.payload != payload or found.p_value >= MARK_MARGIN:
            return marked, None
    return bare, box
