"""Animated GIF, WebP, APNG and AVIF sequences: every layer on every frame, read back by us and by independent readers,
timing kept, the label bound to every frame (an edited frame is tampered, a re-encode is not).

The samples are fixtures/animated/ (fixtures/make_samples.py): six 512×400 frames (the still watermark's 0.2-Mpx
floor) with durations 80-200 ms. Marking one takes 1-3 s, so each is marked once per module; the GIF runs in the
quick suite and the others in the slow one.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
from pathlib import Path

import encypher_c2pa
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from kzlabel import Labeler, Verdict
from kzlabel.containers import bmff, png
from kzlabel.errors import KzlabelError, LimitExceeded, UnsupportedFormat
from kzlabel.formats import detect
from kzlabel.io import Input, Limits
from kzlabel.layers import c2pa as c2pa_layer
from kzlabel.report import Status

HERE = Path(__file__).resolve().parent.parent / "fixtures" / "animated"
LEGACY = HERE.parent / "legacy"
DURATIONS = [80, 120, 80, 120, 80, 200]
# the frames' size (marked with the warning and the watermark only) over the source's, for the fixed content id below
# (docs/images.md#animated-images has the spread over content ids: the WebP 0.98-1.18x): ±15 %, but lossy WebP, which
# keeps the mark in every frame only at a higher quality for some ids, and lossless APNG, where the mark's ±1 levels
# of noise cost deflate on a smooth animation that moves everywhere: 1.46-1.47x over six ids (main before session 13:
# 1.74-1.75x, the warning's box marked, Pillow's writer); the GIF 0.89-0.90x (main: 0.96-0.97x)
FRAMES_BOUND = {"anim.gif": (0.85, 0.93), "anim.webp": (0.85, 1.2), "anim.png": (0.85, 1.52), "anim.avif": (0.85, 1.15)}
# the label (in XMP and in the manifest) and the C2PA manifest: a fixed cost, 11.1-11.4 kB on these samples with this
# content id and a key like the tests' (12.1-12.5 kB while the manifest repeated the compact token; 21.5 kB with
# kz-animation-1's thumbnail and grids)
METADATA_MAX = 12_000
SLOW = {"anim.webp", "anim.png", "anim.avif"}
SAMPLES = [pytest.param(n, id=n, marks=pytest.mark.slow if n in SLOW else ()) for n in sorted(FRAMES_BOUND)]
CONTENT_ID = "5a17c0ffee2b9d41"  # fixed, so the watermark and the sizes are the same on every run

_MARKED: dict[str, tuple[Path, object]] = {}


def _mark(name: str, tmp: Path, signer, trust) -> tuple[Path, object]:
    if name not in _MARKED:
        lab = Labeler(signer, owner="Test Owner LLP", system="GenModel 2", trust=trust)
        dst = tmp / name
        label = lab.new_label().replace(content_id=CONTENT_ID)
        _MARKED[name] = (dst, lab.mark(HERE / name, dst, label=label))
    return _MARKED[name]


@pytest.fixture(scope="module")
def outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("animated")


def _frames(data: bytes) -> tuple[list[Image.Image], list[int], object]:
    im = Image.open(io.BytesIO(data))
    frames, durations = [], []
    for i in range(im.n_frames):
        im.seek(i)
        im.load()
        frames.append(im.convert("RGBA"))
        durations.append(round(float(im.info.get("duration") or 0)))
    return frames, durations, im.info.get("loop")


def _resave(name: str, frames: list[Image.Image], durations: list[int], marked: bytes) -> bytes:
    """The frames encoded again by Pillow, as a platform would, with the marked file's XMP and label put back."""
    handler = detect(Input(marked))
    buf = io.BytesIO()
    params: dict = {"save_all": True, "append_images": frames[1:], "duration": durations}
    if name == "anim.gif":
        frames = [f.convert("RGB").quantize(256) for f in frames]
        params["append_images"] = frames[1:]
    elif name == "anim.webp":
        params["quality"] = 90
    elif name == "anim.avif":
        params |= {"quality": 90, "speed": 8}
    frames[0].save(buf, format={"gif": "GIF", "webp": "WEBP", "png": "PNG", "avif": "AVIF"}[handler.id], **params)
    packet = handler.get_xmp(marked)
    assert packet is not None
    out = handler.put_xmp(buf.getvalue(), packet)
    token = png.get_label(marked) if handler.id == "png" else None
    return png.put_label(out, token) if token else out  # an APNG's signed label has a chunk of its own


