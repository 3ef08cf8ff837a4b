"""Video speed: kzlabel mark of a 720p30 clip vs plain ffmpeg decode+encode with the same encoder settings, and
verify of a 1-minute clip. Prints a table with ratios.

    python benchmarks/bench_video.py [--seconds 10] [--verify-seconds 60]

Source: ffmpeg's lavfi `testsrc2` pattern plus `-vf noise` film grain, so frames have both flat areas and texture.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from kzlabel import Labeler, Signer, TrustStore
from kzlabel.keys import generate


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def clip(path: Path, seconds: float, size: str = "1280x720") -> None:
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
           "-t", str(seconds), "-vf", "noise=alls=6:allf=t", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
           "-c:a", "aac", str(path))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--verify-seconds", type=float, default=60.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        generate(d / "keys")
        lab = Labeler(Signer.load(d / "keys"), owner="Bench", system="Bench", trust=TrustStore.load([d / "keys"]))
        src = d / "src.mp4"
        clip(src, args.seconds)
        plain = timed(lambda: ffmpeg("-i", str(src), "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
                                     "-c:a", "copy", str(d / "plain.mp4")))
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


if __name__ == "__main__":
    main()
