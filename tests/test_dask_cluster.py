"""`kzlabel batch --dask tcp://HOST:PORT` against a real dask.distributed scheduler and two worker processes on
loopback, started by the test: one worker is killed (SIGKILL) while it runs a chunk; that run reports the chunk's
members failed, and the resumed run (the same command again) completes with every member labelled exactly once --
the members the first run journalled are not labelled again, their outputs are untouched."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kzlabel import Labeler, TrustStore

N = 12  # members; each takes ~0.3 s to mark, so a chunk (two members) is running when the worker is killed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:360, 0:480]
    arr = np.dstack([x * 255 // 480, y * 255 // 360, (x + y) % 256]) + rng.normal(0, 6, (360, 480, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A scheduler and two single-thread workers (no nanny: killing the process kills the worker). The scheduler lets
    no task survive a dead worker (allowed-failures 0), so the kill shows in the run instead of being retried away."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", *args], stdout=log, stderr=log, env=env)
        procs.append(proc)
        return proc

    start("scheduler", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
    workers = [
        start(
            f"w{i}",
            "distributed.cli.dask_worker",
            address,
            "--name",
            f"w{i}",
            "--nthreads",
            "1",
            "--no-nanny",
            "--host",
            "127.0.0.1",
            "--no-dashboard",
        )
        for i in range(2)
    ]
    try:
        from dask.distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield address, workers
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)


def _journal(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return dict(db.execute("SELECT path, status FROM members WHERE status != 'dir'").fetchall())
    except sqlite3.Error:
        return {}


def _hashes(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.glob("*.jpg")}


@pytest.mark.slow
def test_a_killed_worker_fails_its_chunk_and_the_resumed_run_labels_every_member_once(
    tmp_path: Path, keydir: Path, cluster: tuple[str, list[subprocess.Popen[bytes]]]
) -> None:
    address, workers = cluster
    src, dst = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for i in range(N):
        (src / f"p{i:02d}.jpg").write_bytes(_photo(i))
    cmd = [
        sys.executable,
        "-m",
        "kzlabel.cli",
        "batch",
        str(src),
        "-o",
        str(dst),
        "--key",
        str(keydir),
        "--owner",
        "Test Owner LLP",
        "--system",
        "TestGen",
        "--dask",
        address,
    ]
    journal = Path(str(dst) + ".journal.sqlite")

    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    from dask.distributed import Client

    with Client(address, timeout=30) as watcher:
        names = {addr: info["name"] for addr, info in watcher.scheduler_info()["workers"].items()}
        deadline = time.monotonic() + 120
        while True:  # once something is journalled, kill w0 the moment it holds a running chunk
            assert first.poll() is None and time.monotonic() < deadline, "the run ended before a worker was killed"
            busy = {names.get(addr) for addr, keys in watcher.processing().items() if keys}
            if "w0" in busy and _journal(journal):
                workers[0].send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 1, out.decode() + err.decode()  # some members failed: not ok
    report = [json.loads(line) for line in Path(str(dst) + ".report.jsonl").read_text().splitlines()]
    failed = {r["path"] for r in report if r["status"] == "failed"}
    done_first = {r["path"] for r in report if r["status"] == "labelled"}
    assert failed and all("Dask worker died" in r["reason"] for r in report if r["status"] == "failed"), report
    assert failed | done_first == {f"p{i:02d}.jpg" for i in range(N)}
    before = _hashes(dst)

    again = subprocess.run(cmd, capture_output=True, timeout=300, check=False)  # the resumed run, one worker left
    assert again.returncode == 0, again.stdout.decode() + again.stderr.decode()
    final = [json.loads(line) for line in Path(str(dst) + ".report.jsonl").read_text().splitlines()]
    assert sorted(r["path"] for r in final) == sorted(f"p{i:02d}.jpg" for i in range(N))  # each member once
    assert all(r["status"] == "labelled" for r in final)
    assert {r["path"] for r in final if r.get("resumed")} == done_first  # journalled ones are not labelled again
    after = _hashes(dst)
    assert all(after[p] == before[p] for p in done_first)
    verifier = Labeler(trust=TrustStore.load([keydir]))
    for r in final:  # the file on disk is the one the journal and the report speak of
        assert hashlib.sha256((dst / r["path"]).read_bytes()).hexdigest() == r["sha256"]
        assert verifier.verify(dst / r["path"]).label.content_id == r["content_id"]