@pytest.mark.parametrize("name", SAMPLES)
def test_round_trip_keeps_frames_timing_and_every_layer(name, outdir, signer, trust):
    dst, res = _mark(name, outdir, signer, trust)
    assert set(res.layers) == {"visible", "watermark", "metadata", "c2pa"}, res.skipped
    src_frames, src_durations, src_loop = _frames((HERE / name).read_bytes())
    frames, durations, loop = _frames(dst.read_bytes())
    assert len(frames) == len(src_frames) == len(DURATIONS)
    assert durations == src_durations == DURATIONS
    if name == "anim.avif":  # Pillow reads no AVIF loop count: the edit list's (libavif's reading), 0 = for ever
        assert bmff.sequence_loop(dst.read_bytes()) == bmff.sequence_loop((HERE / name).read_bytes()) == 0
    else:
        assert loop == src_loop
    source = (HERE / name).stat().st_size
    pixels_only = Labeler(signer, owner="O", system="S", layers=["visible", "watermark"])
    coded = len(pixels_only.mark(HERE / name, label=res.label).data)
    low, high = FRAMES_BOUND[name]
    assert low <= coded / source <= high, f"{name}: frames {coded / source:.2f}× the source"
    assert dst.stat().st_size - coded <= METADATA_MAX, f"{name}: {dst.stat().st_size - coded} bytes of metadata"
    report = Labeler(trust=trust).verify(dst)
    assert report.verdict == Verdict.COMPLIANT, report.evidence
    lines = {e.layer: e for e in report.evidence}
    assert lines["c2pa"].status == Status.TRUSTED and lines["metadata"].status == Status.TRUSTED
    assert lines["watermark"].data["payload"] == res.label.content_id
    assert lines["visible"].status == Status.FOUND
    assert res.label.binding["alg"] == "kz-animation-2" and res.label.binding["frames"] == len(DURATIONS)


@pytest.mark.parametrize("name", SAMPLES)
def test_any_single_frame_carries_the_watermark(name, outdir, signer, trust):
    """A frame taken out of the animation (a platform's poster frame) still names the label."""
    from kzlabel.watermark import detect_image

    dst, res = _mark(name, outdir, signer, trust)
    frames, _, _ = _frames(dst.read_bytes())
    for i in range(len(frames)):
        found = detect_image(np.asarray(frames[i].convert("RGB")))
        assert found.found and found.payload.hex() == res.label.content_id, (i, found.p_value)
    # the frame saved as a still: without metadata the mark is what is left; with the label put back, the label does
    # not vouch for one frame of the animation it was signed over
    buf = io.BytesIO()
    frames[3].convert("RGB").save(buf, "PNG")
    lab = Labeler(trust=trust)
    assert lab.verify(buf.getvalue(), name="frame.png").verdict == Verdict.STRIPPED
    packet = detect(Input(dst.read_bytes())).get_xmp(dst.read_bytes())
    with_label = detect(Input(buf.getvalue())).put_xmp(buf.getvalue(), packet)
    token = png.get_label(dst.read_bytes()) if name.endswith(".png") else None
    if token:  # an APNG's signed label is in a chunk of its own (ffmpeg's probe budget: docs/images.md)
        with_label = png.put_label(with_label, token)
    report = lab.verify(with_label, name="frame.png")
    assert report.verdict == Verdict.TAMPERED and "signed over an animation of 6 frames" in str(report.evidence)


