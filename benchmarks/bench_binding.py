"""What the content binding of labels costs and what it tells apart.

Audio, video and PDF (``--part av``): mark and verify CPU time with the binding (target) beside the same run with
each handler's ``bind`` / binding check reduced to what it did before (peer: the warning record only, no digest,
fingerprint or thumbnails), and the size of the signed label. Sources are generated: 30 s of the test music as WAV and
MP3 (44.1 kHz stereo), 4 s of ffmpeg's testsrc2 at 640×360/25 fps with a sine soundtrack as MP4, and the bundled
two-page report.pdf. CPU time (process_time) is the median of the repetitions.

Images (``--part images``): kz-picture-2's cost on a 1080p JPEG against kz-picture-1 and no binding; the verdict per
sample and per platform transformation (the label carried over into the transformed file, as a platform that keeps
metadata would); the byte-flip sweep over JPEG entropy data (pixels changed, visibly damaged — ≥ 0.5 % of the
picture outside the warning moved by > 16 levels in some channel — and tampered), under kz-picture-2 and kz-picture-1;
local edits (patch, clone, text, swapped face, inpainted object) of 1, 2 and 5 % of the area in every image format.
Image sources: the bundled samples, generated photos, posters and screenshots (fixtures/image_signals.py) at
0.1-0.8 MP, and skimage.data photographs when scikit-image is installed.

Run ``python benchmarks/bench_binding.py`` (``--quick``: one repetition, fewer samples and flips).
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, JpegImagePlugin

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "fixtures" / "samples"
sys.path.insert(0, str(ROOT / "fixtures"))
import audio_signals  # noqa: E402
from image_signals import flat_poster, natural_like, text_page, ui_screenshot  # noqa: E402
from picture_v1 import picture_binding_v1  # noqa: E402

import kzlabel  # noqa: E402
from kzlabel import formats, picture  # noqa: E402
from kzlabel.containers import jpeg as jpeg_container  # noqa: E402
from kzlabel.containers import riff  # noqa: E402
from kzlabel.formats.base import LabelMatch  # noqa: E402
from kzlabel.formats.image import base as image_base  # noqa: E402
from kzlabel.formats.image.binding import picture_binding, picture_body, picture_matches  # noqa: E402
from kzlabel.keys import Signer, generate  # noqa: E402
from kzlabel.picture import PictureGrid, match_picture  # noqa: E402


def ffmpeg(*args: object, data: bytes | None = None) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], input=data, check=True)


def sources(tmp: Path) -> dict[str, Path]:
    x = audio_signals.music(30.0, 44100, seed=1)
    raw = x.astype(np.float32).tobytes()
    out = {"wav": tmp / "a.wav", "mp3": tmp / "a.mp3", "mp4": tmp / "v.mp4", "pdf": SAMPLES / "report.pdf"}
    ffmpeg("-f", "f32le", "-ar", 44100, "-ac", 2, "-i", "-", "-c:a", "pcm_s16le", out["wav"], data=raw)
    ffmpeg("-f", "f32le", "-ar", 44100, "-ac", 2, "-i", "-", "-c:a", "libmp3lame", "-b:a", "192k", out["mp3"], data=raw)
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
        "-t",
        "4",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        out["mp4"],
    )
    return out


@contextmanager
def unbound(handler: Any):
    """The handler as before the binding: ``bind`` records the warning only, ``check_label`` compares nothing."""
    cls = type(handler)
    bind, check = cls.bind, cls.check_label

    def plain_bind(self: Any, doc: Any, out: Path) -> dict[str, Any]:
        fields = dict(bind(self, doc, out))
        fields.pop("binding", None)
        return fields

    def plain_check(self: Any, findings: Any, label: Any) -> LabelMatch:
        return check(self, findings, label.replace(binding=None))

    cls.bind, cls.check_label = plain_bind, plain_check  # type: ignore[method-assign]
    try:
        yield
    finally:
        cls.bind, cls.check_label = bind, check  # type: ignore[method-assign]


def timed(fn: Any, reps: int) -> tuple[float, Any]:
    runs, result = [], None
    for _ in range(reps):
        c0 = time.process_time()
        result = fn()
        runs.append(time.process_time() - c0)
    return statistics.median(runs), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--part", choices=("all", "av", "images"), default="all")
    args = parser.parse_args()
    reps = 1 if args.quick else 3
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        generate(tmp / "keys", organization="Bench")
        lab = kzlabel.Labeler(Signer.load(tmp / "keys"), owner="O", system="S")
        if args.part in ("all", "av"):
            av(lab, tmp, reps)
        if args.part in ("all", "images"):
            images(lab, tmp, reps, quick=args.quick)


def av(lab: kzlabel.Labeler, tmp: Path, reps: int) -> None:
    """Audio, video and PDF: binding cost against the handler without it."""
    print(
        "| format | mark CPU s, no binding | mark CPU s, bound | extra | verify CPU s, no binding | verify, bound "
        "| label bytes, no binding | bound |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind, src in sources(tmp).items():
        handler = formats.detect(kzlabel.io.Input(path=src))
        dst = tmp / f"out.{kind}"
        with unbound(handler):
            mark0, res0 = timed(lambda src=src, dst=dst: lab.mark(src, dst), reps)
            verify0, _ = timed(lambda dst=dst: lab.verify(dst), reps)
        mark1, res1 = timed(lambda src=src, dst=dst: lab.mark(src, dst), reps)
        verify1, rep = timed(lambda dst=dst: lab.verify(dst), reps)
        assert rep.verdict == kzlabel.Verdict.COMPLIANT, str(rep)
        extra = (mark1 - mark0) / mark0 * 100
        print(
            f"| {kind} | {mark0:.2f} | {mark1:.2f} | {extra:+.0f}% | {verify0:.2f} | {verify1:.2f} "
            f"| {len(res0.token)} | {len(res1.token)} |"
        )


# ------------------------------------------------------------------------------------------------------------ images
VERDICT = {
    "compliant": "C",
    "tampered": "T",
    "machine_readable_only": "M",
    "warning_only": "W",
    "stripped": "S",
    "unlabelled": "U",
}
EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "TIFF": "tiff", "GIF": "gif", "AVIF": "avif", "HEIF": "heic"}


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def image_sources(quick: bool) -> dict[str, bytes]:
    """Bundled samples, then generated content: photos with fine texture, flat posters with sharp coloured edges,
    text and UI screenshots, and 0.1-megapixel versions of each."""
    out = {}
    for name in (
        "photo.jpg",
        "drawing.png",
        "poster.webp",
        "scan.tiff",
        "sticker.gif",
        "picture.avif",
        "snapshot.heic",
    ):
        if name.endswith(".heic") and not formats.image.heif_codec_available():
            continue
        out[name] = (SAMPLES / name).read_bytes()
    generated: list[tuple[str, np.ndarray, str, dict[str, Any]]] = [
        ("photo 1024x768", natural_like(768, 1024, 2), "JPEG", {"quality": 90}),
        ("poster 1200x800", flat_poster(800, 1200, 4), "PNG", {}),
        ("screenshot 1280x800", text_page(1280, 800, 5), "PNG", {}),
        ("ui 1200x800", ui_screenshot(1200, 800, 7), "WEBP", {"quality": 90}),
        ("small photo 390x260", natural_like(260, 390, 8), "WEBP", {"quality": 90}),
        ("small poster 340x300", flat_poster(300, 340, 9), "JPEG", {"quality": 90}),
        ("small text 400x260", text_page(400, 260, 10), "PNG", {}),
    ]
    if not quick:
        generated += [
            ("dark text 1000x700", text_page(1000, 700, 6, bg=30, fg=220), "JPEG", {"quality": 90}),
            ("landscape 1080x720", natural_like(720, 1080, 3), "WEBP", {"lossless": True}),
            ("screenshot 1280x800 q95 444", text_page(1280, 800, 11), "JPEG", {"quality": 95, "subsampling": 0}),
        ]
        try:
            from skimage import data as skdata
        except ImportError:
            skdata = None
        for name, fmt, params in (
            ("astronaut", "JPEG", {"quality": 85}),
            ("coffee", "PNG", {}),
            ("chelsea", "WEBP", {"quality": 80}),
            ("rocket", "JPEG", {"quality": 85}),
        ):
            if skdata is not None:
                picture = np.asarray(Image.fromarray(getattr(skdata, name)()).convert("RGB"))
                generated.append((f"skimage {name}", picture, fmt, params))
    for name, pixels, fmt, params in generated:
        out[f"{name}.{EXT[fmt]}"] = encode(Image.fromarray(pixels), fmt, **params)
    return out


BEYOND = ("jpeg40", "webp50", "avif60", "x0.8 bilinear sharpened")  # beyond the list of platform processing


def platform(image: Image.Image) -> dict[str, tuple[bytes, str]]:
    """What platforms do to an upload (Pillow's JPEG encoder subsamples chroma 4:2:0 unless told otherwise), then,
    beyond the issue's list, coarser re-encodes and a resize with sharpening."""
    w, h = image.size

    def scaled(factor: float, fit: Image.Resampling = Image.Resampling.LANCZOS) -> Image.Image:
        return image.resize((max(1, round(w * factor)), max(1, round(h * factor))), fit)

    out = {f"jpeg{q}": (encode(image, "JPEG", quality=q), "JPEG") for q in (95, 85, 75, 50)}
    out["jpeg85 4:4:4"] = (encode(image, "JPEG", quality=85, subsampling=0), "JPEG")
    out["webp75"] = (encode(image, "WEBP", quality=75), "WEBP")
    out["png"] = (encode(image, "PNG"), "PNG")
    for factor in (0.9, 0.75, 0.5):
        out[f"x{factor}"] = (encode(scaled(factor), "JPEG", quality=85), "JPEG")
    for side in (1080, 512):
        out[f"long {side}"] = (encode(scaled(side / max(w, h)), "JPEG", quality=85), "JPEG")
    out["jpeg40"] = (encode(image, "JPEG", quality=40), "JPEG")
    out["webp50"] = (encode(image, "WEBP", quality=50), "WEBP")
    out["avif60"] = (encode(image, "AVIF", quality=60), "AVIF")
    sharpened = scaled(0.8, Image.Resampling.BILINEAR).filter(ImageFilter.UnsharpMask(1.0, 50, 2))
    out["x0.8 bilinear sharpened"] = (encode(sharpened, "JPEG", quality=85), "JPEG")
    return out


def carried(data: bytes, fmt: str, marked: bytes) -> bytes:
    """``data`` with the marked file's XMP packet (its kzlabel label) put into its container."""
    target = formats.detect(kzlabel.io.Input(data))
    source = formats.detect(kzlabel.io.Input(marked))
    packet = source.get_xmp(marked)
    return target.put_xmp(data, packet) if packet else data


def verdict(lab: kzlabel.Labeler, data: bytes, fmt: str) -> kzlabel.Report:
    return lab.verify(data, name=f"x.{EXT[fmt]}")


def mark_fixed(lab: kzlabel.Labeler, data: bytes, name: str) -> kzlabel.MarkResult:
    """Marked with a fixed content id: the same watermark, so the same pixels (and coded data) from run to run."""
    return lab.mark(data, name=name, label=lab.new_label().replace(content_id="0123456789abcdef"))


@contextmanager
def legacy() -> Iterator[None]:
    """Mark as kzlabel did before kz-picture-2 (kz-picture-1: digest and 16×16 thumbnail)."""
    current = image_base.picture_binding
    image_base.picture_binding = picture_binding_v1  # type: ignore[assignment]
    try:
        yield
    finally:
        image_base.picture_binding = current


def box_of(label: Any) -> list[float] | None:
    record = label.warning or {}
    return list(record["box"]) if record.get("kind") == "overlay" else None


def body_mask(size: tuple[int, int], box: list[float] | None) -> np.ndarray:
    """The pixels outside the warning's (blanked) box: where damage is the picture's, not the warning's."""
    w, h = size
    keep = np.ones((h, w), bool)
    if box:
        fx, fy, fw, fh = box
        keep[max(0, int(fy * h) - 1) : int((fy + fh) * h) + 2, max(0, int(fx * w) - 1) : int((fx + fw) * w) + 2] = False
    return keep


def image_costs(lab: kzlabel.Labeler, tmp: Path, reps: int) -> None:
    src = tmp / "p1080.jpg"
    src.write_bytes(encode(Image.fromarray(natural_like(1080, 1920, 1)), "JPEG", quality=90))
    dst = tmp / "p1080.out.jpg"
    handler = formats.detect(kzlabel.io.Input(path=src))
    rows = []
    for name, ctx in (
        ("no binding", lambda: unbound(handler)),
        ("kz-picture-1", legacy),
        ("kz-picture-2", nullcontext),
    ):
        with ctx():
            mark, res = timed(lambda: lab.mark(src, dst), reps)
            check, rep = timed(lambda: lab.verify(dst), reps)
        assert rep.verdict == kzlabel.Verdict.COMPLIANT, str(rep)
        rows.append((name, mark, check, len(res.token), len(dst.read_bytes())))
    print("\n1920×1080 JPEG q90, CPU s (median of", reps, "):\n")
    print("| binding | mark | verify | label (JWS) bytes | file bytes |")
    print("|---|---|---|---|---|")
    for name, mark, check, token, size in rows:
        print(f"| {name} | {mark:.3f} | {check:.3f} | {token} | {size} |")
    # the binding alone, warm: CPU time (process_time), the variants interleaved, median of 30
    marked = decode(dst.read_bytes())
    box = box_of(res.label)
    same = decode(encode(marked, "JPEG", quality=75))
    small = marked.resize((1280, 720), Image.Resampling.LANCZOS)
    v1 = picture_binding_v1(marked, box)
    v2 = picture_binding(marked, box)
    work = {
        "bind (mark)": (lambda: picture_binding_v1(marked, box), lambda: picture_binding(marked, box)),
        "check a q75 re-encode (verify)": (
            lambda: picture_matches(same, v1, box),
            lambda: picture_matches(same, v2, box),
        ),
        "check a 1280x720 resize (verify)": (
            lambda: picture_matches(small, v1, box),
            lambda: picture_matches(small, v2, box),
        ),
    }
    runs: dict[tuple[str, int], list[float]] = {(k, i): [] for k in work for i in (0, 1)}
    for _ in range(30):
        for what, pair in work.items():
            for i, fn in enumerate(pair):
                t0 = time.process_time()
                fn()
                runs[what, i].append(time.process_time() - t0)
    print("\n| the binding alone, 1080p, CPU ms (median of 30) | kz-picture-1 | kz-picture-2 | extra |")
    print("|---|---|---|---|")
    for what in work:
        one, two = (statistics.median(runs[what, i]) * 1000 for i in (0, 1))
        print(f"| {what} | {one:.1f} | {two:.1f} | {two - one:+.1f} |")


def transformations(lab: kzlabel.Labeler, tmp: Path, sources: dict[str, bytes]) -> None:
    """Verdicts, the label's size, and the largest change the grid saw on these benign transformations (as a share of
    its tolerance: 1.0 would be called tampered)."""
    exiftool = shutil.which("exiftool")
    header = None
    bad = []
    worst: dict[str, tuple[float, str]] = {}
    print("\nVerdict per sample and transformation (C compliant, T tampered, M machine-readable only, S stripped; the")
    print("columns after exiftool go beyond the issue's list),")
    print("the size of the grid (base64 characters in the payload) and of the whole label (JWS characters):\n")
    for name, data in sources.items():
        res = mark_fixed(lab, data, name)
        marked = res.data
        signed = PictureGrid.unpack(res.label.binding)
        box = box_of(res.label)
        cells = {}
        for what, (out, fmt) in platform(decode(marked)).items():
            cells[what] = verdict(lab, carried(out, fmt, marked), fmt)
            found = match_picture(signed, picture_body(decode(out), box), box).data
            tier = "same size" if decode(out).size == signed.size else "resized"
            for key, (stat, tol) in grid_tolerances(tier == "same size").items():
                if found[stat] / tol > worst.get(key, (-1.0, ""))[0]:
                    worst[key] = (found[stat] / tol, f"{found[stat]} levels, {name} {what}")
            if found["share"] > worst.get(tier, (-1.0, ""))[0]:
                worst[tier] = (found["share"], f"{name} {what}")
        if exiftool:
            path = tmp / f"strip.{name.rsplit('.', 1)[1]}"
            path.write_bytes(marked)
            subprocess.run([exiftool, "-q", "-q", "-overwrite_original", "-all=", str(path)], check=False, timeout=60)
            cells["exiftool -all="] = lab.verify(path)
        if header is None:
            header = [k for k in cells if k not in BEYOND] + [k for k in BEYOND if k in cells]
            print("| sample | " + " | ".join(header) + " | grid b64 | label |")
            print("|---|" + "---|" * (len(header) + 2))
        verdicts = " | ".join(VERDICT[cells[k].verdict.value] for k in header)
        print(f"| {name} | {verdicts} | {len(res.label.binding['cells'])} | {len(res.token)} |")
        bad += [
            (name, k, str(r.layer("metadata").data.get("content", r.layer("metadata").detail)))
            for k, r in cells.items()
            if r.verdict.value == "tampered"
        ]
    print(f"\nbenign transformations reported tampered: {len(bad)}")
    for item in bad:
        print("  -", *item)
    print("largest change seen, as a share of its tolerance (same size, resized: the decisive share; over 1: changed):")
    for key, (share, where) in worst.items():
        print(f"  - {key}: {share:.2f} ({where})")


def grid_tolerances(same_size: bool) -> dict[str, tuple[str, float]]:
    """Per statistic the comparison a picture gets (kzlabel.picture): its key in PictureMatch.data and its tolerance.
    Resized blocks also get a contrast allowance on top, so their share here is an upper bound ("resized" has the
    real one)."""
    if same_size:
        return {
            "same size, cell luma": ("luma", picture.LUMA_TOL),
            "same size, cell chroma": ("chroma", picture.CHROMA_TOL),
            "same size, cell detail": ("detail", picture.DETAIL_TOL),
        }
    return {
        "resized, block luma": ("luma", picture.RESIZED_TOL),
        "resized, block chroma": ("chroma", picture.RESIZED_TOL),
    }


def coded_span(data: bytes) -> tuple[int, int] | None:
    """Where a file's coded picture lies: a baseline JPEG's entropy-coded data (after SOS, before EOI), a WebP's
    VP8/VP8L chunk body; None for other formats."""
    if data[:3] == b"\xff\xd8\xff":
        start = data.index(b"\xff\xda")
        return start + 2 + int.from_bytes(data[start + 2 : start + 4], "big"), data.rindex(b"\xff\xd9")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        coded = next(c for c in riff.chunks(data) if c.kind in (b"VP8 ", b"VP8L"))
        return coded.body + 10, coded.body + coded.size  # past the frame header (sizes, key-frame start code)
    return None


def coded_flips(data: bytes, count: int, seed: int) -> Iterator[bytes]:
    """``count`` copies, each with one byte of the coded picture XORed with a random value (JPEG: not a marker)."""
    span = coded_span(data)
    assert span is not None
    start, end = span
    jpeg = data[:2] == b"\xff\xd8"
    rng = np.random.default_rng(seed)
    made = 0
    while made < count:
        at = start + int(rng.integers(0, end - start))
        if jpeg and 0xFF in (data[at], data[at - 1]):  # a marker or stuffing: not entropy-coded data
            continue
        copy = bytearray(data)
        copy[at] ^= int(rng.integers(1, 256))
        made += 1
        yield bytes(copy)


def hide_manifest(data: bytes) -> bytes:
    """The file with its C2PA manifest hidden from readers (JPEG: APP11 segments renamed APP12; WebP: the ``C2PA``
    chunk renamed): what is left when a flip lands in the manifest's name as well, or a tool drops it."""
    out = bytearray(data)
    if data[:2] == b"\xff\xd8":
        for seg in jpeg_container.segments(data)[0]:
            if seg.marker == 0xEB:
                out[seg.start + 1] = 0xEC
    else:
        for c in riff.chunks(data):
            if c.kind == b"C2PA":
                out[c.start : c.start + 4] = b"C2PX"
    return bytes(out)


def flip_sweep(lab: kzlabel.Labeler, sources: dict[str, bytes], count: int) -> None:
    print(
        f"\nByte flips in the coded picture (JPEG entropy-coded data, WebP VP8/VP8L data; {count} per file, seeded),"
        " verified as they are (the C2PA manifest embedded: a pixel change that only reads as a re-encode is still"
        " tampered, since a re-encoder drops the manifest) and with the manifest hidden (the picture binding alone)."
        " Damaged: ≥ 0.5 % of the pixels outside the warning moved by > 16 levels in some channel, or no longer"
        " decodes.\n"
    )
    print(
        "| file | binding | only the warning changed | picture changed | damaged | embedded: damaged, not tampered "
        "| changed, not tampered | hidden: damaged, not tampered | changed, not tampered "
        "| hidden, changed and undamaged: verdicts |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, data in sources.items():
        if not name.endswith((".jpg", ".webp")):
            continue
        for binding, ctx in (("kz-picture-2", nullcontext), ("kz-picture-1", legacy)):
            with ctx():
                res = mark_fixed(lab, data, name)
            base = np.asarray(decode(res.data), np.int16)
            keep = body_mask((base.shape[1], base.shape[0]), box_of(res.label))
            tally: Counter[str] = Counter()
            small: Counter[str] = Counter()
            for flipped in coded_flips(res.data, count, seed=zlib.crc32(name.encode())):
                try:
                    got = np.asarray(decode(flipped), np.int16)
                    moved = np.abs(got - base).max(axis=-1) if got.shape == base.shape else None
                except (OSError, ValueError, SyntaxError):
                    moved = None
                if moved is not None and not moved[keep].any():
                    tally["warning only"] += bool(moved.any())  # the warning's check, not the picture's
                    continue
                damaged = moved is None or float((moved > 16)[keep].mean()) >= 0.005
                tally["changed"] += 1
                tally["damaged"] += damaged
                for how, copy in (("embedded", flipped), ("hidden", hide_manifest(flipped))):
                    verdict_ = lab.verify(copy, name=name).verdict
                    missed = verdict_ != kzlabel.Verdict.TAMPERED
                    tally[f"{how} changed missed"] += missed
                    tally[f"{how} damaged missed"] += missed and damaged
                    if how == "hidden" and not damaged:
                        small[VERDICT[verdict_.value]] += 1
            print(
                f"| {name} | {binding} | {tally['warning only']} | {tally['changed']} | {tally['damaged']} "
                f"| {tally['embedded damaged missed']} "
                f"| {tally['embedded changed missed']} | {tally['hidden damaged missed']} "
                f"| {tally['hidden changed missed']} | {dict(small) or '-'} |"
            )


def local_edits(image: Image.Image, box: list[float] | None, seed: int) -> Iterator[tuple[str, Image.Image]]:
    """A pasted patch (a colour of the picture), a region cloned from elsewhere, a line of text, a swapped "face"
    (an ellipse of other content matched to the region's colour) and an inpainted object, over 1, 2 and 5 % of the
    area, away from the warning."""
    rng = np.random.default_rng(seed)
    w, h = image.size
    pixels = np.asarray(image)
    keep = body_mask((w, h), box)
    for share in (0.01, 0.02, 0.05):
        pw, ph = max(4, int((share * w * h) ** 0.5 * 1.3)), max(4, int((share * w * h) ** 0.5 / 1.3))
        spots = []
        while len(spots) < 2:
            x, y = int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph))
            if keep[y : y + ph, x : x + pw].all() or len(spots) == 1:
                spots.append((x, y))
        (x, y), (x2, y2) = spots
        colour = tuple(int(c) for c in pixels[int(rng.integers(0, h)), int(rng.integers(0, w))])
        edited = image.copy()
        edited.paste(colour, (x, y, x + pw, y + ph))
        yield f"patch {share:.0%}", edited
        edited = image.copy()
        edited.paste(image.crop((x2, y2, x2 + pw, y2 + ph)), (x, y))
        yield f"clone {share:.0%}", edited
        edited = image.copy()
        draw = ImageDraw.Draw(edited)
        font = ImageFont.load_default(size=max(8, int(ph * 0.8)))
        text = "FAKE"
        while draw.textlength(text + " 2025", font=font) < pw:
            text += " 2025"
        draw.text((x, y), text, fill=tuple(255 - c for c in colour), font=font)
        yield f"text {share:.0%}", edited
        region = pixels[y : y + ph, x : x + pw].astype(np.float32)
        other = natural_like(ph, pw, int(rng.integers(1000))).astype(np.float32)
        other = (other - other.mean((0, 1))) / (other.std((0, 1)) + 1e-6) * region.std((0, 1)) + region.mean((0, 1))
        yy, xx = np.mgrid[0:ph, 0:pw]
        inside = ((yy - ph / 2) / (ph / 2)) ** 2 + ((xx - pw / 2) / (pw / 2)) ** 2 < 1
        swapped = pixels.copy()
        swapped[y : y + ph, x : x + pw][inside] = np.clip(other, 0, 255).astype(np.uint8)[inside]
        yield f"swap {share:.0%}", Image.fromarray(swapped)
        try:
            import cv2
        except ImportError:
            continue
        hole = np.zeros((h, w), np.uint8)
        hole[y : y + ph, x : x + pw] = 255
        yield (
            f"inpaint {share:.0%}",
            Image.fromarray(cv2.inpaint(np.ascontiguousarray(pixels), hole, 5, cv2.INPAINT_TELEA)),
        )


