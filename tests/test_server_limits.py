"""The service under hostile clients (issue 21 items 2-4): the real uvicorn server on an ephemeral loopback port for the
connection cases (silent connections, half-sent headers, header and body trickles, keep-alive, the connection cap),
and the app for spooling, budgets, per-format limits and the express lane. Timeouts are set short so each case
takes about a second."""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image
from starlette.testclient import TestClient

import kzlabel
from kzlabel import Signer, TrustStore, cli, pipeline
from kzlabel.server import DEFAULT_FORMAT_MAX_BYTES, HTTPFailure, ServiceLimits, Worker, create_app
from kzlabel.server.connections import server_config

MD = b"# Report\n\nSome *markdown* text written by a model.\n"


def _png(w: int = 256, h: int = 192) -> bytes:
    y, x = np.mgrid[0:h, 0:w]
    img = Image.fromarray(np.dstack([x % 256, y % 256, (x * y) % 256]).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@contextmanager
def live(**settings: Any) -> Iterator[tuple[int, Any]]:
    """The real service (uvicorn + our protocol guard) on 127.0.0.1:<ephemeral>, stopped on exit."""
    app = create_app(**settings)
    config = server_config(app, app.state.limits, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port, app
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (reading whatever it sent first), None if still open after."""
    start = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - start < seconds:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - start
    return None


def _response(sock: socket.socket, timeout: float = 5) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _rest(sock: socket.socket) -> bytes:
    """Whatever the server still sends before it closes the connection."""
    sock.settimeout(2)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


HOSTILE = {"header_timeout_s": 0.5, "body_timeout_s": 0.5, "keep_alive_s": 0.5, "min_upload_rate": 1000}


@pytest.fixture(scope="module")
def hostile() -> Iterator[int]:
    with live(**HOSTILE) as (port, _):
        yield port


def test_silent_connections_are_closed_at_the_header_timeout(hostile: int) -> None:
    socks = [_connect(hostile) for _ in range(30)]
    try:
        waits = [_closed_within(s, 3) for s in socks]
    finally:
        for s in socks:
            s.close()
    assert all(w is not None for w in waits), waits
    assert max(w for w in waits if w is not None) < 2.5


def test_half_sent_headers_are_closed(hostile: int) -> None:
    socks = [_connect(hostile) for _ in range(10)]
    try:
        for s in socks:
            s.sendall(b"POST /verify HTTP/1.1\r\nHost: x\r\nContent-Le")
        waits = [_closed_within(s, 3) for s in socks]
    finally:
        for s in socks:
            s.close()
    assert all(w is not None for w in waits), waits


def test_headers_trickled_one_byte_at_a_time_are_cut_off(hostile: int) -> None:
    """Bytes keep coming, but the headers are never complete within the header timeout."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 100 + b"\r\n\r\n"
    sock = _connect(hostile)
    start = time.monotonic()
    cut = None
    try:
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                cut = time.monotonic() - start
                break
            if _closed_within(sock, 0.05) is not None:
                cut = time.monotonic() - start
                break
    finally:
        sock.close()
    assert cut is not None and cut < 2.0, cut


def test_oversized_headers_are_refused_before_they_are_held(hostile: int) -> None:
    """llhttp has no limit of its own: the guard refuses a head over MAX_HEAD_BYTES (400, closed), sent at once or
    as endless header lines, while a head just under it is served."""
    from kzlabel.server.connections import MAX_HEAD_BYTES

    def ask(head: bytes) -> bytes:
        sock = _connect(hostile)
        try:
            with contextlib.suppress(OSError):
                sock.sendall(head)
            with contextlib.suppress(OSError):
                return _response(sock)
            return b""
        finally:
            sock.close()

    under = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * (MAX_HEAD_BYTES - 200) + b"\r\n\r\n"
    assert ask(under).startswith(b"HTTP/1.1 200")
    one_big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n"
    assert ask(one_big).startswith(b"HTTP/1.1 400")
    many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaa\r\n" * 2000 + b"\r\n"
    assert ask(many).startswith(b"HTTP/1.1 400")
    long_url = b"GET /healthz?" + b"a" * MAX_HEAD_BYTES + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert ask(long_url).startswith(b"HTTP/1.1 400")


def test_body_with_a_silent_gap_is_408(hostile: int) -> None:
    """1 byte/s: each gap is longer than the body timeout."""
    sock = _connect(hostile)
    try:
        sock.sendall(b"POST /verify?name=x.md HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n#")
        head = _response(sock)
        assert head.startswith(b"HTTP/1.1 408"), head
        assert b"body_timeout" in head + _rest(sock)
        assert _closed_within(sock, 2) is not None
    finally:
        sock.close()


def test_body_trickle_under_the_minimum_rate_is_408(hostile: int) -> None:
    """5 bytes/s, never a gap as long as the body timeout, but far under min_upload_rate: cut once the grace ends."""
    sock = _connect(hostile)
    start = time.monotonic()
    head = b""
    try:
        sock.sendall(b"POST /verify?name=x.md HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        sock.settimeout(0.2)
        for _ in range(50):
            try:
                sock.sendall(b"a")
                head += sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if head:
                break
        head += _rest(sock)
    finally:
        sock.close()
    assert head.startswith(b"HTTP/1.1 408") and b"body_too_slow" in head, head
    assert time.monotonic() - start < 3


def test_idle_keep_alive_connection_is_closed(hostile: int) -> None:
    sock = _connect(hostile)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _response(sock).startswith(b"HTTP/1.1 200")
        assert _closed_within(sock, 2) is not None
    finally:
        sock.close()


def test_connection_cap_answers_503_until_connections_free_up() -> None:
    with live(max_connections=4, header_timeout_s=1.0) as (port, _):
        idle = [_connect(port) for _ in range(4)]
        time.sleep(0.1)
        try:
            extra = _connect(port)
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _response(extra).startswith(b"HTTP/1.1 503")
            extra.close()
            for s in idle:  # the header timeout frees their places
                assert _closed_within(s, 3) is not None
        finally:
            for s in idle:
                s.close()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/healthz").status_code == 200


def test_spooled_upload_over_the_live_server(signer: Signer, trust: TrustStore) -> None:
    marked = kzlabel.mark(_png(), signer=signer, system="S", owner="O", name="x.png")
    with live(trust=trust, spool_threshold=1024) as (port, app):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            r = client.post("/verify", params={"name": "pic.png"}, content=marked)
            assert r.status_code == 200, r.text
            assert r.json()["verdict"] == "compliant" and r.json()["source"] == "pic.png"
            r = client.post("/verify", files={"file": ("up.png", marked, "image/png")})
            assert r.status_code == 200 and r.json()["source"] == "up.png"
        uploads = app.state.uploads
        assert uploads.spooled() == [] and uploads.memory.used == 0 and uploads.disk.used == 0


# --- spooling and budgets (the app through TestClient) ---------------------------------------------------------------


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What Labeler.verify was handed (bytes or a spool path, with the path's mode and its folder's)."""
    calls: list[Any] = []
    original = pipeline.Labeler.verify

    def spy(self: pipeline.Labeler, src: Any, **kw: Any) -> Any:
        if isinstance(src, Path):
            calls.append((src, stat.S_IMODE(src.stat().st_mode), stat.S_IMODE(src.parent.stat().st_mode)))
        else:
            calls.append(type(src))
        return original(self, src, **kw)

    monkeypatch.setattr(pipeline.Labeler, "verify", spy)
    return calls


def test_small_upload_stays_in_memory_big_one_spools_to_a_private_file(seen: list[Any], tmp_path: Path) -> None:
    body = MD + b"x" * 3000
    with TestClient(create_app(spool_threshold=2048, spool_dir=tmp_path)) as c:
        assert c.post("/verify", params={"name": "a.md"}, content=MD).status_code == 200
        r = c.post("/verify", params={"name": "a.md"}, content=body)
        assert r.status_code == 200 and r.json()["source"] == "a.md"
        uploads = c.app.state.uploads  # type: ignore[attr-defined]
        assert uploads.spooled() == []  # removed when the job ended
        assert uploads.memory.used == 0 and uploads.disk.used == 0
    assert seen[0] is bytes
    path, mode, folder_mode = seen[1]
    assert mode == 0o600 and folder_mode == 0o700
    assert path.parent.parent == tmp_path
    assert re.fullmatch(rf"\.upload\.kz{os.getpid()}\.\w+\.kztmp", path.name)
    assert not path.exists()
    assert not any(tmp_path.iterdir())  # the spool folder went with the app's lifespan


def test_memory_budget_shared_by_all_requests_spools_the_overflow(seen: list[Any]) -> None:
    with TestClient(create_app(spool_threshold=4096, memory_budget=100)) as c:
        assert c.post("/verify", params={"name": "a.md"}, content=MD + b"y" * 200).status_code == 200
    assert isinstance(seen[0], tuple)  # under the threshold, but over the budget: spooled


def test_spool_budget_refuses_with_503_and_retry_after() -> None:
    with TestClient(create_app(spool_threshold=100, spool_budget=1000)) as c:
        r = c.post("/verify", params={"name": "a.md"}, content=MD + b"z" * 5000)
        assert r.status_code == 503 and r.json()["error"] == "busy" and r.headers["retry-after"] == "5"
        assert c.post("/verify", params={"name": "a.md"}, content=MD + b"z" * 500).status_code == 200
        uploads = c.app.state.uploads  # type: ignore[attr-defined]
        assert uploads.disk.used == 0


def test_per_format_size_limits() -> None:
    limits = {**DEFAULT_FORMAT_MAX_BYTES, "text": 100, "png": 1000}
    with TestClient(create_app(format_max_bytes=limits)) as c:
        r = c.post("/verify", params={"name": "a.md"}, content=MD + b"q" * 200)
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
        assert "markdown" in r.json()["reason"] and "100 bytes" in r.json()["reason"]
        assert c.post("/verify", params={"name": "a.md"}, content=MD).status_code == 200
        r = c.post("/verify", content=_png())
        assert r.status_code == 413 and "png" in r.json()["reason"]


def test_service_pixel_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(create_app(max_pixels=256 * 191)) as c:
        r = c.post("/verify", content=_png())
    assert r.status_code == 413 and r.json()["error"] == "limit_exceeded"
    assert ServiceLimits().max_pixels < kzlabel.Limits().max_pixels


def test_mark_of_a_spooled_upload_streams_the_output_from_a_file(signer: Signer, trust: TrustStore) -> None:
    app = create_app(
        trust=trust, signer=signer, owner="Owner LLP", system="Gen", spool_threshold=1024, mark_without_token=True
    )
    with TestClient(app) as c:
        r = c.post("/mark", params={"name": "pic.png"}, content=_png())
        assert r.status_code == 200, r.text
        assert r.headers["x-kzlabel-format"] == "png"
        v = c.post("/verify", params={"name": "pic.png"}, content=r.content).json()
        assert v["verdict"] == "compliant" and v["label"]["content_id"] == r.headers["x-kzlabel-content-id"]
        assert app.state.uploads.spooled() == []
        r = c.post("/mark", params={"name": "x.bin"}, content=b"\x00\x01garbage" * 200)
        assert r.status_code == 415 and app.state.uploads.spooled() == []


def test_error_reasons_never_show_the_spool_path() -> None:
    with TestClient(create_app(spool_threshold=100)) as c:
        r = c.post("/verify", params={"name": "x.png"}, content=_png()[:3000])
    assert r.status_code == 422
    assert ".kztmp" not in r.text and "kzlabel-serve" not in r.text


# --- the worker: express lane and cleanup after the deadline --------------------------------------------------------


def test_small_job_does_not_queue_behind_big_ones() -> None:
    """Big jobs fill the general slots and queue; a small one takes the express slot and is done at once. Without
    an express slot it waits its turn."""

    async def scenario(express: int) -> float:
        worker = Worker(max_concurrency=1, timeout_s=10, express_slots=express)
        took: list[float] = []
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(worker.run, lambda: time.sleep(0.4))
            await anyio.sleep(0.05)
            t0 = time.monotonic()
            await worker.run(lambda: None, small=True)
            took.append(time.monotonic() - t0)
        return took[0]

    assert anyio.run(scenario, 1) < 0.2
    assert anyio.run(scenario, 0) > 0.7


def test_after_runs_once_when_an_abandoned_job_really_ends() -> None:
    """A spool file must outlive a 504'd job that is still reading it: ``after`` waits for the thread."""
    worker = Worker(max_concurrency=1, timeout_s=0.2)
    calls: list[tuple[str, bool]] = []

    async def scenario() -> None:
        with pytest.raises(HTTPFailure):
            await worker.run(lambda: time.sleep(0.6), after=lambda ok: calls.append(("slow", ok)))
        assert calls == []  # still running
        with pytest.raises(HTTPFailure):  # times out waiting for the slot: never started
            await worker.run(lambda: None, after=lambda ok: calls.append(("queued", ok)))
        await anyio.sleep(0.6)
        await worker.run(lambda: None, after=lambda ok: calls.append(("done", ok)))

    anyio.run(scenario)
    assert calls == [("queued", False), ("slow", False), ("done", True)]


# --- the command line -----------------------------------------------------------------------------------------------


def test_serve_options_reach_the_service_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    got: dict[str, Any] = {}
    monkeypatch.setattr("kzlabel.server.run", lambda host, port, **kw: got.update(kw, host=host, port=port))
    argv = [
        "serve", "--port", "0", "--max-upload", "10M", "--format-limit", "html=4M", "--max-pixels", "1000",
        "--spool-threshold", "64K", "--memory-budget", "8M", "--spool-budget", "1G", "--max-concurrency", "3",
        "--express-slots", "2", "--express-bytes", "512K", "--timeout", "30", "--header-timeout", "2",
        "--body-timeout", "3", "--min-upload-rate", "1K", "--keep-alive", "4", "--max-connections", "9",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    lim: ServiceLimits = got["limits"]
    assert (lim.max_upload, lim.max_pixels, lim.spool_threshold, lim.memory_budget) == (
        10 << 20,
        1000,
        64 << 10,
        8 << 20,
    )
    assert (lim.spool_budget, lim.max_concurrency, lim.express_slots, lim.express_bytes) == (1 << 30, 3, 2, 512 << 10)
    assert (lim.timeout_s, lim.header_timeout_s, lim.body_timeout_s, lim.min_upload_rate) == (30, 2, 3, 1024)
    assert (lim.keep_alive_s, lim.max_connections) == (4, 9)
    assert lim.format_max_bytes == {**DEFAULT_FORMAT_MAX_BYTES, "html": 4 << 20}
    assert (
        lim.max_bytes_for("text", "html") == 4 << 20 and lim.max_bytes_for("text", "markdown") == 10 << 20
    )  # never over max_upload
    got.clear()
    assert cli.main(["serve"]) == 0
    assert got["limits"] == ServiceLimits()


def test_serve_refuses_bad_limits(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--max-upload", "lots"]) == 2
    assert "not a size" in capsys.readouterr().err
    assert cli.main(["serve", "--max-connections", "0"]) == 2
    assert "max-connections" in capsys.readouterr().err


_HEAPS = """
import ctypes, ctypes.util, os, sys, tempfile, threading
import numpy as np
from kzlabel.server.limits import cap_malloc_arenas
print(cap_malloc_arenas(int(sys.argv[1])))
ready = threading.Barrier(9)
def job():
    keep = [np.ones(1000) for _ in range(50)]  # 8 KB blocks: from a malloc heap, not mmap
    ready.wait()
    del keep
threads = [threading.Thread(target=job) for _ in range(8)]
for t in threads: t.start()
ready.wait()
for t in threads: t.join()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.fopen.restype = ctypes.c_void_p
path = os.path.join(tempfile.mkdtemp(), "info.xml")
fp = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(fp))
libc.fclose(ctypes.c_void_p(fp))
print(open(path).read().count("<heap nr="))
"""


def _heaps(cap: int, **env: str) -> tuple[str, int]:
    """(what cap_malloc_arenas(cap) returned, the heaps glibc's malloc_info lists) in a fresh interpreter."""
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    run = subprocess.run(
        [sys.executable, "-c", _HEAPS, str(cap)], capture_output=True, text=True, check=True, env={**clean, **env}
    )
    said, heaps = run.stdout.split()
    return said, int(heaps)


def test_the_service_caps_malloc_heaps_so_its_memory_does_not_grow_with_the_threads_that_ran_jobs() -> None:
    """Eight threads allocating at once get a glibc heap each (the service's RSS grew ~37 MiB a step over 800 1080p
    JPEG verifies); with the cap the service sets (its job slots) they share two, and an operator's
    MALLOC_ARENA_MAX wins over ours."""
    assert _heaps(0)[1] >= 8
    assert _heaps(2) == ("True", 2)
    assert _heaps(2, MALLOC_ARENA_MAX="4")[0] == "False"
