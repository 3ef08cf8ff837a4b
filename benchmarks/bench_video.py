"""Video speed: kzlabel mark of a 720p30 clip vs plain ffmpeg decode+encode with the same encoder settings, and
verify of a 1-minute clip. Prints a table with ratios. Then survival: the marked clip, and a vertical 720×1280 one
marked the same way, through `kzlabel stress`'s video transformations (kzlabel.survival.transforms.video, the same
definition the command uses), one table each. Then the survival grid of issue 17: sources (horizontal 1280×720,
vertical 720×1280, a small 480×270, and a phone's vertical: 1280×720 stored with a 90° display rotation) × H.264
re-encodes at CRF 28 and 32, full size and scaled to 480 / 360 / 240 px on the shorter side (the stress module's
Reencode: frames turned upright, x264 preset medium, no tags kept), plus a metadata drop (stream copy without
tags); per row the watermark (p), the burned-in warning and the verdict, verified without a registry. The watermark
cell also gives what the frame detector reads from the same files without list decoding (the detector before it).

    python benchmarks/bench_video.py [--seconds 10] [--verify-seconds 60] [--no-survival] [--no-grid]
    python benchmarks/bench_video.py --grid-only [--quick] [--content pan|testsrc|both] [--ids 2] [--source 480x270]

Sources: ffmpeg's lavfi `testsrc2` pattern plus `-vf noise` film grain, so frames have both flat areas and texture;
for the grid also ``pan``: a slow pan over a synthetic photo (fixtures/image_signals.py) with a ball bouncing through
it, the motion a re-encoder's prediction has to follow. Each grid source is marked ``--ids`` times with different
content ids (the payload changes the mark's pattern); the watermark cell counts the ids found and gives the worst p.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kzlabel import Labeler, Signer, TrustStore, stress
from kzlabel.errors import KzlabelError
from kzlabel.formats.video.codec import detect_watermark, probe
from kzlabel.io import Limits, read_input
from kzlabel.keys import generate
from kzlabel.survival.render import cell, columns, summary
from kzlabel.survival.transforms import Original
from kzlabel.survival.transforms.video import Reencode, copy_streams

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from image_signals import natural_like  # noqa: E402


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def clip(path: Path, seconds: float, size: str = "1280x720") -> None:
    ffmpeg(
        *("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30"),
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"),
        *("-t", str(seconds), "-vf", "noise=alls=6:allf=t"),
        *("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)),
    )


def survival(path: Path, trust: TrustStore, what: str) -> None:
    """The stress report of a marked clip as a Markdown table (the command's rows, the command's cells)."""
    t = time.perf_counter()
    report = stress(path, trust=trust, previews=False)
    layers = columns(report)
    print(f"\nSurvival, {what} ({time.perf_counter() - t:.0f} s):\n")
    print("| transformation | output | verdict | " + " | ".join(layers) + " | watermark kept |")
    print("|---" * (len(layers) + 4) + "|")
    for v in [report.original, *report.versions]:
        if v.report is None:
            print(f"| {v.name} | not applied: {v.skipped} |" + " |" * (len(layers) + 2))
            continue
        cells = " | ".join(cell(v.report.layer(layer), report.reference) for layer in layers)
        kept = "—" if v.survived is None else ("yes" if v.survived else "NO")
        shape = f"{v.output.format} {v.output.shape}"
        print(f"| {v.name} | {shape} | {v.report.verdict.value} | {cells} | {kept} |")
    print(f"\n{summary(report)}")


def pan(path: Path, seconds: float, width: int, height: int, fps: int = 24, seed: int = 5) -> None:
    """A slow pan (2 px a frame) over a synthetic photo, a ball bouncing through it, light grain; H.264 CRF 18."""
    n = int(seconds * fps)
    scene = natural_like(height, width + 2 * n, seed=seed)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = bytearray()
    for i in range(n):
        f = scene[:, 2 * i : 2 * i + width].astype(np.float32)
        cx, cy = width * (0.15 + 0.7 * i / n), height * (0.3 + 0.25 * abs(np.sin(np.pi * 2 * i / n)))
        f[(yy - cy) ** 2 + (xx - cx) ** 2 < (min(width, height) / 10) ** 2] = (220, 60, 50)
        frames += np.clip(f + rng.normal(0, 1.5, f.shape), 0, 255).astype(np.uint8).tobytes()
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}"]
    cmd += ["-r", str(fps), "-i", "-", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
    subprocess.run([*cmd, str(path)], input=bytes(frames), check=True)


def short_side(side: int | None):
    """The stress module's Geometry: no crop, scaled so the shorter displayed side is ``side`` (None: as is)."""

    def geometry(w: int, h: int) -> tuple[None, int, int]:
        f = 1.0 if side is None else side / min(w, h)
        return None, max(2, round(w * f / 2) * 2), max(2, round(h * f / 2) * 2)

    return geometry


