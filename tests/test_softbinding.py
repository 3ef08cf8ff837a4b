"""The C2PA Soft Binding Resolution API on `kzlabel serve`, against the shapes of the C2PA 2.x spec's OpenAPI (API
version 1.1.0): mark with a registry stores the manifest store; byBinding / byContent find it, /manifests serves it;
`verify --registry http://...` recovers a stripped file's label and manifest through a real server on loopback; bad
input to every endpoint gets the JSON error shape."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from PIL import Image
from scipy import ndimage
from starlette.testclient import TestClient

from kzlabel import Labeler, Registry, Signer, TrustStore, Verdict
from kzlabel.cli import main
from kzlabel.layers import c2pa as c2pa_layer
from kzlabel.recovery import recover
from kzlabel.registry import SOFT_BINDING_ALG, Entry, ResolverRegistry, binding_value
from kzlabel.server import create_app

OWNER = "ТОО Сурет"


def _photo(seed: int, h: int = 480, w: int = 640) -> bytes:
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.random((h, w, 3)) * 255, (4, 4, 0))
    edges = (np.indices((h, w)).sum(axis=0) // 37 % 2 * 40)[..., None]
    arr = np.clip(base + edges + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _stripped(data: bytes) -> bytes:
    """What an upload pipeline that drops metadata leaves: the pixels re-encoded, no XMP, no manifest."""
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def marked(tmp_path_factory: pytest.TempPathFactory, signer: Signer, trust: TrustStore) -> dict[str, Any]:
    """One photo marked into a SQLite registry, and the same photo marked twice (its manifest has a parent)."""
    d = tmp_path_factory.mktemp("sb")
    reg = Registry.open(d / "reg.sqlite")
    lab = Labeler(signer, owner=OWNER, system="ImgGen", trust=trust, registry=reg)
    once = lab.mark(_photo(1), d / "once.jpg")
    twice = lab.mark(d / "once.jpg", d / "twice.jpg")
    other = lab.mark(_photo(2), d / "other.jpg")
    return {"dir": d, "reg": reg, "once": once, "twice": twice, "other": other}


@pytest.fixture(scope="module")
def client(marked: dict[str, Any], trust: TrustStore) -> Iterator[TestClient]:
    with TestClient(create_app(trust=trust, registry=marked["reg"])) as c:
        yield c


def _error(resp: Any, status: int, kind: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error", "reason"} and body["reason"]
    assert "Traceback" not in resp.text
    if kind is not None:
        assert body["error"] == kind, body
    return body


def _query_result(body: Any) -> list[dict]:
    """The spec's c2pa.softBindingQueryResult: {"matches": [{manifestId, endpoint?, similarityScore? 0-100}]}"""
    assert isinstance(body, dict) and set(body) == {"matches"} and isinstance(body["matches"], list)
    for m in body["matches"]:
        assert isinstance(m, dict) and isinstance(m["manifestId"], str) and m["manifestId"]
        assert set(m) <= {"manifestId", "endpoint", "similarityScore"}
        assert isinstance(m.get("similarityScore", 0), int) and 0 <= m.get("similarityScore", 0) <= 100
    return body["matches"]


def _manifest_id(path: Path) -> str:
    rep = c2pa_layer.read(path.read_bytes(), "image/jpeg")
    assert rep.manifest_id and rep.manifest_id.startswith("urn:c2pa:")
    return rep.manifest_id


# --- mark stores the manifest; one algorithm id everywhere -----------------------------------------------------------
def test_mark_records_the_manifest_store_under_its_active_manifest_id(marked: dict[str, Any]) -> None:
    once, reg = marked["once"], marked["reg"]
    assert {"watermark", "c2pa"} <= set(once.layers)
    embedded = c2pa_layer.read(Path(once.dst).read_bytes(), "image/jpeg")
    twice = marked["twice"]
    entry = reg.entry(twice.label.content_id)
    # the newest label owns its content id's entry: a re-mark whose new watermark could not win over the old one
    # keeps the old content id and takes its entry over; one whose new mark reads back has an entry of its own
    assert entry is not None and entry.manifest_id == _manifest_id(Path(twice.dst))
    if twice.label.content_id != once.label.content_id:
        first = reg.entry(once.label.content_id)
        assert first is not None and first.manifest_id == _manifest_id(Path(once.dst))
    stored = c2pa_layer.read(entry.manifest, c2pa_layer.STORE_MIME)
    assert stored.manifest_id == entry.manifest_id and stored.label_token == entry.token == twice.token
    # the soft binding the manifest claims is the id the API serves and the payload in base64
    for rep, cid in ((embedded, once.label.content_id), (stored, twice.label.content_id)):
        assert rep.soft_binding["alg"] == SOFT_BINDING_ALG
        assert rep.soft_binding["value"] == binding_value(cid)
        assert base64.b64decode(rep.soft_binding["value"]).hex() == cid


