"""Batch throughput: a mixed archive labelled with 1 and 2 worker processes.

    python benchmarks/bench_batch.py            # ~600 members
    python benchmarks/bench_batch.py --quick    # ~100 members

Images are small (256×256 PNG/JPEG) so the run measures the batch machinery plus typical per-file work; audio
(WAV) members are included only when a format handler for audio is registered.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
import wave
import zipfile
from pathlib import Path

import numpy as np

from kzlabel.batch import run_batch
from kzlabel.keys import generate

CFG = {"owner": "Bench Owner LLP", "system": "BenchGen", "system_version": "1"}


def _audio_supported() -> bool:
    try:
        from kzlabel import formats

        return any(getattr(h, "mime", "").startswith("audio/") for h in formats.handlers())
    except Exception:  # noqa: BLE001 - any failure means "no audio handler"
        return False


def _wav(seconds: float, freq: float) -> bytes:
    rate = 16000
    t = np.arange(int(rate * seconds)) / rate
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((8000 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes())
    return buf.getvalue()


def _load() -> str:
    """The machine's load, printed with the figures: other jobs on a shared machine slow the run down."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {one:.2f} (1 min) {five:.2f} (5 min)"


def build_archive(path: Path, n: int) -> dict[str, int]:
    from PIL import Image

    kinds = ["png", "jpg", "md", "txt", "html"]
    if _audio_supported():
        kinds.append("wav")
    counts: dict[str, int] = {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            kind = kinds[i % len(kinds)]
            name = f"set{i % 7}/item{i:05}.{kind}"
            if kind in ("png", "jpg"):
                img = Image.new("RGB", (256, 256), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
                for y in range(0, 256, 32):  # some structure, so encoders and the watermark have work to do
                    img.paste(((i * y) % 256, y, 255 - y), (0, y, 256, y + 16))
                buf = io.BytesIO()
                img.save(buf, "PNG" if kind == "png" else "JPEG", quality=90)
                data = buf.getvalue()
            elif kind == "md":
                data = (f"# Report {i}\n\n" + f"Paragraph {i} of generated markdown text. " * 30 + "\n").encode()
            elif kind == "txt":
                data = (f"Generated plain text number {i}. " * 40 + "\n").encode()
            elif kind == "html":
                body = "".join(f"<p>Paragraph {j} of page {i}.</p>" for j in range(20))
                data = f"<!doctype html><html><head><title>Page {i}</title></head><body>{body}</body></html>".encode()
            else:
                data = _wav(1.0, 220 + i)
            zf.writestr(name, data)
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="about 100 members instead of 600")
    ap.add_argument("-n", type=int, default=None, help="number of members")
    args = ap.parse_args(argv)
    n = args.n or (100 if args.quick else 600)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        generate(t / "keys", organization="Bench Owner LLP")
        src = t / "mixed.zip"
        counts = build_archive(src, n)
        print(
            f"archive: {n} members ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}), "
            f"{src.stat().st_size / 1e6:.2f} MB; audio handler: {'yes' if 'wav' in counts else 'no'}"
        )
        print(f"machine before: {_load()}")
        rates: dict[int, float] = {}
        for workers in (1, 2):
            dst = t / f"out{workers}.zip"
            t0 = time.perf_counter()
            s = run_batch(src, dst, labeler_config=CFG, key_dir=t / "keys", workers=workers)
            dt = time.perf_counter() - t0
            rates[workers] = n / dt
            print(f"workers={workers}: {dt:6.2f} s  {rates[workers]:7.1f} files/s  {dict(sorted(s.counts.items()))}")
        print(f"speed-up 2 vs 1 workers: {rates[2] / rates[1]:.2f}x")
        print(f"machine after: {_load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
