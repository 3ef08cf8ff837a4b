"""Authenticated marking: the bearer token of POST /mark, the refusal to expose marking without one, and the
per-client rate limit; verification stays open."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import uvicorn
from starlette.testclient import TestClient

from kzlabel import Signer, TrustStore, cli
from kzlabel.errors import KeyFileError
from kzlabel.server import ServiceLimits, create_app, run
from kzlabel.server.auth import check_exposure, is_local, load_token
from kzlabel.server.ratelimit import RateLimiter

MD = b"# Report\n\nSome *markdown* text written by a model.\n"
TOKEN = "s3cret-Token_for.marking~0123456789"


def _token_file(tmp_path: Path, mode: int = 0o600, text: str = TOKEN + "\n") -> Path:
    path = tmp_path / "mark.token"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def marking(signer: Signer, trust: TrustStore) -> Iterator[TestClient]:
    app = create_app(trust=trust, signer=signer, owner="Owner LLP", system="Gen", mark_token=TOKEN)
    with TestClient(app) as c:
        yield c


def _error(resp: Any, status: int, kind: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] == kind and set(body) == {"error", "reason"}
    return body


# --- the token file --------------------------------------------------------------------------------------------------


def test_token_file_is_read_when_only_its_owner_may_read_it(tmp_path: Path) -> None:
    assert load_token(_token_file(tmp_path)) == TOKEN


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620])
def test_token_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    with pytest.raises(KeyFileError, match="chmod 600") as err:
        load_token(_token_file(tmp_path, mode))
    assert TOKEN not in str(err.value)


@pytest.mark.parametrize("text", ["short\n", "two words here and more\n", "", "x" * 2000])
def test_token_file_without_one_good_token_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(KeyFileError, match="one token") as err:
        load_token(_token_file(tmp_path, text=text))
    assert text.strip() == "" or text.strip() not in str(err.value)


def test_token_file_behind_a_symlink_is_refused(tmp_path: Path) -> None:
    real = _token_file(tmp_path)
    link = tmp_path / "link.token"
    link.symlink_to(real)
    with pytest.raises(KeyFileError, match="cannot open"):
        load_token(link)


# --- the token on requests -------------------------------------------------------------------------------------------


def test_mark_without_a_token_is_401(marking: TestClient) -> None:
    r = marking.post("/mark", params={"name": "x.md"}, content=MD)
    _error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wrong-token-0123456789abcdef",
        "Bearer " + TOKEN[:-1],
        "Bearer " + TOKEN + "x",
        "Basic " + TOKEN,
        TOKEN,
        "Bearer",
    ],
)
def test_mark_with_a_wrong_token_is_401_and_echoes_nothing(marking: TestClient, header: str) -> None:
    r = marking.post("/mark", params={"name": "x.md"}, content=MD, headers={"Authorization": header})
    _error(r, 401, "invalid_token")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert TOKEN[:12] not in r.text and "wrong-token" not in r.text


def test_mark_with_the_token_marks_and_verify_needs_none(marking: TestClient) -> None:
    r = marking.post("/mark", params={"name": "x.md"}, content=MD, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["x-kzlabel-format"] == "markdown"
    v = marking.post("/verify", params={"name": "x.md"}, content=r.content)
    assert v.status_code == 200 and v.json()["verdict"] == "compliant"
    assert v.json()["label"]["content_id"] == r.headers["x-kzlabel-content-id"]
    assert marking.post("/mark", content=MD, headers={"authorization": f"bearer  {TOKEN}"}).status_code == 200


def test_marking_needs_a_token_or_an_explicit_choice(signer: Signer) -> None:
    with pytest.raises(ValueError, match="bearer token"):
        create_app(signer=signer, owner="O", system="S")
    with pytest.raises(ValueError, match="mark_token must be"):
        create_app(signer=signer, owner="O", system="S", mark_token="short")
    create_app(signer=signer, owner="O", system="S", mark_without_token=True)
    create_app(mark_without_token=True)  # no marking: nothing to protect


def test_disabled_marking_is_still_403_before_any_token_check() -> None:
    with TestClient(create_app()) as c:
        _error(c.post("/mark", content=MD), 403, "mark_disabled")


# --- the rate limit --------------------------------------------------------------------------------------------------


def test_rate_limit_is_429_with_retry_after_per_client(signer: Signer) -> None:
    app = create_app(signer=signer, owner="O", system="S", mark_token=TOKEN, mark_burst=2, mark_rate=0.1)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app, client=("192.0.2.1", 4000)) as one, TestClient(app, client=("192.0.2.2", 4000)) as two:
        assert one.post("/mark", params={"name": "x.md"}, content=MD, headers=auth).status_code == 200
        _error(
            one.post("/mark", content=MD, headers={"Authorization": "Bearer nope-nope-nope-nope"}), 401, "invalid_token"
        )
        r = one.post("/mark", params={"name": "x.md"}, content=MD, headers=auth)  # guesses count too: bucket empty
        _error(r, 429, "rate_limited")
        assert 1 <= int(r.headers["retry-after"]) <= 10
        # another client has its own bucket, and verification is never limited
        assert two.post("/mark", params={"name": "x.md"}, content=MD, headers=auth).status_code == 200
        for _ in range(4):
            assert one.post("/verify", params={"name": "x.md"}, content=MD).status_code == 200


def test_token_bucket_refills_at_its_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [None, None, None]
    assert limiter.take("a") == 1  # empty: half a second to the next request, rounded up to a whole second
    now[0] += 0.5
    assert limiter.take("a") is None and limiter.take("a") == 1
    now[0] += 10  # never more than the burst
    assert [limiter.take("a") for _ in range(4)] == [None, None, None, 1]
    slow = RateLimiter(rate=0.1, burst=1, clock=lambda: now[0])
    assert slow.take("b") is None and slow.take("b") == 10


def test_rate_limiter_remembers_a_bounded_number_of_clients() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_clients=3, clock=lambda: 0.0)
    for key in "abcde":
        assert limiter.take(key) is None
    assert len(limiter) == 3
    assert limiter.take("e") == 1  # remembered: still empty
    assert limiter.take("a") is None  # forgotten, so full again


def test_rate_limits_come_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    got: dict[str, Any] = {}
    monkeypatch.setattr("kzlabel.server.run", lambda host, port, **kw: got.update(kw))
    assert cli.main(["serve", "--mark-rate", "0.5", "--mark-burst", "3"]) == 0
    assert (got["limits"].mark_rate, got["limits"].mark_burst) == (0.5, 3)
    assert (ServiceLimits().mark_rate, ServiceLimits().mark_burst) == (1.0, 10)
    with pytest.raises(ValueError, match="mark_rate"):
        ServiceLimits(mark_rate=0)


# --- where marking may be served -------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"])
def test_loopback_hosts_are_local(host: str) -> None:
    assert is_local(host)
    check_exposure(host, None, marking=True, token=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "10.0.0.1", "example.org", ""])
def test_other_hosts_need_a_token_to_mark(host: str) -> None:
    assert not is_local(host)
    with pytest.raises(ValueError, match="needs a bearer token"):
        check_exposure(host, None, marking=True, token=False)
    check_exposure(host, None, marking=True, token=True)
    check_exposure(host, None, marking=False, token=False)
    check_exposure(host, Path("/run/kzlabel.sock"), marking=True, token=False)  # a Unix socket is local


@pytest.fixture
def never_serve(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    started: list[Any] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **k: started.append(self.config.host))
    return started


@pytest.mark.parametrize("extra", [["--mark-without-token"], []])
def test_serve_refuses_marking_on_a_public_host_without_a_token(
    keydir: Path, capsys: pytest.CaptureFixture[str], never_serve: list[Any], extra: list[str]
) -> None:
    argv = ["serve", "--host", "0.0.0.0", "--mark-key", str(keydir), "--owner", "O", "--system", "S", *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs a bearer token (--mark-token-file)" in err, err
    assert never_serve == []


def test_run_refuses_it_too(signer: Signer, never_serve: list[Any]) -> None:
    with pytest.raises(ValueError, match="needs a bearer token"):
        run("0.0.0.0", 0, signer=signer, owner="O", system="S", mark_without_token=True)
    assert never_serve == []
    run("127.0.0.1", 0, signer=signer, owner="O", system="S", mark_without_token=True)
    run("0.0.0.0", 0, signer=signer, owner="O", system="S", mark_token=TOKEN)
    assert never_serve == ["127.0.0.1", "0.0.0.0"]


def test_serve_needs_a_token_choice_and_a_private_token_file(
    keydir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], never_serve: list[Any]
) -> None:
    base = ["serve", "--mark-key", str(keydir), "--owner", "O", "--system", "S"]
    assert cli.main(base) == 2
    assert "--mark-key needs --mark-token-file" in capsys.readouterr().err
    assert cli.main([*base, "--mark-token-file", str(_token_file(tmp_path, 0o644))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "chmod 600" in err and TOKEN not in err
    assert cli.main(["serve", "--mark-token-file", str(_token_file(tmp_path))]) == 2
    assert "only apply with --mark-key" in capsys.readouterr().err
    assert never_serve == []


def test_live_service_marks_with_the_token_and_never_logs_it(keydir: Path, tmp_path: Path) -> None:
    """`kzlabel serve` as deployed: a token file, marking over real HTTP, and a log without the token."""
    token_file = _token_file(tmp_path)
    log = tmp_path / "serve.log"
    cmd = [
        sys.executable, "-m", "kzlabel.cli", "serve", "--host", "127.0.0.1", "--port", "0", "--mark-key",
        str(keydir), "--owner", "O", "--system", "S", "--mark-token-file", str(token_file), "--mark-burst", "3",
        "--mark-rate", "0.01",  # the burst is not refilled while a loaded machine serves the first requests
    ]  # fmt: skip
    with open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        with httpx.Client(base_url=found.group(1), timeout=30) as client:
            assert client.post("/mark", params={"name": "x.md"}, content=MD).status_code == 401
            bad = client.post("/mark", content=MD, headers={"Authorization": "Bearer " + TOKEN.upper()})
            assert bad.status_code == 401 and TOKEN.upper() not in bad.text
            good = client.post(
                "/mark", params={"name": "x.md"}, content=MD, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert good.status_code == 200 and good.content.startswith(b"---")  # front matter: it was marked
            limited = client.post("/mark", content=MD, headers={"Authorization": f"Bearer {TOKEN}"})
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    text = log.read_text()
    assert "marking enabled with bearer token, 0.01/s per client, burst 3" in text
    assert "POST /mark" in text  # the access log is on, and still
    assert TOKEN not in text and TOKEN.upper() not in text
