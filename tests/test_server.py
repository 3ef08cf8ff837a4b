"""HTTP service end to end through Starlette's TestClient: verdicts, uploads, limits, errors, marking, concurrency."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import anyio
import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

import kzlabel
from kzlabel import Signer, TrustStore
from kzlabel.server import HTTPFailure, Worker, create_app

MD = "# Report\n\nSome *markdown* text written by a model.\n"


def _png() -> bytes:
    y, x = np.mgrid[0:192, 0:256]
    img = Image.fromarray(np.dstack([x, y, (x * y) % 256]).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_test_client_runs_on_httpx2_without_deprecation_warnings() -> None:
    # starlette.testclient falls back to the legacy httpx with a StarletteDeprecationWarning; the test extra installs
    # httpx2, which it prefers. A fresh interpreter, because this module has already imported it.
    code = "import warnings; warnings.simplefilter('error'); import starlette.testclient, httpx2"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def marked_md(signer: Signer) -> bytes:
    return kzlabel.mark(MD.encode(), signer=signer, system="S", owner="O", name="x.md")


@pytest.fixture(scope="module")
def marked_png(signer: Signer) -> bytes:
    return kzlabel.mark(_png(), signer=signer, system="S", owner="O", name="x.png")


@pytest.fixture(scope="module")
def client(trust: TrustStore) -> Iterator[TestClient]:
    with TestClient(create_app(trust=trust, max_concurrency=4)) as c:
        yield c


def _error(resp, status: int, kind: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error", "reason"} and body["reason"]
    assert "Traceback" not in resp.text
    if kind is not None:
        assert body["error"] == kind
    return body


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "version": kzlabel.__version__, "mark_enabled": False}


def test_verify_raw_body_compliant_and_trusted(client: TestClient, marked_md: bytes) -> None:
    r = client.post("/verify", params={"name": "x.md"}, content=marked_md)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    report = r.json()
    assert report["verdict"] == "compliant"
    assert report["format"] == "markdown"
    assert report["trusted"] is True
    assert any(e["status"] == "trusted" for e in report["evidence"])
    assert report["label"]["owner"] == "O"


def test_verify_png_raw_body(client: TestClient, marked_png: bytes) -> None:
    r = client.post("/verify", content=marked_png, headers={"content-type": "image/png"})
    assert r.status_code == 200
    assert r.json()["verdict"] == "compliant" and r.json()["trusted"] is True


def test_verify_without_trust_is_not_trusted(marked_md: bytes) -> None:
    with TestClient(create_app()) as c:
        report = c.post("/verify", params={"name": "x.md"}, content=marked_md).json()
    assert report["verdict"] == "compliant"
    assert report["trusted"] is False


def test_verify_multipart_upload_uses_filename(client: TestClient, marked_md: bytes, marked_png: bytes) -> None:
    r = client.post("/verify", files={"file": ("report.md", marked_md, "text/markdown")})
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] == "compliant" and r.json()["format"] == "markdown"
    assert r.json()["source"] == "report.md"
    r = client.post("/verify", files={"file": ("pic.png", marked_png, "image/png")})
    assert r.status_code == 200 and r.json()["verdict"] == "compliant" and r.json()["format"] == "png"


def test_multipart_without_file_field_is_422(client: TestClient) -> None:
    _error(client.post("/verify", data={"other": "x"}, files={"nope": ("a.md", b"hi")}), 422, "missing_file")


def test_tampered_text_is_tampered(client: TestClient, marked_md: bytes) -> None:
    edited = marked_md.replace(b"Some", b"Sone", 1)
    assert edited != marked_md
    r = client.post("/verify", params={"name": "x.md"}, content=edited)
    assert r.status_code == 200
    assert r.json()["verdict"] == "tampered"


def test_unlabelled_text_verdict(client: TestClient) -> None:
    r = client.post("/verify", params={"name": "plain.md"}, content=MD.encode())
    assert r.status_code == 200 and r.json()["verdict"] == "unlabelled"


def test_unsupported_bytes_are_415(client: TestClient) -> None:
    _error(
        client.post("/verify", params={"name": "x.bin"}, content=b"\x00\x01garbage" * 100), 415, "unsupported_format"
    )


def test_truncated_png_is_422_with_reason(client: TestClient, marked_png: bytes) -> None:
    body = _error(client.post("/verify", params={"name": "x.png"}, content=marked_png[: len(marked_png) // 2]), 422)
    assert body["error"] in {"corrupt_input", "format_error"}
    assert len(body["reason"]) > 5


def test_empty_body_is_422(client: TestClient) -> None:
    _error(client.post("/verify", content=b""), 422, "empty_body")


@pytest.fixture(scope="module")
def small_client(trust: TrustStore) -> Iterator[TestClient]:
    with TestClient(create_app(trust=trust, max_upload=1000)) as c:
        yield c


def test_over_limit_with_content_length_is_413(small_client: TestClient) -> None:
    r = small_client.post("/verify", params={"name": "x.md"}, content=b"a" * 1001)
    _error(r, 413, "payload_too_large")
    assert "1000" in r.json()["reason"]


def test_over_limit_chunked_is_413_and_stops_reading(small_client: TestClient) -> None:
    sent: list[int] = []

    def body() -> Iterator[bytes]:
        for _ in range(200):
            sent.append(1)
            yield b"b" * 100

    r = small_client.post("/verify", params={"name": "x.md"}, content=body())
    _error(r, 413, "payload_too_large")
    assert len(sent) == 200  # TestClient buffers; the raw-ASGI test below checks the server stops early


def test_streaming_limit_stops_pulling_the_body(trust: TrustStore) -> None:
    """Talk raw ASGI so we can see how many body chunks the app actually asks for: a chunked upload with no
    Content-Length must be cut off right after the limit, not read to the end."""
    app = create_app(trust=trust, max_upload=1000)
    pulled = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"c" * 100, "more_body": pulled < 10_000}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/verify",
        "raw_path": b"/verify",
        "query_string": b"name=x.md",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    anyio.run(app, scope, receive, send)
    assert sent[0]["status"] == 413
    assert pulled <= 11, pulled
    assert json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["error"] == "payload_too_large"


def test_at_limit_is_accepted(small_client: TestClient) -> None:
    r = small_client.post("/verify", params={"name": "x.md"}, content=b"# t\n\n" + b"a" * 995)
    assert r.status_code == 200 and r.json()["verdict"] == "unlabelled"


def test_chunked_under_limit_is_accepted(small_client: TestClient) -> None:
    def body() -> Iterator[bytes]:
        yield b"# t\n\n"
        yield b"hello " * 10

    r = small_client.post("/verify", params={"name": "x.md"}, content=body())
    assert r.status_code == 200 and r.json()["verdict"] == "unlabelled"


def test_multipart_over_limit_is_413(small_client: TestClient) -> None:
    _error(small_client.post("/verify", files={"file": ("x.md", b"a" * 2000)}), 413)


def test_mark_disabled(client: TestClient) -> None:
    body = _error(client.post("/mark", params={"name": "x.md"}, content=MD.encode()), 403, "mark_disabled")
    assert "disabled" in body["reason"]


def test_mark_disabled_without_owner(signer: Signer) -> None:
    with TestClient(create_app(signer=signer, system="S")) as c:
        assert c.get("/healthz").json()["mark_enabled"] is False
        _error(c.post("/mark", params={"name": "x.md"}, content=MD.encode()), 403, "mark_disabled")


def test_mark_enabled_round_trip(signer: Signer, trust: TrustStore) -> None:
    app = create_app(trust=trust, signer=signer, owner="Owner LLP", system="Gen", mark_without_token=True)
    with TestClient(app) as c:
        assert c.get("/healthz").json()["mark_enabled"] is True
        r = c.post("/mark", params={"name": "x.md"}, content=MD.encode())
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["x-kzlabel-format"] == "markdown"
        assert r.headers["x-kzlabel-content-id"]
        assert r.content != MD.encode()
        v = c.post("/verify", params={"name": "x.md"}, content=r.content).json()
        assert v["verdict"] == "compliant" and v["trusted"] is True
        assert v["label"]["owner"] == "Owner LLP"
        assert v["label"]["content_id"] == r.headers["x-kzlabel-content-id"]

        r = c.post("/mark", files={"file": ("pic.png", _png(), "image/png")})
        assert r.status_code == 200 and r.headers["x-kzlabel-format"] == "png"
        assert c.post("/verify", params={"name": "pic.png"}, content=r.content).json()["verdict"] == "compliant"

        _error(c.post("/mark", params={"name": "x.bin"}, content=b"\x00\x01garbage" * 100), 415)


def test_concurrent_requests(client: TestClient, marked_md: bytes, marked_png: bytes) -> None:
    tampered = marked_md.replace(b"Some", b"Sone", 1)
    jobs = [("x.md", marked_md, "compliant"), ("x.png", marked_png, "compliant"), ("x.md", tampered, "tampered")] * 8

    def call(job: tuple[str, bytes, str]) -> tuple[int, str, str]:
        name, data, want = job
        r = client.post("/verify", params={"name": name}, content=data)
        return r.status_code, r.json()["verdict"], want

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, jobs))
    assert len(results) == len(jobs)
    for status, verdict, want in results:
        assert status == 200
        assert verdict == want


def test_timeout_is_504(trust: TrustStore, marked_png: bytes) -> None:
    with TestClient(create_app(trust=trust, timeout_s=1e-9)) as c:
        _error(c.post("/verify", params={"name": "x.png"}, content=marked_png), 504, "timeout")


def test_timed_out_job_keeps_its_slot_until_the_thread_ends() -> None:
    """A 504 must not free CPU capacity that the abandoned thread is still using."""
    worker = Worker(max_concurrency=1, timeout_s=0.3)

    async def scenario() -> list[str]:
        outcome: list[str] = []
        for fn in (lambda: time.sleep(1.0), lambda: "quick"):
            try:
                outcome.append(str(await worker.run(fn)))
            except HTTPFailure as exc:
                outcome.append(str(exc.status))
        await anyio.sleep(1.0)  # the slow thread has now finished and handed its slot back
        outcome.append(await worker.run(lambda: "after"))
        return outcome

    assert anyio.run(scenario) == ["504", "504", "after"]


def test_unexpected_exception_is_500_without_traceback(trust: TrustStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from kzlabel import pipeline

    def boom(self, *a, **k):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(pipeline.Labeler, "verify", boom)
    with TestClient(create_app(trust=trust), raise_server_exceptions=False) as c:
        r = c.post("/verify", params={"name": "x.md"}, content=MD.encode())
    body = _error(r, 500, "internal_error")
    assert body["reason"] == "RuntimeError"
    assert "secret" not in r.text


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    _error(client.get("/nope"), 404, "not_found")
    _error(client.get("/verify"), 405, "method_not_allowed")


def test_openapi_lists_paths(client: TestClient) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert {"/healthz", "/verify", "/mark", "/openapi.json"} <= set(doc["paths"])
    assert set(doc["paths"]["/verify"]["post"]["responses"]) >= {"200", "413", "415", "422", "504"}
    assert "multipart/form-data" in doc["paths"]["/verify"]["post"]["requestBody"]["content"]
    json.dumps(doc)  # serialisable


def test_job_own_timeout_error_is_not_a_504() -> None:
    """Only our deadline means 504; a TimeoutError raised by the work itself must surface as what it is."""
    worker = Worker(max_concurrency=1, timeout_s=10)

    def fails() -> None:
        raise TimeoutError("socket timed out inside the job")

    with pytest.raises(TimeoutError, match="inside the job"):
        anyio.run(worker.run, fails)
    assert anyio.run(worker.run, lambda: 42) == 42  # and the slot was released


def test_verify_json_says_whether_the_upload_is_accepted(marked_md: bytes, other_trust: TrustStore) -> None:
    """Trust anchors given and the signer not under them: compliant, but not accepted unless ?allow_untrusted."""
    with TestClient(create_app(trust=other_trust)) as c:
        report = c.post("/verify", params={"name": "x.md"}, content=marked_md).json()
        assert report["verdict"] == "compliant" and report["trusted"] is False
        assert report["trust_checked"] is True and report["accepted"] is False
        assert "trust anchors" in report["why_not_accepted"]
        for yes in ("true", "1", ""):
            allowed = c.post("/verify", params={"name": "x.md", "allow_untrusted": yes}, content=marked_md).json()
            assert allowed["accepted"] is True and allowed["why_not_accepted"] is None
        strict = c.post("/verify", params={"name": "x.md", "allow_untrusted": "false"}, content=marked_md).json()
        assert strict["accepted"] is False
        _error(c.post("/verify", params={"name": "x.md", "allow_untrusted": "maybe"}, content=marked_md), 400,
               "bad_request")
    with TestClient(create_app()) as c:
        report = c.post("/verify", params={"name": "x.md"}, content=marked_md).json()
    assert report["trust_checked"] is False and report["accepted"] is True


def test_verify_json_accepts_a_trusted_upload(client: TestClient, marked_md: bytes) -> None:
    report = client.post("/verify", params={"name": "x.md"}, content=marked_md).json()
    assert report["trust_checked"] is True and report["accepted"] is True


def test_openapi_describes_the_acceptance_fields(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    props = doc["components"]["schemas"]["Report"]["properties"]
    assert {"trust_checked", "accepted", "why_not_accepted"} <= set(props)
    assert "allow_untrusted" in [p["name"] for p in doc["paths"]["/verify"]["post"]["parameters"]]
