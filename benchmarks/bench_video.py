"""Video speed: kzlabel mark of a 720p30 clip vs plain ffmpeg decode+encode with the same encoder settings, and
verify of a 1-minute clip. Prints a table with ratios. Then survival: the marked clip, and a vertical 720×1280 one
marked the same way, through `kzlabel stress`'s video transformations (kzlabel.survival.transforms.video, the same
definition the command uses), one table each.

    python benchmarks/bench_video.py [--seconds 10] [--verify-seconds 60] [--no-survival]

Source: ffmpeg's lavfi `testsrc2` pattern plus `-vf noise` film grain, so frames have both flat areas and texture.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from kzlabel import Labeler, Signer, TrustStore, stress
from kzlabel.keys import generate
from kzlabel.survival.render import cell, columns, summary


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


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--verify-seconds", type=float, default=60.0)
    ap.add_argument("--no-survival", action="store_true", help="skip the kzlabel stress survival tables")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        generate(d / "keys")
        lab = Labeler(Signer.load(d / "keys"), owner="Bench", system="Bench", trust=TrustStore.load([d / "keys"]))
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
