"""Skipping a member over the size limit in a .tar.gz: kzlabel's tar reader beside a plain zlib inflate of the file.

    python benchmarks/bench_tar_skip.py            # a 5 GiB member of zeros, a 1 GiB member of noise
    python benchmarks/bench_tar_skip.py --quick    # 1 GiB of zeros, 256 MiB of noise

Each archive is one big member (refused: over the 1 GiB ``max_member_bytes``, or over the 1 MiB used for the noise
case) followed by a small text member, generated straight to a temp folder (zeros compress ~1000x at gzip's default
level 6, so a 5 GiB member is a 5 MB file; ``--level 1`` makes a 22 MB one, ~230x, that inflates faster). A
compressed tar stream can only be skipped by inflating it, so the peer column is the floor for a full skip: zlib
inflating the whole file in 1 MiB steps. Times are CPU seconds of this process (``process_time``), the fastest of
``--runs``: the machine is shared, and CPU time still varies with what runs beside it (shared caches), so compare
figures from one run of this script, or from runs made one right after the other.
"""

from __future__ import annotations

import argparse
import os
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kzlabel.batch.archives import iter_entries
from kzlabel.batch.model import GiB, MiB, Safety

_ZEROS = bytes(16 * MiB)


def _write_tgz(path: Path, size: int, noise: bool, level: int) -> None:
    """One member of ``size`` bytes (zeros, or noise repeating every 16 MiB), then a small text member."""
    block = os.urandom(16 * MiB) if noise else _ZEROS
    comp = zlib.compressobj(level, zlib.DEFLATED, 31)
    with open(path, "wb") as fh:
        head = tarfile.TarInfo("big.bin")
        head.size = size
        fh.write(comp.compress(head.tobuf(tarfile.GNU_FORMAT)))
        left = size
        while left:
            n = min(left, len(block))
            fh.write(comp.compress(block if n == len(block) else block[:n]))
            left -= n
        text = b"A small text member after the big one.\n"
        tail = tarfile.TarInfo("after.txt")
        tail.size = len(text)
        pad = bytes(-size % 512)
        fh.write(comp.compress(pad + tail.tobuf(tarfile.GNU_FORMAT) + text + bytes(-len(text) % 512) + bytes(1024)))
        fh.write(comp.flush())


def _inflate_cpu(path: Path) -> tuple[float, str]:
    t = time.process_time()
    d = zlib.decompressobj(31)
    with open(path, "rb") as fh:
        while chunk := fh.read(MiB):
            while chunk:
                d.decompress(chunk, MiB)
                chunk = d.unconsumed_tail
    return time.process_time() - t, ""


def _reader_cpu(path: Path, safety: Safety) -> tuple[float, str]:
    abort: list[str] = []
    t = time.process_time()
    seen = [f"{e.path}: {e.kind}" for e in iter_entries(path, safety, abort=abort)]
    took = time.process_time() - t
    return took, "; ".join(seen) + (f" / aborted: {abort[0]}" if abort else "")


def _fastest(runs: int, measure: Callable[..., tuple[float, str]], *args: Any) -> tuple[float, str]:
    """The fastest of ``runs`` (the machine is shared: the least disturbed run is the closest to the cost)."""
    return min((measure(*args) for _ in range(runs)), key=lambda r: r[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3, help="measure each case this many times, keep the fastest")
    ap.add_argument("--level", type=int, default=6, help="gzip level of the zeros (6: gzip's and tar czf's default)")
    args = ap.parse_args()
    zeros, noise = (1 if args.quick else 5) * GiB, (256 if args.quick else 1024) * MiB
    cases = [  # name, member size, noise?, the limits the reader runs under
        ("zeros, default limits", zeros, False, Safety()),
        ("zeros, max_total_ratio 1e6 (no bomb stop)", zeros, False, Safety(max_total_ratio=1e6)),
        ("noise, max_member_bytes 1 MiB", noise, True, Safety(max_member_bytes=MiB)),
    ]
    print(f"CPU seconds, fastest of {args.runs} runs; zeros at gzip level {args.level}, noise at level 1")
    print("| member | size | .tar.gz | kzlabel reader | zlib inflate of the whole file | what the reader saw |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, size, is_noise, safety in cases:
            path = Path(tmp) / f"{'noise' if is_noise else 'zeros'}-{size}.tgz"
            if not path.exists():
                _write_tgz(path, size, is_noise, 1 if is_noise else args.level)
            reader, seen = _fastest(args.runs, _reader_cpu, path, safety)
            floor, _ = _fastest(args.runs, _inflate_cpu, path)
            packed = path.stat().st_size / MiB
            print(f"| {name} | {size / GiB:.2f} GiB | {packed:.1f} MiB | {reader:.2f} | {floor:.2f} | {seen} |")


if __name__ == "__main__":
    main()
