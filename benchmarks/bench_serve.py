"""HTTP verification throughput: `kzlabel.server` under uvicorn on loopback, hammered by concurrent /verify calls.

    python benchmarks/bench_serve.py [--quick] [--requests 400] [--concurrency 8] [--max-concurrency 2]
    python benchmarks/bench_serve.py --burst [--uploads 16] [--mib 200]

``--burst --html --uploads 4`` is the slow-HTML case instead: big flat HTML files just under the text limit.

``--burst`` is the hostile-load case of issue 21: 16 concurrent 200 MB uploads against the service with its default
settings (a mix of what a hostile client sends: big supported files -- noise WAVs, which verify streams from the
spooled file -- unsupported junk, and junk behind a PNG signature that the image size limit refuses), while a small
labelled PNG is verified every 0.5 s. It samples the server's RSS every 20 ms and prints its peak, its RSS 10 s after
the last upload was answered, and the small requests' latencies, beside the targets (peak <= 600 MB, back under
400 MB within 10 s, a small request answered within 1 s).

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
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import numpy as np
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
MIB = 1024**2
PEAK_TARGET_MIB, AFTER_TARGET_MIB, SMALL_TARGET_S = 600, 400, 1.0


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


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def wav_file(path: Path, size: int) -> None:
    """A 16-bit stereo 44.1 kHz WAV of noise, ``size`` bytes in all (generated in blocks)."""
    frames = (size - 44) // 4
    rng = np.random.default_rng(7)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        for start in range(0, frames, 1 << 20):
            n = min(1 << 20, frames - start)
            w.writeframes((rng.standard_normal((n, 2)) * 3000).astype("<i2").tobytes())


def html_file(path: Path, size: int) -> None:
    """Flat HTML: a page of paragraphs, ``size`` bytes at most."""
    head, tail = b"<!DOCTYPE html><html><head><title>t</title></head><body>\n", b"</body></html>\n"
    para = b"<p>A model wrote this paragraph about the weather in Astana, <b>in bold</b> and not.</p>\n"
    with open(path, "wb") as fh:
        fh.write(head)
        fh.write(para * ((size - len(head) - len(tail)) // len(para)))
        fh.write(tail)


def junk_file(path: Path, size: int, prefix: bytes = b"") -> None:
    rng = np.random.default_rng(len(prefix) + 11)
    with open(path, "wb") as fh:
        fh.write(prefix)
        left = size - len(prefix)
        while left > 0:
            n = min(left, 16 * MIB)
            fh.write(rng.bytes(n))
            left -= n


def start_server(port: int, trust: Path, slots: int, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port), str(trust), str(slots)], stdout=log, stderr=log
        )
    return proc


def wait_up(client: httpx.Client, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server did not start:\n{log_path.read_text()}")
        time.sleep(0.1)


def burst(args: argparse.Namespace) -> None:
    """16 concurrent 200 MB uploads + a small verify every 0.5 s; RSS sampled throughout (see the docstring)."""
    size = args.mib * MIB
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        keys = tmp / "keys"
        generate(keys)
        small = kzlabel.mark(png(1, 640, 480), signer=Signer.load(keys), system="S", owner="O", name="s.png")
        kinds = {
            "wav": tmp / "big.wav",  # supported: verified, streamed from the spool file
            "junk": tmp / "junk.bin",  # unsupported: 415 once its header is read
            "fakepng": tmp / "fake.png",  # a PNG signature over junk: over the image size limit, 413
        }
        if args.html:  # issue 21's slow-HTML case: flat HTML just under the service's 16 MiB text limit
            kinds = {"html": tmp / "big.html"}
            html_file(kinds["html"], 16 * MIB - 4096)
            plan = ["html"] * args.uploads
        else:
            wav_file(kinds["wav"], size)
            junk_file(kinds["junk"], size)
            junk_file(kinds["fakepng"], size, b"\x89PNG\r\n\x1a\n")
            plan = [("wav", "wav", "fakepng", "junk")[i % 4] for i in range(args.uploads)]

        port = free_port()
        log_path = tmp / "server.log"
        proc = start_server(port, keys / "trust.pem", args.max_concurrency, log_path)
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                rss = rss_mib(proc.pid)
                if rss is not None:
                    samples.append((time.monotonic(), rss))
                time.sleep(0.02)

        base = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(base_url=base, timeout=600) as client:
                wait_up(client, proc, log_path)
                client.post("/verify", params={"name": "s.png"}, content=small)  # warm-up
                idle_rss = rss_mib(proc.pid) or 0.0
                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()

                def upload(kind: str) -> tuple[str, int, float, str]:
                    t0 = time.perf_counter()
                    # a fresh connection each: a pooled one the server has just closed (keep-alive) is retried by
                    # the client with the file already partly read, so the server would get the rest of the file only
                    with open(kinds[kind], "rb") as fh, httpx.Client(base_url=base, timeout=600) as own:
                        r = own.post("/verify", params={"name": kinds[kind].name}, content=fh)
                    what = r.json().get("verdict") or f"{r.json().get('error')}: {r.json().get('reason')}"
                    return kind, r.status_code, time.perf_counter() - t0, what

                small_lat: list[float] = []
                t_start = time.monotonic()
                with ThreadPoolExecutor(max_workers=args.uploads) as pool:
                    futures = [pool.submit(upload, kind) for kind in plan]
                    while not all(f.done() for f in futures):
                        time.sleep(0.5)
                        t0 = time.perf_counter()
                        r = client.post("/verify", params={"name": "s.png"}, content=small)
                        if r.status_code != 200 or r.json().get("verdict") != "compliant":
                            raise SystemExit(f"small request failed during the burst: {r.status_code} {r.text}")
                        small_lat.append(time.perf_counter() - t0)
                    results = [f.result() for f in futures]
                t_done = time.monotonic()
                time.sleep(10.2)
                stop.set()
                sampler.join()
            peak = peak_rss_mib(proc.pid) or max(r for _, r in samples)
        finally:
            stop.set()
            proc.terminate()
            proc.wait(timeout=30)

    mib = (16 * MIB - 4096) / MIB if args.html else args.mib
    after = [r for t, r in samples if t >= t_done]
    at_10s = next((r for t, r in reversed(samples) if t <= t_done + 10.0), after[-1])
    under = next((t - t_done for t, r in samples if t >= t_done and r < AFTER_TARGET_MIB), None)
    print(f"kzlabel {kzlabel.__version__} serve burst  (cpus: {os.cpu_count()}, python {sys.version.split()[0]})")
    print(
        f"{args.uploads} concurrent uploads of {mib:.0f} MiB ({', '.join(f'{plan.count(k)} {k}' for k in kinds)}), "
        f"default limits, {args.max_concurrency} job slots + 1 express; burst took {t_done - t_start:.1f} s"
    )
    for kind in kinds:
        rows = [r for r in results if r[0] == kind]
        answers = sorted({f"{r[1]} {r[3]}" for r in rows})
        print(f"  {kind:>8}: {', '.join(answers)}  slowest {max(r[2] for r in rows):.1f} s")
    print(f"server RSS idle: {idle_rss:.0f} MiB")
    ok_peak = "ok" if peak <= PEAK_TARGET_MIB else "MISSED"
    print(f"server peak RSS: {peak:.0f} MiB    target <= {PEAK_TARGET_MIB} MiB  {ok_peak}")
    ok_after = "ok" if at_10s < AFTER_TARGET_MIB else "MISSED"
    when = f"under {AFTER_TARGET_MIB} MiB after {under:.1f} s" if under is not None else "never under"
    print(f"RSS 10 s after:  {at_10s:.0f} MiB    target < {AFTER_TARGET_MIB} MiB  {ok_after}  ({when})")
    worst = max(small_lat) if small_lat else float("nan")
    ok_small = "ok" if worst <= SMALL_TARGET_S else "MISSED"
    print(
        f"small PNG verify during the burst: n={len(small_lat)}  p50 {percentile(small_lat, 50) * 1000:.0f} ms  "
        f"max {worst * 1000:.0f} ms    target <= {SMALL_TARGET_S * 1000:.0f} ms  {ok_small}"
    )
    if "MISSED" in (ok_peak, ok_after, ok_small):
        raise SystemExit(1)


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
    ap.add_argument("--burst", action="store_true", help="the hostile-load memory case instead (see above)")
    ap.add_argument("--uploads", type=int, default=16, help="--burst: concurrent big uploads")
    ap.add_argument("--mib", type=int, default=200, help="--burst: size of each big upload")
    ap.add_argument("--html", action="store_true", help="--burst with 16 MiB flat HTML uploads instead")
    args = ap.parse_args()
    if args.burst:
        burst(args)
        return
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