def test_supported_algorithms_names_the_alg_of_our_manifests(client: TestClient, marked: dict[str, Any]) -> None:
    r = client.get("/services/supportedAlgorithms")
    assert r.status_code == 200
    body = r.json()
    assert set(body) <= {"watermarks", "fingerprints"}  # the spec's c2pa.softBindingAlgList
    assert body["watermarks"] == [{"alg": SOFT_BINDING_ALG}] and body["fingerprints"] == []
    written = c2pa_layer.read(Path(marked["other"].dst).read_bytes(), "image/jpeg").soft_binding["alg"]
    assert [w["alg"] for w in body["watermarks"]] == [written]


# --- byBinding, byContent, manifests ---------------------------------------------------------------------------------
def test_by_binding_get_and_post_find_the_manifest(client: TestClient, marked: dict[str, Any]) -> None:
    other = marked["other"]
    want = _manifest_id(Path(other.dst))
    value = binding_value(other.label.content_id)
    got = _query_result(client.get("/matches/byBinding", params={"alg": SOFT_BINDING_ALG, "value": value}).json())
    assert got == [{"manifestId": want, "similarityScore": 100}]
    urlsafe = value.rstrip("=").replace("+", "-").replace("/", "_")
    again = client.get("/matches/byBinding", params={"alg": SOFT_BINDING_ALG, "value": urlsafe})
    assert _query_result(again.json()) == got
    posted = client.post("/matches/byBinding", json={"alg": SOFT_BINDING_ALG, "value": value})
    assert posted.status_code == 200 and _query_result(posted.json()) == got
    unknown = client.get("/matches/byBinding", params={"alg": SOFT_BINDING_ALG, "value": binding_value("00" * 8)})
    assert unknown.status_code == 200 and _query_result(unknown.json()) == []


