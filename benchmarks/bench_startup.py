"""Cold start: a fresh `kzlabel verify` of one 1080p JPEG beside `exiftool` reading the same file.

    python benchmarks/bench_startup.py [--rounds 7] [--baseline OTHER/src]

Every command runs in a fresh process each round (nothing warm but the OS page cache), and the commands take turns
within a round, so load from other jobs on a shared machine falls on all of them alike; the table gives medians. The
JPEG (1920×1080, quality 90) is generated from a fixed seed and marked by kzlabel with every layer, and each verify
run must say "compliant", so a fast-but-wrong verify cannot look good. `kzlabel` is run as its console script does
(``from kzlabel.cli import main``) with this interpreter, so PYTHONPATH picks the checkout measured;
``--baseline`` adds a verify row run from another source tree (``git archive OLD src | tar -x -C /tmp/old``), in the
same rounds, for a before/after in one run.

Issue 15's target: the kzlabel/exiftool ratio for verify within 5.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

import kzlabel
from kzlabel import Signer
from kzlabel.keys import generate

SEED = 15
CLI = "import sys; from kzlabel.cli import main; sys.exit(main())"


def photo(path: Path, seed: int = SEED) -> None:
    """A 1080p photo-like JPEG: smooth colour gradients with sensor-like noise (so it compresses like a photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:1080, 0:1920].astype(np.float32)
    base = np.stack([128 + 100 * np.sin(x / 310 + seed), 128 + 90 * np.cos(y / 170), 96 + (x + y) / 40], axis=-1)
    pixels = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def timed(argv: Sequence[str], expect: str, env: dict[str, str] | None = None) -> float:
    """Wall seconds of one run; fails loudly when the command did not do its job."""
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    elapsed = time.perf_counter() - start
    if expect not in proc.stdout:
        raise SystemExit(f"{argv[0]} {' '.join(argv[-2:])}: expected {expect!r}, got rc={proc.returncode}\n"
                         f"{proc.stdout}{proc.stderr}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--baseline", type=Path, help="a src/ directory holding another kzlabel to time verify with")
    args = ap.parse_args()

    exiftool = shutil.which("exiftool")
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="kzlabel-bench-") as tmp:
        root = Path(tmp)
        generate(root / "keys")
        photo(root / "source.jpg")
        marked = root / "photo.jpg"
        kzlabel.mark(root / "source.jpg", marked, signer=Signer.load(root / "keys"), system="Bench", owner="Bench LLP")
        f = str(marked)
        commands: dict[str, tuple[list[str], str, dict[str, str] | None]] = {
            "python -c pass (interpreter floor)": ([py, "-c", "print('ok')"], "ok", None),
            'python -c "import kzlabel"': ([py, "-c", "import kzlabel; print('ok')"], "ok", None),
            "kzlabel --help": ([py, "-c", CLI, "--help"], "verify", None),
            "kzlabel verify FILE": ([py, "-c", CLI, "verify", f], "compliant", None),
        }
        if args.baseline:
            env = {**os.environ, "PYTHONPATH": str(args.baseline.resolve())}
            commands["kzlabel verify FILE (baseline)"] = ([py, "-c", CLI, "verify", f], "compliant", env)
        if exiftool:
            commands["exiftool FILE"] = ([exiftool, f], "Image Size", None)
        else:
            print("exiftool not found: no ratio")
        load_before = os.getloadavg()
        times: dict[str, list[float]] = {name: [] for name in commands}
        names = list(commands)
        for r in range(args.rounds):
            # rotate the order each round so no command always runs right after the heaviest one
            for name in names[r % len(names):] + names[: r % len(names)]:
                times[name].append(timed(*commands[name]))
        load_after = os.getloadavg()

    print(f"kzlabel from {Path(kzlabel.__file__).parent}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    if args.baseline:
        print(f"baseline kzlabel from {args.baseline.resolve()}")
    print(f"1920x1080 JPEG q90 marked with every layer; {args.rounds} rounds, interleaved, a fresh process each run")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)\n")
    print("| command | median s | min s | max s |")
    print("|---|---|---|---|")
    for name in names:
        t = times[name]
        print(f"| {name} | {statistics.median(t):.3f} | {min(t):.3f} | {max(t):.3f} |")
    if exiftool:
        base = statistics.median(times["exiftool FILE"])
        print()
        for name in names:
            if name.startswith("kzlabel verify"):
                print(f"{name} / exiftool (medians): ×{statistics.median(times[name]) / base:.1f}  (target: ≤ ×5)")


if __name__ == "__main__":
    main()