@pytest.mark.parametrize("name", SAMPLES)
def test_an_edited_frame_is_tampered_and_a_re_encode_is_not(name, outdir, signer, trust):
    dst, res = _mark(name, outdir, signer, trust)
    marked = dst.read_bytes()
    frames, durations, _ = _frames(marked)
    lab = Labeler(trust=trust)
    same = lab.verify(_resave(name, frames, durations, marked), name=name)
    assert same.verdict != Verdict.TAMPERED, same.evidence
    assert same.verdict == Verdict.COMPLIANT, same.evidence
    edited = [f.copy() for f in frames]
    ImageDraw.Draw(edited[3]).rectangle((300, 60, 380, 130), fill=(20, 200, 40, 255))  # ~2.7 % of one frame
    report = lab.verify(_resave(name, edited, durations, marked), name=name)
    assert report.verdict == Verdict.TAMPERED, report.evidence
    meta = next(e for e in report.evidence if e.layer == "metadata")
    assert "frame 4 of 6" in meta.detail


@pytest.mark.parametrize("name", SAMPLES)
def test_exiftool_reads_our_tags_without_warning_and_strip_keeps_an_earned_verdict(name, outdir, signer, trust):
    exiftool = shutil.which("exiftool")
    assert exiftool, "exiftool is not installed (scripts/setup.sh installs it)"
    dst, _ = _mark(name, outdir, signer, trust)
    out = subprocess.run(
        [exiftool, "-validate", "-warning", "-error", "-a", str(dst)], capture_output=True, text=True, check=True
    ).stdout
    assert "Warning" not in out and "Error" not in out and ": OK" in out, out
    tags = subprocess.run([exiftool, "-a", "-G1", "-XMP:all", str(dst)], capture_output=True, text=True).stdout
    assert "Digital Source Type" in tags and "AIGC" in tags.upper(), tags[:300]
    mime = detect(Input(path=dst)).mime
    state = c2pa_layer.read(io.BytesIO(dst.read_bytes()), mime, None)
    assert state.present and state.state == "valid", state.codes
    ext = encypher_c2pa.verify(dst.read_bytes(), mime, trust_pem=trust.pem(), no_default_trust=True, telemetry=False)
    assert (ext["integrity"], ext["signature"], ext["hard_binding"]) == ("valid", "valid", "match")
    stripped = outdir / f"stripped-{name}"
    run = subprocess.run([exiftool, "-all=", "-o", str(stripped), str(dst)], capture_output=True, text=True)
    if run.returncode != 0:  # exiftool cannot write this type: nothing to strip
        assert "not yet supported" in run.stderr or "Can't" in run.stderr, run.stderr
        return
    report = Labeler(trust=trust).verify(stripped)
    lines = {e.layer: e for e in report.evidence}
    # no pixel changed: the verdict is what the remaining layers earn, never tampered
    if lines["metadata"].status == Status.ABSENT:
        assert report.verdict == Verdict.STRIPPED, report.evidence
    else:
        assert report.verdict == Verdict.COMPLIANT, report.evidence


def test_animated_tiff_and_heif_stay_refused():
    """Multi-page TIFF is a document, not an animation: still refused rather than flattened."""
    frames = [Image.new("RGB", (300, 300), (i * 40, 80, 120)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "TIFF", save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedFormat, match="animated"):
        Labeler(owner="O", system="S").verify(buf.getvalue(), name="pages.tiff")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(min_value=0.0, max_value=1.0), junk=st.binary(max_size=16))
def test_truncated_animation_raises_only_kzlabel_errors(signer, cut, junk):
    data = (HERE / "anim.gif").read_bytes()
    broken = data[: int(len(data) * cut)] + junk
    lab = Labeler(signer, owner="O", system="S", layers=["visible", "metadata"])
    for call in (lambda: lab.mark(broken, name="anim.gif"), lambda: lab.verify(broken, name="anim.gif")):
        with contextlib.suppress(KzlabelError):
            call()


