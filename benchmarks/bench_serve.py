"""HTTP verification throughput: `kzlabel.server` under uvicorn on loopback, hammered by concurrent /verify calls.

    python benchmarks/bench_serve.py [--quick] [--requests 400] [--concurrency 8] [--max-concurrency 2]
    python benchmarks/bench_serve.py --burst [--uploads 16] [--mib 200]
    python benchmarks/bench_serve.py --vs-inprocess [--quick] [--requests 1000] [--rounds 2]

``--vs-inprocess`` is issue 18's verify target: 1080p JPEGs through the service at 16 connections against
``Labeler.verify`` in-process on the same cores, with the service's RSS over all its requests; it runs
bench_serve_verify.py (whose docstring says how) with the remaining options.

``--burst --html --uploads 4`` is the slow-HTML case instead: big flat HTML files just under the text limit.

``--bybinding [--quick]`` measures the C2PA Soft Binding Resolution API instead: ``GET /matches/byBinding`` lookups
per second against a PostgreSQL registry (a throwaway cluster started here, as the tests do, filled with real manifest
stores), from keep-alive connections on loopback; every answer is checked to name the manifest recorded for that id.

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
import asyncio
import io
import json
import os
import random
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
from urllib.parse import urlencode

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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


BYBINDING_SERVER = """
import sys
from kzlabel.registry import Registry
from kzlabel.server import run
run("127.0.0.1", int(sys.argv[1]), registry=Registry.open(sys.argv[2]))
"""
BYBINDING_TARGET = 2000  # lookups/s (issue 18)


async def _lookups(ports: list[int], queries: list[tuple[str, str]], connections: int) -> list[tuple[float, bool]]:
    """Send each (path, expected manifest id) as a GET on one of ``connections`` keep-alive connections (spread over
    the service instances on ``ports``); return (latency, correct) per request. Raw HTTP/1.1 so the client costs
    little of the two cores."""
    todo = list(enumerate(queries))
    results: list[tuple[float, bool]] = [(0.0, False)] * len(queries)

    async def conn(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while todo:
                i, (path, want) = todo.pop()
                t0 = time.perf_counter()
                writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = json.loads(await reader.readexactly(length))
                ok = head.startswith(b"HTTP/1.1 200") and [m["manifestId"] for m in body["matches"]] == [want]
                results[i] = (time.perf_counter() - t0, ok)
        finally:
            writer.close()

    await asyncio.gather(*(conn(ports[i % len(ports)]) for i in range(connections)))
    return results


def bybinding(args: argparse.Namespace) -> None:
    """byBinding lookups/s against a PostgreSQL registry (see the docstring)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
    import pgcluster

    from kzlabel import Labeler
    from kzlabel.layers import c2pa as c2pa_layer
    from kzlabel.registry import SOFT_BINDING_ALG, Registry, binding_value

    entries, n_requests = (2_000, 6_000) if args.quick else (20_000, 40_000)
    with tempfile.TemporaryDirectory() as tmp_name, pgcluster.cluster() as pg:
        tmp = Path(tmp_name)
        generate(tmp / "keys")
        url = pg.new_database()
        reg = Registry.open(url)
        lab = Labeler(Signer.load(tmp / "keys"), owner="O", system="S", registry=reg)
        marked = lab.mark(png(1, 640, 480), name="p.png")
        store = reg.entry(marked.label.content_id).manifest  # a real manifest store, ~3 KB, in every row
        assert store is not None and c2pa_layer.read(store, c2pa_layer.STORE_MIME).manifest_id
        rng = random.Random(7)
        ids = [rng.randbytes(8).hex() for _ in range(entries)]
        for cid in ids:
            reg.record(cid, marked.token, "png", store, f"urn:c2pa:{cid}")
        reg.close()
        queries = []
        for _ in range(n_requests):
            cid = rng.choice(ids)
            query = urlencode({"alg": SOFT_BINDING_ALG, "value": binding_value(cid)})
            queries.append((f"/matches/byBinding?{query}", f"urn:c2pa:{cid}"))
        ports = [free_port() for _ in range(args.instances)]
        procs = []
        for port in ports:  # service instances sharing the one PostgreSQL registry
            log_path = tmp / f"server-{port}.log"
            with open(log_path, "wb") as log:
                procs.append(
                    subprocess.Popen([sys.executable, "-c", BYBINDING_SERVER, str(port), url], stdout=log, stderr=log)
                )
        try:
            for port, proc in zip(ports, procs, strict=True):
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                    wait_up(client, proc, tmp / f"server-{port}.log")
            asyncio.run(_lookups(ports, queries[:500], args.concurrency))  # warm-up: connections, prepared plans
            load = os.getloadavg()[0]  # the machine is shared: say how busy it was
            cpu0 = sum(cpu_seconds(p.pid) for p in procs)
            t0 = time.perf_counter()
            results = asyncio.run(_lookups(ports, queries, args.concurrency))
            wall = time.perf_counter() - t0
            server_cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
    good = sum(ok for _, ok in results)
    lat = [dt * 1000 for dt, _ in results]
    rate = n_requests / wall
    print(
        f"kzlabel {kzlabel.__version__} byBinding benchmark  (cpus: {os.cpu_count()}, python {sys.version.split()[0]})"
    )
    print(
        f"PostgreSQL registry: {entries} entries (real ~{len(store) / 1024:.1f} KiB manifest stores); "
        f"{n_requests} GET /matches/byBinding over {args.concurrency} keep-alive connections to {args.instances} "
        f"service instance(s); load average before the run {load:.1f}"
    )
    print(f"correct (200, the recorded manifestId): {good}/{n_requests}")
    ok = "ok" if rate >= BYBINDING_TARGET else "MISSED"
    print(f"throughput: {rate:.0f} lookups/s  (wall {wall:.2f} s)    target >= {BYBINDING_TARGET}/s  {ok}")
    print(f"latency ms: p50 {percentile(lat, 50):.2f}  p99 {percentile(lat, 99):.2f}  max {max(lat):.2f}")
    per = server_cpu / n_requests
    print(
        f"service CPU per lookup: {per * 1e6:.0f} µs (all threads; the lookups/s one core can serve: {1 / per:.0f}; "
        f"PostgreSQL's own CPU not included)"
    )
    if good != n_requests or ok == "MISSED":
        raise SystemExit(1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def main() -> None:
    if "--vs-inprocess" in sys.argv:
        sys.argv.remove("--vs-inprocess")
        from bench_serve_verify import main as vs_inprocess  # lazy: it imports this module

        vs_inprocess()
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small run (48 requests, 4 files of each kind)")
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=8, help="client-side concurrent requests")
    ap.add_argument("--max-concurrency", type=int, default=2, help="server-side verification slots")
    ap.add_argument("--burst", action="store_true", help="the hostile-load memory case instead (see above)")
    ap.add_argument("--uploads", type=int, default=16, help="--burst: concurrent big uploads")
    ap.add_argument("--mib", type=int, default=200, help="--burst: size of each big upload")
    ap.add_argument("--html", action="store_true", help="--burst with 16 MiB flat HTML uploads instead")
    ap.add_argument("--bybinding", action="store_true", help="byBinding lookups/s against PostgreSQL instead")
    ap.add_argument("--instances", type=int, default=1, help="--bybinding: service processes sharing the registry")
    args = ap.parse_args()
    if args.burst:
        burst(args)
        return
    if args.bybinding:
        bybinding(args)
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
