"""HTTP verification throughput: `kzlabel.server` under uvicorn on loopback, hammered by concurrent /verify calls.

    python benchmarks/bench_serve.py [--quick] [--requests 400] [--concurrency 8] [--max-concurrency 2]

The server runs in its own process (as in production) so its peak RSS can be read on its own: VmHWM from
/proc/<pid>/status on Linux, else ``getrusage(RUSAGE_CHILDREN)`` after it exits. The client mixes labelled markdown
files and labelled PNGs (synthetic 1024x768 images), and checks every response's verdict is "compliant" and trusted,
so a fast-but-wrong server cannot look good.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
from PIL import Image

import kzlabel
from kzlabel import Signer
from kzlabel.keys import generate

SERVER = """
import sys
from kzlabel import TrustStore
from kzlabel.server import run
run("127.0.0.1", int(sys.argv[1]), trust=TrustStore.load([sys.argv[2]]), max_concurrency=int(sys.argv[3]))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png(seed: int, w: int = 1024, h: int = 768) -> bytes:
    img = Image.effect_mandelbrot((w, h), (-2.0 + seed * 0.05, -1.2, 1.0, 1.2), 64).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def markdown(seed: int) -> bytes:
    para = f"Paragraph {seed}: a model wrote this sentence about the weather in Astana. " * 20
    return (f"# Generated report {seed}\n\n" + "\n\n".join([para] * 10) + "\n").encode()


def peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small run (48 requests, 4 files of each kind)")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=8, help="client-side concurrent requests")
    ap.add_argument("--max-concurrency", type=int, default=2, help="server-side verification slots")
    args = ap.parse_args()
    n_requests = 48 if args.quick else args.requests
    n_files = 4 if args.quick else 12

    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys"
        generate(keys)
        signer = Signer.load(keys)
        files: list[tuple[str, bytes]] = []
        for i in range(n_files):
            files.append((f"r{i}.md", kzlabel.mark(markdown(i), signer=signer, system="S", owner="O", name=f"r{i}.md")))
            files.append((f"p{i}.png", kzlabel.mark(png(i), signer=signer, system="S", owner="O", name=f"p{i}.png")))

        port = free_port()
        log_path = Path(tmp) / "server.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", SERVER, str(port), str(keys / "trust.pem"), str(args.max_concurrency)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=120) as client:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"server did not start:\n{log_path.read_text()}")
                    time.sleep(0.1)

                for name, data in files[:2]:  # warm-up: imports, first-call caches
                    client.post("/verify", params={"name": name}, content=data)

                def one(i: int) -> tuple[float, str, int]:
                    name, data = files[i % len(files)]
                    t0 = time.perf_counter()
                    r = client.post("/verify", params={"name": name}, content=data)
                    dt = time.perf_counter() - t0
                    body = r.json()
                    ok = r.status_code == 200 and body.get("verdict") == "compliant" and body.get("trusted") is True
                    return dt, name.rsplit(".", 1)[1], int(ok)

                t0 = time.perf_counter()
                with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                    results = list(pool.map(one, range(n_requests)))
                wall = time.perf_counter() - t0
            rss = peak_rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        if rss is None:
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux

    lat = [r[0] * 1000 for r in results]
    good = sum(r[2] for r in results)
    sizes = {kind: statistics.mean(len(d) for n, d in files if n.endswith(kind)) / 1024 for kind in (".md", ".png")}
    print(f"kzlabel {kzlabel.__version__} serve benchmark  (cpus: {os.cpu_count()}, python {sys.version.split()[0]})")
    print(
        f"requests: {n_requests}  client concurrency: {args.concurrency}  server slots: {args.max_concurrency}  "
        f"files: {n_files} md (~{sizes['.md']:.0f} KiB) + {n_files} png (~{sizes['.png']:.0f} KiB)"
    )
    print(f"correct (200, compliant, trusted): {good}/{n_requests}")
    print(f"throughput: {n_requests / wall:.1f} requests/s  (wall {wall:.2f} s)")
    print(f"latency ms: p50 {percentile(lat, 50):.1f}  p99 {percentile(lat, 99):.1f}  max {max(lat):.1f}")
    for kind in ("md", "png"):
        sub = [r[0] * 1000 for r in results if r[1] == kind]
        print(f"  {kind:>3}: p50 {percentile(sub, 50):.1f}  p99 {percentile(sub, 99):.1f}  (n={len(sub)})")
    print(f"server peak RSS: {rss:.1f} MiB")
    if good != n_requests:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