def test_frames_over_the_pixel_limit_are_refused():
    limits = Limits(max_pixels=6 * 512 * 400 - 1)  # one frame fits, the six do not
    with pytest.raises(LimitExceeded, match="6 frames"):
        Labeler(owner="O", system="S", limits=limits).verify(HERE / "anim.gif")


def test_marking_a_marked_animation_again_keeps_one_label(outdir, signer, trust):
    dst, _ = _mark("anim.gif", outdir, signer, trust)
    again = Labeler(signer, owner="Other LLP", system="Edit 1", trust=trust).mark(dst)
    assert {"metadata", "c2pa", "visible"} <= set(again.layers), again.skipped
    report = Labeler(trust=trust).verify(again.data, name="again.gif")
    assert report.verdict == Verdict.COMPLIANT, report.evidence
    assert report.label is not None and report.label.owner == "Other LLP"
    assert Image.open(io.BytesIO(again.data)).n_frames == len(DURATIONS)


def _sticker(size: tuple[int, int], frames: int = 4) -> bytes:
    """A flat transparent sticker (a ball rolling over a bar), disposal 2 (restore to background), as chat apps use."""
    out = []
    for i in range(frames):
        im = Image.new("RGBA", size, (0, 0, 0, 0))
        d = ImageDraw.Draw(im)
        w, h = size
        d.ellipse(
            (w // 5 + 12 * i, h // 5, w // 2 + 12 * i, h // 2 + h // 5),
            fill=(230, 120, 40, 255),
            width=4,
            outline=(40, 40, 40, 255),
        )
        d.rectangle((w // 10, 3 * h // 4, 9 * w // 10, 19 * h // 20), fill=(60, 160, 90, 255))
        out.append(im)
    buf = io.BytesIO()
    out[0].save(buf, "GIF", save_all=True, append_images=out[1:], duration=100, loop=0, disposal=2)
    return buf.getvalue()


@pytest.mark.parametrize(
    "size", [pytest.param((512, 400), id="flat", marks=pytest.mark.slow), pytest.param((200, 160), id="below-floor")]
)
def test_flat_or_small_transparent_sticker_gets_every_layer_it_can_carry(size, signer, trust):
    """A flat sticker keeps no mark through its palette, and a small one is under the watermark's floor: the layer is
    skipped with the reason (never claimed), the others applied; transparency and disposal are kept."""
    src = _sticker(size)
    res = Labeler(signer, owner="O", system="S", trust=trust).mark(src, name="sticker.gif")
    assert set(res.layers) == {"visible", "metadata", "c2pa"} and "watermark" in res.skipped, res.skipped
    out, before = Image.open(io.BytesIO(res.data)), Image.open(io.BytesIO(src))
    assert out.n_frames == before.n_frames == 4
    for i in range(4):
        out.seek(i)
        before.seek(i)
        assert out.disposal_method == 2
        clear_out = np.asarray(out.convert("RGBA"))[..., 3] < 128
        clear_src = np.asarray(before.convert("RGBA"))[..., 3] < 128
        assert (clear_out <= clear_src).all()  # transparent only where the source was (the warning covers some)
        assert clear_out.mean() > clear_src.mean() - 0.1
    report = Labeler(trust=trust).verify(res.data, name="sticker.gif")
    assert report.verdict == Verdict.COMPLIANT, report.evidence


def test_ffmpeg_conversion_is_the_same_animation_and_a_retimed_one_is_not(outdir, signer, trust, tmp_path):
    """ffmpeg (a platform's converter) does not keep the last frame's duration: that is not a change; slowing a frame
    down is."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is not installed (scripts/setup.sh installs it)"
    dst, _ = _mark("anim.gif", outdir, signer, trust)
    marked = dst.read_bytes()
    packet = detect(Input(marked)).get_xmp(marked)
    lab = Labeler(trust=trust)
    for out, codec in (("ff.webp", ["-c:v", "libwebp", "-quality", "80", "-loop", "0"]), ("ff.gif", [])):
        subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(dst), *codec, str(tmp_path / out)], check=True)
        data = (tmp_path / out).read_bytes()
        report = lab.verify(detect(Input(data)).put_xmp(data, packet), name=out)
        assert report.verdict == Verdict.COMPLIANT, (out, report.evidence)
    frames, durations, _ = _frames(marked)
    slower = [d * (3 if i == 1 else 1) for i, d in enumerate(durations)]
    report = lab.verify(_resave("anim.gif", frames, slower, marked), name="slow.gif")
    assert report.verdict == Verdict.TAMPERED and "timing changed" in str(report.evidence), report.evidence


def _exiftool_seconds(path: Path) -> float:
    out = subprocess.run(["exiftool", "-n", "-s3", "-TrackDuration", str(path)], capture_output=True, text=True)
    return float(out.stdout.strip())


def test_avif_loop_count_is_written_in_the_edit_list(tmp_path):
    """Pillow's AVIF writer repeats for ever; the loop count goes into the edit list as libavif writes it, which an
    independent reader (exiftool's track duration: the plays times the frames' 0.68 s) reads back."""
    data = (HERE / "anim.avif").read_bytes()
    for plays in (1, 3, 0):
        path = tmp_path / f"loop{plays}.avif"
        path.write_bytes(bmff.set_sequence_loop(data, plays))
        assert bmff.sequence_loop(path.read_bytes()) == plays
        if plays:
            assert _exiftool_seconds(path) == pytest.approx(0.68 * plays)
        else:
            assert _exiftool_seconds(path) > 1e9  # all ones: indefinite


@pytest.mark.slow
def test_avif_loop_count_round_trips(signer, trust, tmp_path):
    src = tmp_path / "three.avif"
    src.write_bytes(bmff.set_sequence_loop((HERE / "anim.avif").read_bytes(), 3))
    res = Labeler(signer, owner="O", system="S", trust=trust).mark(src, tmp_path / "out.avif")
    assert set(res.layers) == {"visible", "watermark", "metadata", "c2pa"}, res.skipped
    assert bmff.sequence_loop(res.data) == 3 and _exiftool_seconds(tmp_path / "out.avif") == pytest.approx(2.04)
    assert Labeler(trust=trust).verify(res.data, name="out.avif").verdict == Verdict.COMPLIANT


def _paint_warning(frame: Image.Image, box: list[float]) -> None:
    w, h = frame.size
    fx, fy, fw, fh = box
    ImageDraw.Draw(frame).rectangle((fx * w, fy * h, (fx + fw) * w, (fy + fh) * h), fill=(120, 160, 200, 255))


def test_the_warning_is_checked_on_every_frame_without_a_thumbnail(outdir, signer, trust):
    """The label records no thumbnail (2.2 kB a copy): the first frame, like the others, is checked against the
    warning drawn again, so a warning painted over on the first frame or on any other is reported."""
    dst, res = _mark("anim.gif", outdir, signer, trust)
    assert "thumb" not in res.label.warning and res.label.warning["frames"] == len(DURATIONS)
    marked = dst.read_bytes()
    frames, durations, _ = _frames(marked)
    lab = Labeler(trust=trust)
    assert lab.verify(_resave("anim.gif", frames, durations, marked), name="a.gif").verdict == Verdict.COMPLIANT
    for index in (0, 4):
        painted = [f.copy() for f in frames]
        _paint_warning(painted[index], res.label.warning["box"])
        report = lab.verify(_resave("anim.gif", painted, durations, marked), name="a.gif")
        assert report.layer("visible").status != Status.FOUND, (index, report.evidence)
        assert report.verdict != Verdict.COMPLIANT, (index, report.evidence)


def test_a_label_written_with_the_first_frames_thumbnail_verifies_as_before(tmp_path):
    """fixtures/legacy/kz-animation-1.gif: marked before the thumbnail was left out and the grids were halved
    (``kz-animation-1``; a small sticker: no watermark). Exactly as signed, re-encoded (its grids unpacked at the old
    budget) and with one frame edited, it verifies as it did; its warning painted over is not found."""
    data = (LEGACY / "kz-animation-1.gif").read_bytes()
    report = Labeler().verify(data, name="legacy.gif")
    assert report.label is not None and "thumb" in report.label.warning
    assert report.label.binding["alg"] == "kz-animation-1"
    assert report.verdict == Verdict.COMPLIANT and report.layer("visible").status == Status.FOUND, report.evidence
    frames, durations, _ = _frames(data)
    brighter = [f.point(lambda v: min(v + 3, 255)) for f in frames]  # a re-encoder's rounding, on every frame
    resaved = Labeler().verify(_resave("anim.gif", brighter, durations, data), name="legacy.gif")
    assert resaved.verdict == Verdict.COMPLIANT, resaved.evidence
    assert "the same 4 frames, re-encoded" in str(resaved.evidence), resaved.evidence
    edited = [f.copy() for f in frames]
    ImageDraw.Draw(edited[2]).rectangle((200, 20, 260, 70), fill=(200, 30, 30, 255))
    report = Labeler().verify(_resave("anim.gif", edited, durations, data), name="legacy.gif")
    assert report.verdict == Verdict.TAMPERED and "frame 3 of 4" in str(report.evidence), report.evidence
    _paint_warning(frames[0], report.label.warning["box"])
    painted = Labeler().verify(_resave("anim.gif", frames, durations, data), name="legacy.gif")
    assert painted.layer("visible").status != Status.FOUND, painted.evidence


def _paletted_apng(colours: int) -> bytes:
    """The bundled AVIF's frames (with grain: a full palette) as a paletted APNG of ``colours`` colours (one PLTE,
    dithered: what converters write)."""
    frames = [f.convert("RGB") for f in _frames((HERE / "anim.avif").read_bytes())[0]]
    palette = frames[0].quantize(colours)
    paletted = [f.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG) for f in frames]
    buf = io.BytesIO()
    paletted[0].save(buf, "PNG", save_all=True, append_images=paletted[1:], duration=DURATIONS, loop=2, optimize=True)
    return buf.getvalue()


@pytest.mark.parametrize("colours", [pytest.param(256, id="full-palette"), pytest.param(48, marks=pytest.mark.slow)])
def test_a_paletted_apng_stays_paletted_with_every_layer(colours, signer, trust, tmp_path):
    """Written as RGB, a paletted APNG grew 2.6-24x (these two: 2.9x and 3.0x; the mark's noise costs deflate what
    the palette saved): its frames go back onto the source's colours plus the warning's (a full palette gives up its
    least-used ones), every frame still carrying the mark, at 1.15x and 1.13x (the bound: that with a margin)."""
    from kzlabel.watermark import detect_image

    src = _paletted_apng(colours)
    res = Labeler(signer, owner="O", system="S", trust=trust).mark(src, name="p.png")
    assert set(res.layers) == {"visible", "watermark", "metadata", "c2pa"}, res.skipped
    out = Image.open(io.BytesIO(res.data))
    assert out.mode == "P" and out.n_frames == len(DURATIONS) and out.info.get("loop") == 2
    frames, durations, _ = _frames(res.data)
    assert durations == DURATIONS
    for i, frame in enumerate(frames):
        found = detect_image(np.asarray(frame.convert("RGB")))
        assert found.payload is not None and found.payload.hex() == res.label.content_id, (i, found.p_value)
    pixels_only = Labeler(signer, owner="O", system="S", layers=["visible", "watermark"])
    plain = pixels_only.mark(src, name="p.png", label=res.label).data
    coded = len(plain)
    # still pixels are left out as the transparent index 255 (blend OVER): ffmpeg composites what Pillow does (on the
    # file without the label: ffmpeg 5.1 probes 2 kB for acTL, and the manifest's caBX chunk comes first)
    decoded, frames = _ffmpeg_frames(plain, tmp_path), _frames(plain)[0]
    assert len(decoded) == len(frames)
    assert all(np.array_equal(d, np.asarray(f)) for d, f in zip(decoded, frames, strict=True))
    assert coded / len(src) <= 1.2, f"frames {coded / len(src):.2f}x the source"
    report = Labeler(trust=trust).verify(res.data, name="p.png")
    assert report.verdict == Verdict.COMPLIANT and report.layer("visible").status == Status.FOUND, report.evidence


def _cinemagraph(fmt: str) -> bytes:
    """Four 512x400 frames of a still grainy gradient with a red square moving across it, as ``fmt`` (GIF: one
    256-colour palette, dithered, as converters write)."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:400, 0:512]
    still = np.stack([x / 4, y / 3, (x + y) / 6], axis=2) + rng.normal(0, 6, (400, 512, 3))
    still = np.clip(still + 40, 0, 255).astype(np.uint8)
    src = []
    for i in range(4):
        frame = still.copy()
        frame[220:268, 40 + 24 * i : 88 + 24 * i] = (230, 40, 40)
        src.append(Image.fromarray(frame))
    if fmt == "GIF":
        palette = src[0].quantize(256)
        src = [f.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG) for f in src]
    buf = io.BytesIO()
    src[0].save(buf, format=fmt, save_all=True, append_images=src[1:], duration=100, loop=0)
    return buf.getvalue()


def test_a_still_region_stays_byte_identical_across_marked_frames(signer, trust, tmp_path):
    """Each frame is marked on its own, but blocks its source shares with the previous frame are taken from the
    previous marked frame: the APNG writer then stores only the moving part (a cinemagraph stays ~1.5x, not 12x), and
    every frame still carries the mark read from it alone."""
    from kzlabel.watermark import detect_image

    (tmp_path / "c.png").write_bytes(_cinemagraph("PNG"))
    lab = Labeler(signer, owner="Test Owner LLP", system="GenModel 2", trust=trust)
    lab.mark(tmp_path / "c.png", tmp_path / "out.png", label=lab.new_label().replace(content_id=CONTENT_ID))
    frames, _, _ = _frames((tmp_path / "out.png").read_bytes())
    arrays = [np.asarray(f.convert("RGB")) for f in frames]
    assert len(arrays) == 4
    for before, after in zip(arrays, arrays[1:], strict=False):
        assert np.array_equal(before[:190], after[:190])  # above the moving square (and the warning, at the bottom)
    assert all(detect_image(a).found for a in arrays)
    with Image.open(tmp_path / "out.png") as im:
        im.seek(2)
        x0, y0, x1, y1 = im.dispose_extent
        assert (x1 - x0) * (y1 - y0) < im.width * im.height / 2  # a delta rectangle, not a whole frame


def test_a_dithered_full_palette_gif_stores_only_what_moved(signer, trust):
    """A converter's GIF: one 256-colour palette, dithered. Its frames go onto one table (the source's colours plus
    the warning's, index 255 free), still pixels keep their index, and the GIF writer leaves them out: 0.65x the
    source (main: an adaptive palette a frame, re-dithered everywhere, 0.92x; one full table, 0.99x)."""
    from kzlabel.watermark import detect_image

    src = _cinemagraph("GIF")
    res = Labeler(signer, owner="O", system="S", trust=trust).mark(src, name="c.gif")
    assert set(res.layers) == {"visible", "watermark", "metadata", "c2pa"}, res.skipped
    frames, durations, loop = _frames(res.data)
    assert durations == [100] * 4 and loop == 0
    for i, frame in enumerate(frames):
        found = detect_image(np.asarray(frame.convert("RGB")))
        assert found.payload is not None and found.payload.hex() == res.label.content_id, (i, found.p_value)
    pixels_only = Labeler(signer, owner="O", system="S", layers=["visible", "watermark"])
    coded = len(pixels_only.mark(src, name="c.gif", label=res.label).data)
    assert coded / len(src) <= 0.75, f"frames {coded / len(src):.2f}x the source"
    assert Labeler(trust=trust).verify(res.data, name="c.gif").verdict == Verdict.COMPLIANT


def _ffmpeg_frames(data: bytes, tmp_path: Path) -> np.ndarray:
    """Every frame of an APNG as ffmpeg composites it (RGBA; one per stored frame, none repeated for timing)."""
    path = tmp_path / "ffmpeg-in.png"
    path.write_bytes(data)
    w, h = Image.open(io.BytesIO(data)).size
    command = ["ffmpeg", "-v", "error", "-i", str(path), "-fps_mode", "passthrough", "-f", "rawvideo"]
    raw = subprocess.run([*command, "-pix_fmt", "rgba", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 4)


def test_apng_frames_leave_still_blocks_out_and_decode_alike_in_ffmpeg(signer, tmp_path):
    """kzlabel writes APNG frames itself: the rectangle that changed, its still 16x16 blocks transparent (an RGB
    animation's tRNS colour key) with blend OVER. Pillow and ffmpeg composite every frame to the same pixels, and the
    frames keep the mark."""
    from kzlabel.watermark import detect_image

    lab = Labeler(signer, owner="O", system="S", layers=["visible", "watermark"])
    out = lab.mark(_cinemagraph("PNG"), name="c.png", label=lab.new_label().replace(content_id=CONTENT_ID)).data
    frames, durations, _ = _frames(out)
    with Image.open(io.BytesIO(out)) as im:
        assert im.mode == "RGB" and len(im.info["transparency"]) == 3  # the colour key
        for i in range(1, im.n_frames):
            im.seek(i)
            assert im.info["blend"] == 1, i  # OVER: the still blocks show the previous frame
    decoded = _ffmpeg_frames(out, tmp_path)
    assert len(decoded) == len(frames) == 4 and durations == [100] * 4
    for i, frame in enumerate(frames):
        assert np.array_equal(decoded[i], np.asarray(frame)), i
        assert detect_image(np.asarray(frame.convert("RGB"))).payload.hex() == CONTENT_ID, i


def test_an_apng_disposed_to_the_previous_frame_shows_the_warning_on_every_frame(signer, trust, tmp_path):
    """A transparent sticker whose frames are disposed to the previous frame (APNG dispose op 2): the frames are
    written against the canvas a decoder shows after each disposal, so every frame keeps the warning (Pillow's writer,
    given the composited frames and these ops, lost it on frames 3-5), and ffmpeg composites what Pillow does."""
    frames = []
    for i in range(5):
        im = Image.new("RGBA", (512, 400), (0, 0, 0, 0))
        draw = ImageDraw.Draw(im)
        draw.rectangle((0, 300, 512, 340), fill=(40, 90, 200, 255))
        draw.ellipse((40 + 60 * i, 150, 160 + 60 * i, 270), fill=(230, 60, 40, 255))
        frames.append(im)
    buf = io.BytesIO()
    frames[0].save(buf, "PNG", save_all=True, append_images=frames[1:], duration=100, loop=0, disposal=2, blend=0)
    res = Labeler(signer, owner="O", system="S", trust=trust).mark(buf.getvalue(), name="s.png")
    with Image.open(io.BytesIO(res.data)) as im:
        assert im.n_frames == 5 and im.info["disposal"] == 2
    report = Labeler(trust=trust).verify(res.data, name="s.png")
    assert report.layer("visible").status == Status.FOUND and report.verdict == Verdict.COMPLIANT, report.evidence
    plain = Labeler(signer, owner="O", system="S", layers=["visible", "watermark"]).mark(
        buf.getvalue(), name="s.png", label=res.label
    )
    decoded, shown = _ffmpeg_frames(plain.data, tmp_path), _frames(plain.data)[0]
    assert len(decoded) == len(shown) == 5
    for d, f in zip(decoded, shown, strict=True):
        a = np.asarray(f)
        assert np.array_equal(np.where(d[..., 3:] == 0, 0, d), np.where(a[..., 3:] == 0, 0, a))
