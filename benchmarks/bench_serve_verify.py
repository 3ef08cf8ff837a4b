"""Verify throughput of the service against the library in-process, on the same cores (issue 18's target).

    python benchmarks/bench_serve_verify.py [--quick] [--requests 2000] [--concurrency 16] [--rounds 2]

Marks a few 1080p JPEG "photos" (fixtures/image_signals.natural_like, quality 90), then alternates, ``--rounds``
times: (a) ``Labeler.verify`` called in this process from as many threads as the service has job slots (2, its
default), over ``--requests`` verifies; (b) the same number of ``POST /verify`` uploads to ``kzlabel.server.run`` in
its own process from ``--concurrency`` keep-alive connections (a raw HTTP/1.1 client on asyncio, so the client takes
little of the two cores). Every answer must be ``compliant`` and trusted. Prints both rates, the ratio
in-process / service (target <= 1.3), the service's p50/p99 latency, and its RSS sampled through all its rounds
(flat: the highest RSS in the second half of the service's requests is within 10% of the first half's). Alternating
the two keeps a shared machine's load from favouring either side; the ratio uses each side's best round.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
from bench_serve import SERVER, free_port, percentile, rss_mib, wait_up
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from image_signals import natural_like  # noqa: E402

import kzlabel  # noqa: E402
from kzlabel import Labeler, Signer, TrustStore  # noqa: E402
from kzlabel.keys import generate  # noqa: E402

RATIO_TARGET = 1.3  # in-process rate / service rate
FLAT_GROWTH = 0.10  # RSS growth allowed from the first half of the service's requests to the second
SLOTS = 2  # the service's default job slots (ServiceLimits.max_concurrency)


def photos(n: int) -> list[bytes]:
    out = []
    for seed in range(n):
        buf = io.BytesIO()
        Image.fromarray(natural_like(1080, 1920, seed)).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def in_process(verifier: Labeler, files: list[bytes], n: int) -> tuple[float, int]:
    """(verifies/s, correct) with SLOTS threads calling ``verifier.verify``, as the service's job slots do."""

    def one(i: int) -> bool:
        report = verifier.verify(files[i % len(files)], name=f"p{i % len(files)}.jpg")
        return report.verdict == "compliant" and report.trusted is True

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=SLOTS) as pool:
        good = sum(pool.map(one, range(n)))
    return n / (time.perf_counter() - t0), good


async def _uploads(port: int, files: list[bytes], n: int, connections: int) -> list[tuple[float, bool]]:
    """``n`` POST /verify uploads over ``connections`` keep-alive connections: (latency, compliant and trusted)."""
    todo = list(range(n))
    results: list[tuple[float, bool]] = [(0.0, False)] * n

    async def conn() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while todo:
                i = todo.pop()
                data = files[i % len(files)]
                t0 = time.perf_counter()
                head = (
                    f"POST /verify?name=p{i % len(files)}.jpg HTTP/1.1\r\nHost: bench\r\n"
                    f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
                )
                writer.write(head.encode() + data)
                got = await reader.readuntil(b"\r\n\r\n")
                length = int(got.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = json.loads(await reader.readexactly(length))
                ok = got.startswith(b"HTTP/1.1 200") and body["verdict"] == "compliant" and body["trusted"] is True
                results[i] = (time.perf_counter() - t0, ok)
        finally:
            writer.close()

    await asyncio.gather(*(conn() for _ in range(connections)))
    return results


def service(port: int, pid: int, files: list[bytes], n: int, connections: int) -> dict[str, Any]:
    """One service round: rate, correct answers, latencies and the server's RSS through the run."""
    samples: list[tuple[float, float]] = []  # (time, RSS MiB)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss = rss_mib(pid)
            if rss is not None:
                samples.append((time.perf_counter(), rss))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    t0 = time.perf_counter()
    sampler.start()
    try:
        results = asyncio.run(_uploads(port, files, n, connections))
    finally:
        stop.set()
        sampler.join()
    wall = time.perf_counter() - t0
    lat = [dt * 1000 for dt, _ in results]
    return {
        "rate": n / wall,
        "good": sum(ok for _, ok in results),
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "rss": [r for _, r in samples],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200 requests a round, 4 photos")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16, help="client connections to the service")
    ap.add_argument("--rounds", type=int, default=2, help="in-process / service alternations")
    args = ap.parse_args()
    n = 200 if args.quick else args.requests
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        generate(tmp / "keys")
        signer = Signer.load(tmp / "keys")
        marker = Labeler(signer, owner="Bench LLP", system="Bench")
        files = [marker.mark(p, name=f"p{i}.jpg").data for i, p in enumerate(photos(4 if args.quick else 8))]
        assert all(f is not None for f in files)
        verifier = Labeler(trust=TrustStore.load([tmp / "keys" / "trust.pem"]))
        in_process(verifier, files, len(files))  # warm-up: imports, first-call caches

        port = free_port()
        log_path = tmp / "server.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", SERVER, str(port), str(tmp / "keys" / "trust.pem"), str(SLOTS)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        inproc: list[tuple[float, int]] = []
        served: list[dict[str, Any]] = []
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                wait_up(client, proc, log_path)
            asyncio.run(_uploads(port, files, len(files) * 2, 2))  # warm-up
            load = os.getloadavg()[0]
            for _ in range(args.rounds):
                inproc.append(in_process(verifier, files, n))
                served.append(service(port, proc.pid, files, n, args.concurrency))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    sizes = sum(len(f) for f in files) / len(files) / 1024
    best_in = max(r for r, _ in inproc)
    best = max(served, key=lambda s: s["rate"])
    ratio = best_in / best["rate"]
    print(
        f"kzlabel {kzlabel.__version__} service vs in-process verify  (cpus: {os.cpu_count()}, "
        f"python {sys.version.split()[0]}, load average before {load:.1f})"
    )
    print(
        f"{len(files)} marked 1920x1080 JPEGs (~{sizes:.0f} KiB); {n} verifies a round, {args.rounds} rounds; "
        f"in-process: {SLOTS} threads; service: {SLOTS} job slots, {args.concurrency} client connections"
    )
    for i, ((rate, good), s) in enumerate(zip(inproc, served, strict=True)):
        print(
            f"round {i + 1}: in-process {rate:.1f}/s ({good}/{n} correct)   service {s['rate']:.1f}/s "
            f"({s['good']}/{n} correct, p50 {s['p50']:.0f} ms, p99 {s['p99']:.0f} ms, RSS {s['rss'][0]:.0f} "
            f"-> {s['rss'][-1]:.0f} MiB, peak {max(s['rss']):.0f})"
        )
    ok = "ok" if ratio <= RATIO_TARGET else "MISSED"
    print(f"in-process / service (best rounds): {ratio:.2f}    target <= {RATIO_TARGET}  {ok}")
    rss = [r for s in served for r in s["rss"]]
    first, second = max(rss[: len(rss) // 2]), max(rss[len(rss) // 2 :])
    growth = second / first - 1
    flat = "ok" if growth < FLAT_GROWTH else "MISSED"
    print(
        f"service RSS over its {n * len(served)} requests: highest {first:.0f} MiB in the first half, {second:.0f} "
        f"in the second ({growth * 100:+.1f}%)    target < {FLAT_GROWTH * 100:+.0f}%  {flat}"
    )
    all_good = all(g == n for _, g in inproc) and all(s["good"] == n for s in served)
    if not all_good or "MISSED" in (ok, flat):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
