"""Output size against input size (issue 20): what labelling adds to a file.

PDF section: the bundled report.pdf and generated PDFs of 1, 17, 36 and 100 pages (each A4 page: 40 lines of text
and a 400x300 JPEG photo-like picture, about 7.5 KB a page, the density of the 36-page, 263 KB file of the issue),
marked with every layer (stamp on every page, XMP/Info, C2PA). Each row: size in and out, growth in KB and as a
ratio, the issue's bound (5 % of the input + 60 KB), the embedded font programs in the output, the mark's wall time,
and verify's verdict on the output (the figures only count when it is compliant).

Media section (issue 20, item 2): the bundled video and audio samples and generated sources at low, medium and high
rates (ffmpeg's testsrc2 with temporal grain, 640x360 at 25 fps, H.264 at 300 / 1200 / 4000 kb/s in MP4 and VP9 at
500 kb/s in WebM, 6 s each with a 96 kb/s AAC or 64 kb/s Opus soundtrack; 12 s of synthetic music as MP3 64k / 128k /
256k, AAC 64k / 192k, Opus 24k / 96k). Each is marked with every layer (default options: the soundtrack is copied).
Each row: the main stream's rate in and out (its bytes over its duration, measured on the files with PyAV), the file
size in and out, the seconds the warning adds (audio: the tone before the content), what the file holds beside its
streams (tags, the label, the C2PA manifest), the watermark after H.264 CRF 28 at <= 480 px (video: the check mark
runs on its own output), verify's verdict; and beside it ffmpeg's own re-encode of the source at the settings kzlabel
chose for the source's rate (``ffmpeg -c:v libx264 -b:v RATE -x264-params ratetol=0.1 ...``, audio ``-b:a RATE``),
its rate and size against the source.

Animation section (issue 20, item 3): the bundled fixtures/animated/ samples and generated animations of other
content and sizes, each as GIF (one adaptive palette, dithered), lossy WebP, APNG (RGB, and paletted like the GIF)
and AVIF: a flat cartoon (shapes moving over flat colours, 600x450, 8 frames), a cinemagraph (a still textured scene
with one small moving part, 640x480, 10 frames) and a panning photo-like scene with grain (720x540, 12 frames), all
marked with one content id (ANIM_CONTENT_ID). Each row: the source's size, the output's frames alone (marked with the
warning and the watermark only) and with every layer against it, what the label and manifest add, on how many frames
the watermark reads back from that single frame, verify's verdict, the mark's wall time.

Label section: every bundled sample (fixtures/samples, fixtures/animated) marked with one content id, with every layer,
with the label but no manifest, and with the warning and watermark only, so the differences are what the label's
carriers (XMP, tags, Info) and the C2PA manifest (or its sidecar) add; then the signed token's parts: the header with
the certificate chain (``x5c``), the payload's binding, warning record, notices and the rest (canonical JSON bytes,
before base64url), the signature, and how many compact copies of the token the file holds.

Run ``python benchmarks/bench_sizes.py`` (``--quick``: the bundled PDF, the 1- and 17-page ones, the bundled media
and the medium-rate generated sources, the bundled animations and the cinemagraph, six samples in the label section;
``--part pdf|media|anim|label``). To compare with another checkout, point ``PYTHONPATH`` at its ``src``.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import pypdf
from PIL import Image, ImageDraw

import kzlabel
from kzlabel.keys import Signer, generate
from kzlabel.media_rate import StreamRate, audio_bit_rate, audio_options, measure, video_encoder, video_rate_options

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import audio_signals  # noqa: E402 - fixtures/ is on the path from here on

ROOT = Path(__file__).resolve().parents[1]

BOUND_RATIO, BOUND_SLACK = 0.05, 60_000


def picture(seed: int) -> bytes:
    """A 400x300 JPEG with smooth shapes and grain, compressing like a photo (~5 KB)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:300, 0:400] / 100.0
    base = np.stack([np.sin(x * (c + 1) + rng.uniform(0, 6)) * np.cos(y * (2 - c * 0.5)) for c in range(3)], axis=-1)
    pixels = np.clip((base + 1) * 110 + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=35)
    return buf.getvalue()