def test_by_content_reads_the_watermark_of_a_stripped_upload(client: TestClient, marked: dict[str, Any]) -> None:
    other = marked["other"]
    stripped = _stripped(Path(other.dst).read_bytes())
    assert b"c2pa" not in stripped and b"jumb" not in stripped
    r = client.post("/matches/byContent", content=stripped, headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    assert _query_result(r.json()) == [{"manifestId": _manifest_id(Path(other.dst)), "similarityScore": 100}]
    multipart = client.post("/matches/byContent", files={"file": ("x.png", stripped, "image/png")})
    assert _query_result(multipart.json()) == _query_result(r.json())
    unmarked = client.post("/matches/byContent", content=_photo(9), params={"alg": SOFT_BINDING_ALG})
    assert unmarked.status_code == 200 and _query_result(unmarked.json()) == []


def test_manifests_serves_the_store_and_its_active_manifest(client: TestClient, marked: dict[str, Any]) -> None:
    entry = marked["reg"].entry(marked["twice"].label.content_id)
    r = client.get(f"/manifests/{entry.manifest_id}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/c2pa"
    assert r.content == entry.manifest
    whole = c2pa_layer.read(r.content, c2pa_layer.STORE_MIME)
    assert "c2pa.opened" in whole.actions and whole.ingredients  # marked twice: the first manifest is its parent
    active = client.get(f"/manifests/{entry.manifest_id}", params={"returnActiveManifest": "true"})
    assert active.status_code == 200 and active.headers["content-type"] == "application/c2pa"
    assert len(active.content) < len(r.content)
    alone = c2pa_layer.read(active.content, c2pa_layer.STORE_MIME)
    assert alone.manifest_id == entry.manifest_id and alone.label_token == entry.token
    assert "claimSignature.validated" in alone.codes


def test_the_openapi_document_describes_the_api(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    ops = {(path, method): op.get("operationId") for path, item in doc["paths"].items() for method, op in item.items()}
    assert {
        ("/services/supportedAlgorithms", "get"): "getSupportedBindings",
        ("/matches/byBinding", "get"): "queryByBinding",
        ("/matches/byBinding", "post"): "queryByLargeBinding",
        ("/matches/byContent", "post"): "uploadFile",
        ("/manifests/{manifestId}", "get"): "getManifestById",
    }.items() <= ops.items()
    assert doc["components"]["schemas"]["c2pa.softBindingQuery"]["required"] == ["value", "alg"]


# --- bad input: the documented JSON error, never a traceback ---------------------------------------------------------
V = binding_value("0123456789abcdef")
BAD = [
    ("get", "/matches/byBinding", {"params": {"value": V}}, 400, "bad_request"),
    ("get", "/matches/byBinding", {"params": {"alg": SOFT_BINDING_ALG}}, 400, "bad_request"),
    ("get", "/matches/byBinding", {"params": {"alg": "com.example.wm.1", "value": V}}, 400, "unsupported_algorithm"),
    ("get", "/matches/byBinding", {"params": {"alg": SOFT_BINDING_ALG, "value": "not base64!"}}, 400, "bad_request"),
    ("get", "/matches/byBinding", {"params": {"alg": SOFT_BINDING_ALG, "value": "A" * 400}}, 400, "bad_request"),
    ("get", "/matches/byBinding", {"params": {"alg": SOFT_BINDING_ALG, "value": V, "maxResults": "0"}}, 400, None),
    ("get", "/matches/byBinding", {"params": {"alg": SOFT_BINDING_ALG, "value": V, "maxResults": "x"}}, 400, None),
    ("post", "/matches/byBinding", {"content": b"{not json"}, 400, "bad_request"),
    ("post", "/matches/byBinding", {"json": ["alg", "value"]}, 400, "bad_request"),
    ("post", "/matches/byBinding", {"json": {"alg": SOFT_BINDING_ALG}}, 400, "bad_request"),
    ("post", "/matches/byBinding", {"json": {"alg": SOFT_BINDING_ALG, "value": 12345}}, 400, "bad_request"),
    ("post", "/matches/byBinding", {"json": {"alg": 7, "value": V}}, 400, "bad_request"),
    ("post", "/matches/byBinding", {"content": b"{" + b" " * 70000 + b"}"}, 413, "payload_too_large"),
    ("post", "/matches/byContent", {"content": b""}, 422, "empty_body"),
    ("post", "/matches/byContent", {"content": b"\x00\x01junk" * 50}, 415, "unsupported_format"),
    ("post", "/matches/byContent", {"content": b"\x89PNG\r\n\x1a\n" + b"\x00" * 40}, 422, None),
    ("post", "/matches/byContent", {"content": b"x", "params": {"alg": "other"}}, 400, "unsupported_algorithm"),
    ("get", "/manifests/urn:c2pa:00000000-0000-0000-0000-000000000000", {}, 404, "not_found"),
    ("get", "/manifests/" + "u" * 300, {}, 400, "bad_request"),
    ("get", "/manifests/urn:c2pa:x", {"params": {"returnActiveManifest": "maybe"}}, 400, "bad_request"),
    ("put", "/matches/byBinding", {}, 405, "method_not_allowed"),
    ("post", "/services/supportedAlgorithms", {}, 405, "method_not_allowed"),
    ("delete", "/manifests/urn:c2pa:x", {}, 405, "method_not_allowed"),
]


@pytest.mark.parametrize(("method", "path", "kw", "status", "kind"), BAD, ids=[f"{b[0]} {b[1]} {b[3]}" for b in BAD])
def test_bad_input_gets_the_json_error(client: TestClient, method: str, path: str, kw: dict, status: int, kind) -> None:
    _error(client.request(method.upper(), path, **kw), status, kind)


def test_without_a_registry_the_lookups_say_so(trust: TrustStore) -> None:
    with TestClient(create_app(trust=trust)) as c:
        assert c.get("/services/supportedAlgorithms").status_code == 200
        _error(c.get("/matches/byBinding", params={"alg": SOFT_BINDING_ALG, "value": V}), 503, "no_registry")
        _error(c.get("/manifests/urn:c2pa:x"), 503, "no_registry")


def test_an_unreachable_registry_is_a_503_that_names_no_server(trust: TrustStore, pg_url: str) -> None:
    reg = Registry.open(pg_url)
    with TestClient(create_app(trust=trust, registry=reg), raise_server_exceptions=False) as c:
        reg.close()  # as if the database went away
        body = _error(c.get("/matches/byBinding", params={"alg": SOFT_BINDING_ALG, "value": V}), 503)
        assert body["error"] == "registry_unavailable" and "postgresql" not in body["reason"]


# --- PostgreSQL behind the API ----------------------------------------------------------------------------------------
def test_the_api_over_a_postgresql_registry(pg_url: str, signer: Signer, trust: TrustStore) -> None:
    reg = Registry.open(pg_url)
    result = Labeler(signer, owner=OWNER, system="ImgGen", trust=trust, registry=reg).mark(_photo(3), name="p.jpg")
    mid = c2pa_layer.read(result.data, "image/jpeg").manifest_id
    store = reg.manifest(mid)

    def blocking_read(*_: object) -> None:
        raise AssertionError("the service read the registry through a worker thread")

    with TestClient(create_app(trust=trust, registry=reg)) as c:
        # on the service's loop the lookups go through the asyncio pool its lifespan opened, not the thread pool
        reg.manifest_id = reg.manifest = blocking_read  # type: ignore[method-assign]
        value = binding_value(result.label.content_id)
        got = c.get("/matches/byBinding", params={"alg": SOFT_BINDING_ALG, "value": value})
        assert _query_result(got.json()) == [{"manifestId": mid, "similarityScore": 100}]
        assert c.get(f"/manifests/{mid}").content == store
        assert c.get("/manifests/urn:c2pa:nothing-here").status_code == 404
    reg.close()


# --- verify --registry http://...: a real server on loopback ---------------------------------------------------------
@pytest.fixture(scope="module")
def resolver_url(marked: dict[str, Any], trust: TrustStore) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(registry=marked["reg"]), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the resolver did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_verify_recovers_label_and_manifest_through_a_remote_resolver(
    marked: dict[str, Any], resolver_url: str, keydir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = marked["other"]
    stripped = marked["dir"] / "stripped.png"
    stripped.write_bytes(_stripped(Path(other.dst).read_bytes()))
    code = main(["verify", str(stripped), "--registry", resolver_url, "--trust", str(keydir), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["verdict"] == "stripped"  # stripped is never accepted, but now it is traced
    assert report["label_recovered_from_registry"] and report["label"]["owner"] == OWNER
    assert report["label"]["content_id"] == other.label.content_id
    wm = next(e for e in report["evidence"] if e["layer"] == "watermark")
    assert wm["data"]["registry"] == {
        "manifest_id": _manifest_id(Path(other.dst)),
        "manifest_bytes": len(marked["reg"].manifest(_manifest_id(Path(other.dst)))),
        "manifest": "trusted",
        "label": "trusted",
    }
    # a resolver that cannot be reached is reported in the evidence; verify still answers
    assert main(["verify", str(stripped), "--registry", "http://127.0.0.1:9", "--json"]) == 1
    down = json.loads(capsys.readouterr().out)
    wm = next(e for e in down["evidence"] if e["layer"] == "watermark")
    assert down["verdict"] == "stripped" and down["label"] is None and "registry unavailable" in wm["detail"]
    # without the registry the same file is stripped and untraced
    plain = Labeler(trust=TrustStore.load([keydir])).verify(stripped)
    assert plain.verdict == Verdict.STRIPPED and plain.label is None


def test_a_resolver_is_read_only_and_unknown_payloads_recover_nothing(resolver_url: str, signer: Signer) -> None:
    remote = Registry.open(resolver_url)
    assert isinstance(remote, ResolverRegistry) and not remote.writable
    assert remote.entry("00" * 8) is None and remote.manifest("urn:c2pa:nothing") is None
    with pytest.raises(Exception, match="read-only"):
        Labeler(signer, owner="O", system="S", registry=remote).mark(_photo(4), name="x.jpg")
    assert main(["verify", "x.jpg", "--registry", "http://127.0.0.1:9/"]) == 2  # no such file: usage, not a crash


def test_a_manifest_that_does_not_claim_the_payload_recovers_nothing(marked: dict[str, Any], trust: TrustStore) -> None:
    once, other = marked["once"], marked["other"]
    foreign = marked["reg"].entry(other.label.content_id)

    class Lying(Registry):  # a resolver that answers any payload with another file's manifest store
        def __init__(self) -> None:
            super().__init__("lying://")

        def entry(self, content_id: str) -> Entry | None:
            return Entry(content_id, None, "", foreign.manifest_id, foreign.manifest)

        def manifest(self, manifest_id: str) -> bytes | None:
            return None

        def record(self, *args: Any, **kw: Any) -> None: ...

        def __len__(self) -> int:
            return 1

        def close(self) -> None: ...

    got = recover(Lying(), once.label.content_id, trust)
    assert got is not None and got.label is None and "does not claim this watermark" in got.detail
    assert got.data["manifest"] == "unbound"
    honest = recover(marked["reg"], other.label.content_id, trust)
    assert honest is not None and honest.label is not None and honest.label.owner == OWNER
