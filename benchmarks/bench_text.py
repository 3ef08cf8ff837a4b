"""mark_text + verify_text of a ~2 KB chat answer, warm, per text carrier; and the size each carrier adds.

Run: PYTHONPATH=src python benchmarks/bench_text.py [--quick] [--profile]
Keys are made in a temporary folder (as `kzlabel keygen`). Timings are medians of N warm calls (N = 20 quick, 100).
``--profile`` then prints where the time of mark_text and verify_text (plain text, c2pa carrier) goes: cProfile's top
functions by own time over N calls each.
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import kzlabel
from kzlabel.keys import generate

SENTENCE = "The capital of Kazakhstan is Astana; the largest city is Almaty, in the south-east. "
ANSWER = (SENTENCE * 25)[:2048] + "\n"


def _median_ms(fn, n: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median wall and CPU milliseconds per call: on a loaded machine a call preempted mid-way adds a scheduler slice
    (~4 ms) to the wall time, not to the CPU time."""
    walls, cpus = [], []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append((time.perf_counter() - t0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    n = 20 if "--quick" in sys.argv else 100
    with tempfile.TemporaryDirectory() as d:
        generate(Path(d), organization="Bench LLP")
        signer, trust = kzlabel.Signer.load(Path(d)), kzlabel.TrustStore.load([Path(d)])
        print(f"answer: {len(ANSWER.encode())} bytes, {n} warm calls each, median")
        print("| format | carrier | mark_text ms (CPU ms) | verify_text ms (CPU ms) | bytes added | verdict |")
        print("|---|---|---|---|---|---|")
        for fmt, text in (("plain", ANSWER), ("markdown", "# Answer\n\n" + ANSWER)):
            for carrier in ("kzlabel", "c2pa", "both"):

                def mark(text: str = text, fmt: str = fmt, carrier: str = carrier) -> str:
                    return kzlabel.mark_text(
                        text, format=fmt, signer=signer, system="Chat 1", owner="ACME LLP", text_carrier=carrier
                    )

                out = mark()  # warm-up, and the output measured
                verdict = kzlabel.verify_text(out, format=fmt, trust=trust).verdict.value
                mark_ms = _median_ms(mark, n)
                verify_ms = _median_ms(lambda o=out, f=fmt: kzlabel.verify_text(o, format=f, trust=trust), n)
                added = len(out.encode()) - len(text.encode())
                times = f"{mark_ms[0]:.1f} ({mark_ms[1]:.1f}) | {verify_ms[0]:.1f} ({verify_ms[1]:.1f})"
                print(f"| {fmt} | {carrier} | {times} | {added} | {verdict} |")
        if "--profile" in sys.argv:
            out = kzlabel.mark_text(ANSWER, signer=signer, system="Chat 1", owner="ACME LLP")
            calls = {
                "mark_text": lambda: kzlabel.mark_text(ANSWER, signer=signer, system="Chat 1", owner="ACME LLP"),
                "verify_text": lambda: kzlabel.verify_text(out, trust=trust),
            }
            for name, call in calls.items():
                profile = cProfile.Profile()
                profile.runcall(lambda c=call: [c() for _ in range(n)])
                print(f"\n{name} (plain, c2pa), {n} calls, top 12 by own time:")
                pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