def document(pages: int) -> bytes:
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(595, 842))
    for i in range(pages):
        c.drawImage(ImageReader(io.BytesIO(picture(i))), 97, 470, 400, 300)
        for line in range(20):
            c.drawString(72, 440 - line * 18, f"Page {i + 1}, line {line}: quarterly figures, {i * line} units sold")
        c.showPage()
    c.save()
    return buf.getvalue()


def pdf_rows(lab: kzlabel.Labeler, tmp: Path, quick: bool) -> None:
    sources = {"report.pdf (bundled)": (ROOT / "fixtures/samples/report.pdf").read_bytes()}
    for pages in (1, 17) if quick else (1, 17, 36, 100):
        sources[f"generated, {pages} page(s)"] = document(pages)
    print("| PDF | pages | in KB | out KB | growth KB | out/in | bound KB | within | font programs | mark s | verify |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, src in sources.items():
        dst = tmp / "out.pdf"
        started = time.perf_counter()
        lab.mark(src, dst, name="doc.pdf")
        seconds = time.perf_counter() - started
        out = dst.read_bytes()
        verdict = lab.verify(dst).verdict.value
        pages = len(pypdf.PdfReader(io.BytesIO(src)).pages)
        grown, bound = len(out) - len(src), BOUND_RATIO * len(src) + BOUND_SLACK
        fonts = len(re.findall(rb"/FontFile[23]?\b", out))
        print(
            f"| {name} | {pages} | {len(src) / 1000:.1f} | {len(out) / 1000:.1f} | {grown / 1000:+.1f} "
            f"| {len(out) / len(src):.2f} | {bound / 1000:.1f} | {'yes' if grown <= bound else 'NO'} | {fonts} "
            f"| {seconds:.2f} | {verdict} |"
        )


MEDIA_SAMPLES = (
    "clip.mp4",
    "scene.mov",
    "trailer.mkv",
    "loop.webm",
    "song.mp3",
    "jingle.m4a",
    "podcast.ogg",
    "loop.flac",
    "voice.wav",
)
INPUTS = (
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=640x360:rate=25",
    "-f",
    "lavfi",
    "-i",
    "sine=frequency=330:sample_rate=48000",
)
GRAIN = ("-vf", "noise=alls=8:allf=t", "-t", "6")
# name → (ffmpeg arguments after the inputs, extension, in the quick run)
GENERATED_VIDEO = {
    "H.264 300k": (("-c:v", "libx264", "-b:v", "300k", "-c:a", "aac", "-b:a", "96k"), ".mp4", False),
    "H.264 1200k": (("-c:v", "libx264", "-b:v", "1200k", "-c:a", "aac", "-b:a", "96k"), ".mp4", True),
    "H.264 4000k": (("-c:v", "libx264", "-b:v", "4000k", "-c:a", "aac", "-b:a", "96k"), ".mp4", False),
    "VP9 500k": (
        (
            "-c:v",
            "libvpx-vp9",
            "-b:v",
            "500k",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
        ),
        ".webm",
        False,
    ),
}
GENERATED_AUDIO = {
    "MP3 64k": (("-c:a", "libmp3lame", "-b:a", "64k"), ".mp3", False),
    "MP3 128k": (("-c:a", "libmp3lame", "-b:a", "128k"), ".mp3", True),
    "MP3 256k": (("-c:a", "libmp3lame", "-b:a", "256k"), ".mp3", False),
    "AAC 64k": (("-c:a", "aac", "-b:a", "64k"), ".m4a", False),
    "AAC 192k": (("-c:a", "aac", "-b:a", "192k"), ".m4a", True),
    "Opus 24k": (("-c:a", "libopus", "-b:a", "24k"), ".ogg", False),
    "Opus 96k": (("-c:a", "libopus", "-b:a", "96k"), ".ogg", True),
}
_MUXERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
_AUDIO_ENCODERS = {"mp3": "libmp3lame", "mp3float": "libmp3lame", "aac": "aac", "opus": "libopus", "vorbis": "vorbis"}


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def generated_media(tmp: Path, quick: bool) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for name, (args, ext, in_quick) in GENERATED_VIDEO.items():
        if quick and not in_quick:
            continue
        path = tmp / f"gen-{len(out)}{ext}"
        ffmpeg(*INPUTS, *GRAIN, *args, "-pix_fmt", "yuv420p", str(path))
        out[f"generated {name}"] = path
    wav = tmp / "music.wav"
    pcm = (np.clip(audio_signals.music(12.0, 44100, seed=3), -1, 1) * 32767).astype("<i2")
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(pcm.shape[1] if pcm.ndim > 1 else 1)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(pcm.tobytes())
    for name, (args, ext, in_quick) in GENERATED_AUDIO.items():
        if quick and not in_quick:
            continue
        path = tmp / f"gen-{len(out)}{ext}"
        ffmpeg("-i", str(wav), *args, str(path))
        out[f"generated {name}"] = path
    return out


def ffmpeg_same_settings(src: Path, streams: dict[str, StreamRate], dst: Path) -> None:
    """ffmpeg's own re-encode of ``src`` at the settings kzlabel chooses for the source's rate (soundtrack copied)."""
    video = streams.get("video")
    if video is not None:
        encoder = video_encoder(video.codec, _MUXERS.get(src.suffix, "mp4"), {"libx264", "libx265", "libvpx-vp9"})
        options = video_rate_options(encoder, video, video.bit_rate)
        args = [f"-{k}" if k != "b" else "-b:v" for k in options]
        flat = [x for pair in zip(args, options.values(), strict=True) for x in pair]
        ffmpeg("-i", str(src), "-c:v", encoder, *flat, "-pix_fmt", "yuv420p", "-c:a", "copy", str(dst))
        return
    audio = streams["audio"]
    encoder = _AUDIO_ENCODERS.get(audio.codec, audio.codec if audio.codec == "flac" else "pcm_s16le")
    rate = audio_bit_rate(encoder, audio, 2, 128_000)
    extra = [x for k, v in audio_options(encoder).items() for x in (f"-{k}", v)]
    ffmpeg("-i", str(src), "-c:a", encoder, *extra, *(["-b:a", str(rate)] if rate else []), str(dst))


def media_rows(lab: kzlabel.Labeler, tmp: Path, quick: bool) -> None:
    sources = {f"{name} (bundled)": ROOT / "fixtures/samples" / name for name in MEDIA_SAMPLES}
    sources |= generated_media(tmp, quick)
    print(
        "\n| source | stream | kb/s in | kb/s out | out/in | size KB in | size KB out | out/in | s added"
        " | other KB in → out | watermark after CRF 28 | verdict | mark s | ffmpeg kb/s out/in | ffmpeg size out/in |"
    )
    print("|---" * 15 + "|")
    for name, src in sources.items():
        dst = tmp / f"out{src.suffix}"
        started = time.perf_counter()
        result = lab.mark(src, dst)
        seconds = time.perf_counter() - started
        verdict = lab.verify(dst).verdict.value
        before, after = measure(str(src)), measure(str(dst))
        kind = "video" if "video" in before else "audio"
        a, b = before[kind], after[kind]
        added = b.seconds - a.seconds
        other_in = src.stat().st_size - sum(s.bytes for s in before.values())
        other_out = dst.stat().st_size - sum(s.bytes for s in after.values())
        plain = tmp / f"ffmpeg{src.suffix}"
        ffmpeg_same_settings(src, before, plain)
        p = measure(str(plain))[kind]
        survival = result.robustness.get("watermark", "—")
        survival = (
            "yes" if survival.startswith("survives") else ("NO" if survival.startswith("not found") else survival)
        )
        line = result.encoding.get(kind, "")
        raised = " (raised)" if "raised" in line else ""
        raised += " (a check lost at every rate)" if "any rate" in line else ""
        print(
            f"| {name} | {a.codec} | {a.bit_rate / 1000:.1f} | {b.bit_rate / 1000:.1f} | {b.bit_rate / a.bit_rate:.2f}"
            f"{raised} | {src.stat().st_size / 1000:.1f} | {dst.stat().st_size / 1000:.1f} "
            f"| {dst.stat().st_size / src.stat().st_size:.2f} | {added:+.1f} "
            f"| {other_in / 1000:.1f} → {other_out / 1000:.1f} "
            f"| {survival} | {verdict} | {seconds:.1f} | {p.bit_rate / a.bit_rate:.2f} "
            f"| {plain.stat().st_size / src.stat().st_size:.2f} |"
        )


ANIM_SAMPLES = ("anim.gif", "anim.webp", "anim.png", "anim.avif")
# one content id for every row: the watermark, and so the sizes, are the same on every run and in every checkout (the
# mark's pattern changes with the id: a dithered GIF's size moved 1.28-2.12x over three ids)
ANIM_CONTENT_ID = "5a17c0ffee2b9d41"


def animation_frames(kind: str, seed: int) -> tuple[list[Image.Image], list[int]]:
    """Generated frames of one kind of content (see the docstring) and their durations (ms)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    if kind == "cartoon":
        (w, h), n = (600, 450), 8
        frames = []
        for i in range(n):
            im = Image.new("RGB", (w, h), (90, 170, 220))
            d = ImageDraw.Draw(im)
            d.rectangle((0, 330, w, h), fill=(70, 150, 60))
            d.ellipse((60 + 40 * i, 120, 200 + 40 * i, 260), fill=(240, 200, 40), outline=(30, 30, 30), width=5)
            d.rectangle((420 - 20 * i, 250, 520 - 20 * i, 330), fill=(200, 60, 50), outline=(30, 30, 30), width=4)
            frames.append(im)
        return frames, [100] * n
    (w, h), n = ((640, 480), 10) if kind == "cinemagraph" else ((720, 540), 12)
    pan = 0 if kind == "cinemagraph" else 8
    texture = ndimage.gaussian_filter(rng.normal(0, 50, (h, w + pan * n)), 3)
    yy, xx = np.mgrid[0:h, 0 : w + pan * n]
    base = np.stack([120 + texture + 40 * np.sin(xx / 90), 110 + texture, 90 + 0.6 * texture + yy / 8], axis=-1)
    frames = []
    for i in range(n):
        f = base[:, pan * i : pan * i + w].copy()
        if kind == "cinemagraph":
            cy, cx = 360 + 10 * np.sin(i), 120 + 12 * i
            f[(yy[:, :w] - cy) ** 2 + (xx[:, :w] - cx) ** 2 < 30**2] = (230, 230, 240)
        else:
            f += rng.normal(0, 3, f.shape)
        frames.append(Image.fromarray(np.clip(f, 0, 255).astype(np.uint8)))
    return frames, [120] * n


def generated_animations(tmp: Path, quick: bool) -> dict[str, Path]:
    out = {}
    for kind in ("cinemagraph",) if quick else ("cartoon", "cinemagraph", "pan"):
        frames, durations = animation_frames(kind, seed=len(kind))
        common = {"save_all": True, "duration": durations, "loop": 0}
        palette = frames[0].quantize(256)
        gif = [f.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG) for f in frames]
        gif[0].save(tmp / f"{kind}.gif", append_images=gif[1:], **common)
        frames[0].save(tmp / f"{kind}.webp", append_images=frames[1:], quality=75, method=4, **common)
        frames[0].save(tmp / f"{kind}.png", append_images=frames[1:], optimize=True, **common)
        frames[0].save(tmp / f"{kind}.avif", append_images=frames[1:], quality=70, speed=8, **common)
        gif[0].save(tmp / f"{kind}-pal.png", append_images=gif[1:], optimize=True, **common)
        out |= {f"{kind}{ext}": tmp / f"{kind}{ext}" for ext in (".gif", ".webp", ".png", "-pal.png", ".avif")}
    return out


def anim_rows(lab: kzlabel.Labeler, tmp: Path, quick: bool) -> None:
    from kzlabel.watermark import detect_image

    sources = {f"{name} (bundled)": ROOT / "fixtures/animated" / name for name in ANIM_SAMPLES}
    sources |= generated_animations(tmp, quick)
    pixels_only = kzlabel.Labeler(lab.signer, owner="O", system="S", layers=["visible", "watermark"])
    print(
        "\n| source | size in | frames only out/in | with label out/in | label + manifest B | frames keeping the mark"
        " | verdict | mark s |"
    )
    print("|---" * 8 + "|")
    for name, src in sources.items():
        dst = tmp / f"out{src.suffix}"
        started = time.perf_counter()
        result = lab.mark(src, dst, label=lab.new_label().replace(content_id=ANIM_CONTENT_ID))
        seconds = time.perf_counter() - started
        coded = len(pixels_only.mark(src, label=result.label).data)
        verdict = lab.verify(dst).verdict.value
        kept, count = 0, 0
        with Image.open(dst) as im:
            for i in range(im.n_frames):
                im.seek(i)
                found = detect_image(np.asarray(im.convert("RGB")))
                kept += bool(found.found and found.payload.hex() == result.label.content_id)
                count += 1
        size = src.stat().st_size
        layers = "" if len(result.layers) == 4 else f" (skipped: {', '.join(sorted(result.skipped))})"
        print(
            f"| {name} | {size / 1000:.1f} KB | {coded / size:.2f} | {dst.stat().st_size / size:.2f} "
            f"| {dst.stat().st_size - coded:,} | {kept}/{count} | {verdict}{layers} | {seconds:.1f} |"
        )


LABEL_QUICK = ("poster.webp", "photo.jpg", "song.mp3", "report.pdf", "anim.webp", "anim.avif")


def _json_bytes(value: object) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def label_rows(lab: kzlabel.Labeler, tmp: Path, quick: bool) -> None:
    """What the label and the manifest cost per bundled sample, and what the signed token is made of."""
    from kzlabel.label import b64url_decode

    paths = sorted((ROOT / "fixtures/samples").iterdir()) + sorted((ROOT / "fixtures/animated").iterdir())
    paths = [p for p in paths if not quick or p.name in LABEL_QUICK]
    layers = {"metadata": ["visible", "watermark", "metadata"], "content": ["visible", "watermark"]}
    partial = {k: kzlabel.Labeler(lab.signer, owner="O", system="S", layers=v) for k, v in layers.items()}
    print(
        "\n| sample | size in | out | label B | manifest B | token B | header (x5c) | payload: binding / warning"
        " / notice / rest | signature | compact copies in the file |"
    )
    print("|---" * 10 + "|")
    for src in paths:
        res = lab.mark(src, label=lab.new_label().replace(content_id=ANIM_CONTENT_ID))
        full = len(res.data) + len(res.c2pa_sidecar or b"")
        meta = len(partial["metadata"].mark(src, label=res.label).data)
        content = len(partial["content"].mark(src, label=res.label).data)
        header, payload, signature = res.token.split(".")
        x5c = sum(len(c) for c in json.loads(b64url_decode(header))["x5c"])
        fields = json.loads(b64url_decode(payload))
        parts = [_json_bytes(fields.get(k)) if k in fields else 0 for k in ("binding", "warning", "notice")]
        rest = len(b64url_decode(payload)) - sum(parts)
        side = " (sidecar)" if res.c2pa_sidecar else ""
        print(
            f"| {src.name} | {src.stat().st_size:,} | {full:,} | {meta - content:,} | {full - meta:,}{side} "
            f"| {len(res.token):,} | {len(header):,} ({x5c:,}) | {' / '.join(f'{n:,}' for n in parts)} / {rest:,} "
            f"| {len(signature)} | {res.data.count(res.token.encode())} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer generated sources (see the docstring)")
    parser.add_argument("--part", choices=("pdf", "media", "anim", "label"), help="one section only")
    args = parser.parse_args()
    quick = args.quick
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        generate(tmp / "keys", organization="Bench")
        trust = kzlabel.TrustStore.load([tmp / "keys"])
        lab = kzlabel.Labeler(Signer.load(tmp / "keys"), owner="O", system="S", trust=trust)
        print(f"kzlabel from {Path(kzlabel.__file__).parent}", file=sys.stderr)
        if args.part in (None, "pdf"):
            pdf_rows(lab, tmp, quick)
        if args.part in (None, "media"):
            media_rows(lab, tmp, quick)
        if args.part in (None, "anim"):
            anim_rows(lab, tmp, quick)
        if args.part in (None, "label"):
            label_rows(lab, tmp, quick)


if __name__ == "__main__":
    main()