SOURCES = {  # name: (stored width, height, display rotation)
    "1280×720": (1280, 720, 0),
    "720×1280": (720, 1280, 0),
    "480×270": (480, 270, 0),
    "phone 720×1280 (1280×720 + 90° rotation)": (1280, 720, 90),
}


def grid_steps(quick: bool) -> list[tuple[str, int | None, int | None]]:
    """(row name, shorter side or None = full size, CRF or None = the metadata-drop stream copy)."""
    if quick:
        return [("480 CRF 28", 480, 28), ("240 CRF 32", 240, 32), ("metadata drop", None, None)]
    steps: list[tuple[str, int | None, int | None]] = [("full CRF 28", None, 28), ("full CRF 32", None, 32)]
    steps += [(f"{side} CRF {crf}", side, crf) for side in (480, 360, 240) for crf in (28, 32)]
    return [*steps, ("metadata drop", None, None)]


def grid(lab: Labeler, work: Path, seconds: float, content: str, ids: int, quick: bool, only: list[str]) -> None:
    """Issue 17's survival grid (see the module docstring), one Markdown table. ``only``: the sources whose names
    start with one of these (ASCII x for ×), e.g. ``480x270`` for the small panning source's wider runs."""
    sources = dict(list(SOURCES.items())[:2]) if quick else SOURCES
    if only:
        sources = {k: v for k, v in sources.items() if any(k.replace("×", "x").startswith(o) for o in only)}
    print(f"\nSurvival grid, {content}, {seconds:.0f} s clips, {ids} content id(s) each, no registry:\n")
    head = "watermark found: best path only → with the list (worst p)"
    print(f"| source | transformation | output | {head} | warning | verdict | verify s |")
    print("|---|---|---|---|---|---|---|")
    for name, (w, h, rotation) in sources.items():
        src = work / f"{content}_{w}x{h}_{rotation}.mp4"
        (pan(src, seconds, w, h) if content == "pan" else clip(src, seconds, size=f"{w}x{h}"))
        if rotation:
            turned = src.with_name(src.stem + "_rot.mp4")
            ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", f"rotate={rotation}", str(turned))
            src = turned
        marked = []
        for i in range(ids):
            cid = hashlib.sha256(f"{content}{name}{i}".encode()).hexdigest()[:16]
            dst = work / f"m_{src.stem}_{i}.mp4"
            try:
                lab.mark(src, dst, label=lab.new_label().replace(content_id=cid))
                marked.append((cid, dst))
            except KzlabelError as exc:
                print(f"| {name} | (mark) | mark failed: {exc.message} | | | | |")
        if not marked:
            continue
        shorter = min(w, h)
        for step, side, crf in grid_steps(quick):
            if side is not None and side >= shorter:
                continue  # platforms scale down, not up
            rows, best_path = [], 0
            for cid, dst in marked:
                original = Original(dst, "mp4")
                out_dir = work / f"t_{dst.stem}"
                out_dir.mkdir(exist_ok=True)
                if crf is None:
                    out = copy_streams(original, out_dir, "drop", seconds=None, keep_tags=False)
                else:
                    out = Reencode(short_side(side), crf).write(original, out_dir, f"s{side}_{crf}")
                t = time.perf_counter()
                report = lab.verify(out)
                rows.append((cid, out, report, time.perf_counter() - t))
                best_path += _best_path_only(out) == cid
            found = [r for cid, _, r, _ in rows if (e := r.layer("watermark")) and e.data.get("payload") == cid]
            ps = [float(r.layer("watermark").data.get("p_value", 1.0)) for _, _, r, _ in rows]
            seen = {r.layer("visible").status.value for _, _, r, _ in rows}
            verdicts = {r.verdict.value for _, _, r, _ in rows}
            shape = _shape(rows[0][1])
            spent = max(s for *_, s in rows)
            wm = f"{best_path} → {len(found)}/{len(rows)} (p ≤ {max(ps):.0e})"
            print(
                f"| {name} | {step} | {shape} | {wm} | {'/'.join(sorted(seen))} | {'/'.join(sorted(verdicts))} "
                f"| {spent:.1f} |"
            )


