"""Peak memory of the C2PA step on a long WAV: the C2PA library's embedding (before) against kzlabel's data-hashed
slot, signed and read in a stream (after, layers/c2pa_embed).

    python benchmarks/bench_sign_memory.py [--hours 3] [--quick] [--dir /tmp]

A 16-bit 44.1 kHz stereo WAV (3 hours: 1.9 GB) is written to disk a second at a time (never held), then each step
runs in a fresh child process so its peak resident set size (``ru_maxrss``) is its own: signing the file with the
library (``c2pa.Builder.sign`` over file streams, as kzlabel did) and with the slot, and reading each result back
(the library's Reader, and the slot's streamed read). The child also reports the RSS right after importing kzlabel
and c2pa (the floor every run pays). ``--quick`` uses 6 minutes. Files are removed at the end; the signing key is
generated for the run and never printed.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJ4IjoxfQ.c2ln"


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def make_wav(path: Path, seconds: int, rate: int = 44100) -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    block = rng.integers(-3000, 3000, (10 * rate, 2), dtype=np.int16)  # 10 s of noise, shifted for each use
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        for i in range(0, seconds, 10):
            w.writeframes(np.roll(block, i * 7, axis=0)[: min(10, seconds - i) * rate].tobytes())


def child(args: argparse.Namespace) -> None:
    import c2pa  # noqa: F401 - the import floor counts the native library

    from kzlabel import formats
    from kzlabel.io import Input
    from kzlabel.keys import Signer, TrustStore
    from kzlabel.layers import c2pa as c2pa_layer
    from kzlabel.layers import c2pa_embed

    floor = rss_mb()
    signer, trust = Signer.load(args.keys), TrustStore.load([args.keys])
    wav = formats.detect(Input(path=Path(args.src)))
    start = time.perf_counter()
    out: dict = {}
    if args.child == "sign-library":
        with open(args.src, "rb") as src, open(args.dst, "w+b") as dst:
            c2pa_layer.sign(src, "audio/wav", signer, label_claims={"token": TOKEN}, dest=dst)
    elif args.child == "sign-streamed":
        c2pa_embed.sign(Path(args.src), Path(args.dst), wav.c2pa_reserve, signer, label_claims={"token": TOKEN})
    elif args.child == "read-library":
        with open(args.src, "rb") as src:
            out["state"] = c2pa_layer.read(src, "audio/wav", trust).state
    else:  # read-streamed
        with open(args.src, "rb") as src:
            slot = wav.c2pa_slot(src)
            out["state"] = c2pa_embed.read(src, slot, trust).state if slot else "absent"
    out |= {"wall": time.perf_counter() - start, "peak_mb": rss_mb(), "floor_mb": floor}
    print(json.dumps(out))


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"child {args[:2]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--quick", action="store_true", help="6 minutes instead of --hours")
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where the WAVs go (needs ~3x the WAV size free)")
    ap.add_argument(
        "--child", choices=("sign-library", "sign-streamed", "read-library", "read-streamed"), help=argparse.SUPPRESS
    )
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--dst", help=argparse.SUPPRESS)
    ap.add_argument("--keys", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    from kzlabel.keys import generate

    seconds = int((0.1 if args.quick else args.hours) * 3600)
    work = Path(tempfile.mkdtemp(prefix="kzlabel-signmem-", dir=args.dir))
    try:
        generate(work / "keys", organization="Bench LLP")
        keys = ["--keys", str(work / "keys")]
        src = work / "long.wav"
        t0 = time.perf_counter()
        make_wav(src, seconds)
        mb = src.stat().st_size / 1e6
        took = time.perf_counter() - t0
        print(f"{seconds / 3600:g} h WAV, 44.1 kHz stereo 16-bit: {mb:.0f} MB (written in {took:.0f} s)")
        print("| step | before: C2PA library | after: kzlabel slot, streamed | verdict after |")
        print("|---|---|---|---|")
        rows = {}
        for how in ("library", "streamed"):
            dst = work / f"signed-{how}.wav"
            rows[f"sign-{how}"] = run_child("--child", f"sign-{how}", "--src", str(src), "--dst", str(dst), *keys)
            rows[f"read-{how}"] = run_child("--child", f"read-{how}", "--src", str(dst), *keys)
            # the other reader on the same output: each signature validates in both
            other = "library" if how == "streamed" else "streamed"
            rows[f"cross-{how}"] = run_child("--child", f"read-{other}", "--src", str(dst), *keys)
            dst.unlink()
        for step in ("sign", "read"):
            b, a = rows[f"{step}-library"], rows[f"{step}-streamed"]
            verdict = a.get("state", "")
            print(
                f"| {step} | {b['peak_mb']:.0f} MB peak RSS, {b['wall']:.1f} s | {a['peak_mb']:.0f} MB, "
                f"{a['wall']:.1f} s | {verdict} |"
            )
        floor = rows["sign-streamed"]["floor_mb"]
        lib_on_ours, ours_on_lib = rows["cross-streamed"]["state"], rows["cross-library"]["state"]
        print(
            f"(import floor {floor:.0f} MB; the library's reader on the streamed output: {lib_on_ours}, "
            f"the streamed reader on the library's: {ours_on_lib})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