def resaved(edited: Image.Image, marked: bytes) -> tuple[bytes, str]:
    """The edited picture saved as an editor would: the marked file's format and settings, its XMP carried over."""
    original = Image.open(io.BytesIO(marked))
    fmt = original.format or "PNG"
    fmt = {"MPO": "JPEG"}.get(fmt, fmt)
    if fmt == "JPEG":
        out = encode(edited, "JPEG", qtables=original.quantization, subsampling=JpegImagePlugin.get_sampling(original))
    elif fmt == "WEBP":
        lossless = b"VP8L" in marked[12:4096]
        out = encode(edited, "WEBP", lossless=lossless, quality=100 if lossless else 95)
    elif fmt == "GIF":
        out = encode(edited.quantize(256), "GIF")
    elif fmt in ("AVIF", "HEIF"):
        out = encode(edited, fmt, quality=90)
    else:
        out = encode(edited, fmt)
    return carried(out, fmt, marked), fmt


def edit_sweep(lab: kzlabel.Labeler, sources: dict[str, bytes]) -> None:
    kinds = ("patch", "clone", "text", "swap", "inpaint")
    print(
        "\nLocal edits of 1, 2 and 5 % of the area, resaved in the file's own format with its metadata, then also"
        " resized to 0.75 and 0.5 (JPEG q85): tampered / edits that moved ≥ 0.5 % of the pixels outside the warning"
        " by > 16 levels (the others are not counted)\n"
    )
    print("| file | " + " | ".join(kinds) + " | all, same size | then ×0.75 | then ×0.5 |")
    print("|---|" + "---|" * (len(kinds) + 3))
    totals: Counter[str] = Counter()
    for name, data in sources.items():
        res = mark_fixed(lab, data, name)
        marked = decode(res.data)
        box = box_of(res.label)
        keep = body_mask(marked.size, box)
        hits: Counter[str] = Counter()
        seen: Counter[str] = Counter()
        for what, edited in local_edits(marked, box, seed=zlib.crc32(name.encode())):
            moved = np.abs(np.asarray(edited.convert("RGB"), np.int16) - np.asarray(marked, np.int16)).max(axis=-1)
            if float((moved > 16)[keep].mean()) < 0.005:
                continue  # an edit that changed little (a patch the colour of where it went)
            out, fmt = resaved(edited, res.data)
            kind = what.split()[0]
            seen[kind] += 1
            seen["all"] += 1
            hits[kind] += verdict(lab, out, fmt).verdict == kzlabel.Verdict.TAMPERED
            for factor in (0.75, 0.5):
                size = (round(marked.width * factor), round(marked.height * factor))
                small = encode(edited.resize(size, Image.Resampling.LANCZOS), "JPEG", quality=85)
                hits[f"x{factor}"] += verdict(lab, carried(small, "JPEG", res.data), "JPEG").verdict.value == "tampered"
        hits["all"] = sum(hits[k] for k in kinds)
        totals.update({f"{k}/n": seen[k] for k in seen})
        totals.update(hits)
        cells = [f"{hits[k]}/{seen[k]}" if seen[k] else "-" for k in kinds]
        n = seen["all"]
        print(f"| {name} | " + " | ".join(cells) + f" | {hits['all']}/{n} | {hits['x0.75']}/{n} | {hits['x0.5']}/{n} |")
    n = totals["all/n"]
    cells = [f"{totals[k]}/{totals[k + '/n']}" for k in kinds]
    print("| all | " + " | ".join(cells) + f" | {totals['all']}/{n} | {totals['x0.75']}/{n} | {totals['x0.5']}/{n} |")


def images(lab: kzlabel.Labeler, tmp: Path, reps: int, quick: bool) -> None:
    image_costs(lab, tmp, reps)
    sources = image_sources(quick)
    transformations(lab, tmp, sources)
    flip_sweep(lab, sources, 15 if quick else 40)
    edit_sweep(lab, sources)


if __name__ == "__main__":
    main()