def _best_path_only(path: Path) -> str | None:
    """The payload verify's frame detector reads without list decoding (the detector before it), hex."""
    inp = read_input(path, Limits())
    found = detect_watermark(inp, probe(inp, Limits(), "mp4"), None, list_decoding=False)
    return found.payload.hex() if found.found and found.payload else None


def _shape(path: Path) -> str:
    cmd = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "csv=p=0"]
    out = subprocess.run([*cmd, str(path)], capture_output=True, text=True, check=True)
    return "×".join(out.stdout.strip().split(",")[:2])  # (a rotated stream adds its side data)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--verify-seconds", type=float, default=60.0)
    ap.add_argument("--no-survival", action="store_true", help="skip the kzlabel stress survival tables")
    ap.add_argument("--no-grid", action="store_true", help="skip issue 17's survival grid")
    ap.add_argument("--grid-only", action="store_true", help="only the survival grid")
    ap.add_argument("--quick", action="store_true", help="grid: two sources, three transformations")
    ap.add_argument("--content", choices=["pan", "testsrc", "both"], default="both")
    ap.add_argument("--ids", type=int, default=2, help="grid: content ids marked per source")
    ap.add_argument("--grid-seconds", type=float, default=4.0)
    ap.add_argument("--source", action="append", default=[], help="grid: only these sources (e.g. 480x270)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        generate(d / "keys")
        lab = Labeler(Signer.load(d / "keys"), owner="Bench", system="Bench", trust=TrustStore.load([d / "keys"]))
        if not args.no_grid:
            for content in ["pan", "testsrc"] if args.content == "both" else [args.content]:
                grid(lab, d, args.grid_seconds, content, args.ids, args.quick, args.source)
        if args.grid_only:
            return
        src = d / "src.mp4"
        clip(src, args.seconds)
        encode = ("-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-c:a", "copy")
        plain = timed(lambda: ffmpeg("-i", str(src), *encode, str(d / "plain.mp4")))
        wm_only = Labeler(lab.signer, owner="Bench", system="Bench", layers=["watermark"])
        t_wm = timed(lambda: wm_only.mark(src, d / "wm.mp4"))
        t_all = timed(lambda: lab.mark(src, d / "all.mp4"))
        long = d / "long.mp4"
        clip(long, args.verify_seconds)
        lab.mark(long, d / "long_marked.mp4")
        t_verify = timed(lambda: lab.verify(d / "long_marked.mp4"))
        s = args.seconds
        print(f"| 720p30, {s:.0f} s clip | seconds | × realtime | vs ffmpeg |")
        print("|---|---|---|---|")
        print(f"| ffmpeg decode+encode (libx264 veryfast crf 18) | {plain:.2f} | {s / plain:.2f} | 1.00 |")
        print(f"| kzlabel mark, watermark only | {t_wm:.2f} | {s / t_wm:.2f} | {t_wm / plain:.2f} |")
        print(f"| kzlabel mark, all layers | {t_all:.2f} | {s / t_all:.2f} | {t_all / plain:.2f} |")
        print(f"\nverify of a {args.verify_seconds:.0f} s 720p clip: {t_verify:.2f} s (target ≤ 5 s)")
        if args.no_survival:
            return
        trust = TrustStore.load([d / "keys"])
        survival(d / "all.mp4", trust, f"1280×720, {s:.0f} s, all layers")
        vertical = d / "vertical.mp4"
        clip(vertical, args.seconds, size="720x1280")
        lab.mark(vertical, d / "vertical_marked.mp4")
        survival(d / "vertical_marked.mp4", trust, f"720×1280 (vertical), {s:.0f} s, all layers")


if __name__ == "__main__":
    main()
