"""Long audio end to end: mark (all four layers) and verify an hours-long file; wall time, × realtime, peak RSS.

    python benchmarks/bench_long_audio.py [--hours 3] [--formats wav,mp3,flac] [--dir /tmp] [--layers all]
                                          [--max-c2pa-mb 512] [--remark]

The source is written by ffmpeg straight to disk (stereo pink noise from ``anoisesrc`` with a slow tremolo, 44.1 kHz;
WAV 16-bit, MP3 192k, FLAC 16-bit), never held in memory. ``mark`` and ``verify`` each run in a fresh child process,
so the peak resident set size (``ru_maxrss``) of each is its own; the child also reports the RSS right after
importing kzlabel, numpy, PyAV and c2pa, the floor every run pays. Files go under ``--dir`` and are removed at the
end (a 3-hour WAV is 1.9 GB, its labelled copy as much again). The signing key is generated for the run and never
printed.

``--remark``: the labelled output is marked again (a file that already carries a manifest: the new one keeps it as
the parentOf ingredient), and that second mark and its verify are what the row shows (the first mark's figures go to
stderr). Run with ``PYTHONPATH`` at an older tree to measure it before a change.
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
from pathlib import Path

CODECS = {"wav": ["-c:a", "pcm_s16le"], "mp3": ["-c:a", "libmp3lame", "-b:a", "192k"], "flac": ["-c:a", "flac"]}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def make_source(path: Path, seconds: float, rate: int = 44100) -> None:
    """Two tones (220 and 331 Hz, one per channel) over quiet stereo pink noise, with a 0.3 Hz tremolo, streamed by
    ffmpeg to ``path`` (noise alone would not compress: 3 hours of it in FLAC is over the 2 GiB input limit)."""
    fmt = path.suffix[1:]
    noise = f"anoisesrc=color=pink:amplitude=0.01:sample_rate={rate}:duration={seconds}"
    tone = f"sine=sample_rate={rate}:duration={seconds}:frequency="
    inputs = [noise + ":seed=1", noise + ":seed=2", tone + "220", tone + "331"]
    graph = "[0][1]amerge=inputs=2[n];[2][3]amerge=inputs=2[t];[n][t]amix=inputs=2:normalize=0,tremolo=f=0.3:d=0.5"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            *[a for i in inputs for a in ("-f", "lavfi", "-i", i)],
            "-filter_complex",
            graph,
            *CODECS[fmt],
            str(path),
        ],
        check=True,
    )


def child(args: argparse.Namespace) -> None:
    """One mark or verify in this process; prints a JSON line."""
    import av  # noqa: F401 - imported here so the import floor counts what every run pays
    import c2pa  # noqa: F401
    import numpy  # noqa: F401

    import kzlabel

    floor = rss_mb()
    keys = Path(args.keys)
    layers = {} if args.layers == "all" else {"layers": args.layers.split(",")}
    limits = kzlabel.Limits(max_c2pa_bytes=int(args.max_c2pa_mb * 1024**2))
    lab = kzlabel.Labeler(
        kzlabel.Signer.load(keys),
        owner="Bench LLP",
        system="Bench",
        trust=kzlabel.TrustStore.load([keys]),
        position="both",
        limits=limits,
        **layers,
    )
    start = time.perf_counter()
    if args.child == "mark":
        res = lab.mark(args.src, args.dst)
        out = {"layers": list(res.layers), "skipped": res.skipped}
    else:
        rep = lab.verify(args.src)
        out = {"verdict": rep.verdict.value, "evidence": {e.layer: e.status.value for e in rep.evidence}}
    wall = time.perf_counter() - start
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps(out | {"wall": wall, "cpu": cpu.ru_utime + cpu.ru_stime, "peak_mb": rss_mb(), "floor_mb": floor}))


def run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"child {args[:2]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=3.0)
    ap.add_argument("--formats", default="wav,mp3,flac")
    ap.add_argument(
        "--dir", default=tempfile.gettempdir(), help="where the long files go (needs ~2× the WAV size free)"
    )
    ap.add_argument("--layers", default="all", help="comma-separated layers, or all")
    ap.add_argument(
        "--max-c2pa-mb",
        type=float,
        default=512.0,
        help="Limits.max_c2pa_bytes in MiB (larger outputs get no C2PA manifest; raise it to sign them)",
    )
    ap.add_argument("--remark", action="store_true", help="mark the labelled output again and report that mark")
    ap.add_argument("--child", choices=("mark", "verify"), help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    ap.add_argument("--dst", help=argparse.SUPPRESS)
    ap.add_argument("--keys", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    from kzlabel.keys import generate

    seconds = args.hours * 3600
    work = Path(tempfile.mkdtemp(prefix="kzlabel-long-", dir=args.dir))
    try:
        generate(work / "keys", organization="Bench LLP")
        print(
            "| format | duration | input MB | output MB | layers | mark s | × realtime | mark peak RSS MB | verify s | "
            "verify peak RSS MB | import floor MB | verdict |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for fmt in args.formats.split(","):
            src, dst = work / f"long.{fmt}", work / f"long.labelled.{fmt}"
            t0 = time.perf_counter()
            make_source(src, seconds)
            print(
                f"  (generated {src.name}: {src.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t0:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            common = ["--keys", str(work / "keys"), "--layers", args.layers, "--max-c2pa-mb", str(args.max_c2pa_mb)]
            m = run_child("--child", "mark", "--src", str(src), "--dst", str(dst), *common)
            if args.remark:  # the labelled file is the source of the mark measured
                print(f"  first mark: {m}", file=sys.stderr, flush=True)
                src.unlink()
                dst.rename(src)
                m = run_child("--child", "mark", "--src", str(src), "--dst", str(dst), *common)
            v = run_child("--child", "verify", "--src", str(dst), *common)
            print(
                f"| {fmt} | {args.hours:g} h | {src.stat().st_size / 1e6:.0f} | {dst.stat().st_size / 1e6:.0f} | "
                f"{'+'.join(m['layers'])} | "
                f"{m['wall']:.0f} | {seconds / m['wall']:.0f}× | {m['peak_mb']:.0f} | {v['wall']:.1f} | "
                f"{v['peak_mb']:.0f} | {m['floor_mb']:.0f} | {v['verdict']} |",
                flush=True,
            )
            if v["verdict"] != "compliant" or set(m["skipped"]) - {"c2pa"}:
                print(f"  mark: {m}\n  verify: {v}", file=sys.stderr)
            if "c2pa" in m["skipped"]:
                print(f"  c2pa skipped: {m['skipped']['c2pa']}", file=sys.stderr)
            for p in (src, dst, Path(str(dst) + ".c2pa")):
                p.unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
