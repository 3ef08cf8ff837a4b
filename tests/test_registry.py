"""The label registry behind one interface: SQLite (a file) and PostgreSQL (a real server started by the session's
``postgres`` fixture), the same contract for both -- persist, replace, manifest stores, migrations on first use,
concurrent writers from threads and processes without lost writes."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from kzlabel import Label, Registry
from kzlabel.errors import RegistryError
from kzlabel.label import sign_label, verify_token
from kzlabel.registry import SCHEMA_VERSION, PostgresRegistry, SQLiteRegistry


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh registry location of each backend (a new database on the session's PostgreSQL server)."""
    if request.param == "sqlite":
        return str(tmp_path / "reg.sqlite")
    return str(request.getfixturevalue("pg_url"))


def test_the_location_picks_the_backend(tmp_path: Path, pg_url: str) -> None:
    with Registry.open(tmp_path / "a.sqlite") as a, Registry.open(pg_url) as b, Registry.open() as c:
        assert type(a) is SQLiteRegistry and type(b) is PostgresRegistry and type(c) is SQLiteRegistry
    with pytest.raises(RegistryError, match="unsupported registry URL scheme 'mysql'"):
        Registry.open("mysql://h/db")


def test_record_lookup_persist_and_replace(location: str, signer, trust) -> None:
    label = Label.create(owner="O", system="S")
    token = sign_label(label, signer)
    with Registry.open(location) as reg:
        assert reg.lookup(label.content_id) is None and reg.entry(label.content_id) is None
        reg.record(label.content_id, token, "png")
        reg.record(label.content_id, token, "png")
        assert len(reg) == 1
    with Registry.open(location) as again:  # survives reopening
        stored = again.lookup(label.content_id)
    assert verify_token(stored, trust).label == label


def test_manifest_store_beside_the_label_and_newest_wins(location: str, signer) -> None:
    label = Label.create(owner="O", system="S")
    first, second = sign_label(label, signer), sign_label(label.replace(system="S2"), signer)
    with Registry.open(location) as reg:
        reg.record(label.content_id, first, "jpeg", b"\x00jumb-1", "urn:c2pa:one")
        assert reg.manifest("urn:c2pa:one") == b"\x00jumb-1"
        reg.record(label.content_id, second, "jpeg", b"\x00jumb-2", "urn:c2pa:two")  # marked again: same content id
        got = reg.entry(label.content_id)
        assert got is not None and (got.token, got.manifest_id, got.manifest) == (second, "urn:c2pa:two", b"\x00jumb-2")
        assert reg.manifest("urn:c2pa:one") is None and reg.manifest("urn:c2pa:two") == b"\x00jumb-2"
        other = Label.create(owner="O", system="S")
        reg.record(other.content_id, sign_label(other, signer), "txt")  # no manifest: none to serve
        assert reg.entry(other.content_id).manifest_id is None and len(reg) == 2


def test_an_old_sqlite_registry_is_migrated_in_place(tmp_path: Path, signer) -> None:
    path = tmp_path / "old.sqlite"
    label = Label.create(owner="O", system="S")
    token = sign_label(label, signer)
    with sqlite3.connect(path) as db:  # the table kzlabel wrote before schema versions were recorded
        db.execute(
            "CREATE TABLE labels (content_id TEXT PRIMARY KEY, token TEXT NOT NULL, format TEXT NOT NULL,"
            " created TEXT NOT NULL DEFAULT '2026-01-01T00:00:00Z')"
        )
        db.execute("INSERT INTO labels (content_id, token, format) VALUES (?, ?, 'png')", (label.content_id, token))
    with Registry.open(path) as reg:
        assert reg.lookup(label.content_id) == token
        reg.record("00" * 8, token, "png", b"store", "urn:c2pa:x")
        assert reg.manifest("urn:c2pa:x") == b"store"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM kzlabel_schema").fetchall() == [(SCHEMA_VERSION,)]


def test_a_newer_schema_is_refused_not_damaged(location: str) -> None:
    with Registry.open(location):
        pass
    if location.startswith("postgresql"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute("UPDATE kzlabel_schema SET version = 99")
    else:
        with sqlite3.connect(location) as db:
            db.execute("UPDATE kzlabel_schema SET version = 99")
    with pytest.raises(RegistryError, match="version 99, newer"):
        Registry.open(location)


def _writer(location: str, worker: int, n: int, shared: str) -> None:
    """One writer process: its own content ids, plus the one id every writer overwrites; reads each back at once."""
    with Registry.open(location) as reg:
        for i in range(n):
            cid = f"{worker:04x}{i:012x}"
            reg.record(cid, f"token-{worker}-{i}", "png", f"store-{cid}".encode(), f"urn:c2pa:{cid}")
            assert reg.lookup(cid) == f"token-{worker}-{i}"
            reg.record(shared, f"shared-by-{worker}", "png")


def _check_all_written(location: str, writers: int, n: int, shared: str) -> None:
    with Registry.open(location) as reg:
        assert len(reg) == writers * n + 1  # no lost write, no duplicate content id
        for w in range(writers):
            for i in range(0, n, 7):
                cid = f"{w:04x}{i:012x}"
                assert reg.lookup(cid) == f"token-{w}-{i}"
                assert reg.manifest(f"urn:c2pa:{cid}") == f"store-{cid}".encode()
        assert reg.lookup(shared) in {f"shared-by-{w}" for w in range(writers)}


@pytest.mark.slow
def test_concurrent_writer_processes_against_a_fresh_database(location: str) -> None:
    # the processes open the registry at the same moment: the schema is created once, under the lock
    writers, n, shared = 4, 60, "ff" * 8
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(location, w, n, shared)) for w in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * writers
    _check_all_written(location, writers, n, shared)


def test_concurrent_writer_and_reader_threads(location: str) -> None:
    writers, n, shared = 4, 40, "ee" * 8
    with Registry.open(location) as reg:
        errors: list[BaseException] = []

        def run(fn: Callable[[], None]) -> Callable[[], None]:
            def wrapped() -> None:
                try:
                    fn()
                except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(exc)

            return wrapped

        def write(w: int) -> None:
            for i in range(n):
                cid = f"{w:04x}{i:012x}"
                reg.record(cid, f"token-{w}-{i}", "png", f"store-{cid}".encode(), f"urn:c2pa:{cid}")
                reg.record(shared, f"shared-by-{w}", "png")

        def read() -> None:
            for _ in range(n * writers):
                found = reg.entry(shared)
                assert found is None or found.token.startswith("shared-by-")

        threads = [threading.Thread(target=run(lambda w=w: write(w))) for w in range(writers)]
        threads += [threading.Thread(target=run(read)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
    _check_all_written(location, writers, n, shared)


def test_unreachable_server_and_bad_urls_are_registry_errors(tmp_path: Path) -> None:
    # a socket folder with no server in it: refused at once, and the password never shows in the message
    url = f"postgresql://kz:s3cret@/db?host={tmp_path}&port=5999&connect_timeout=2"
    with pytest.raises(RegistryError) as info:
        PostgresRegistry(url, connect_timeout=2)
    assert "s3cret" not in str(info.value) and "***" in str(info.value)
    with pytest.raises(RegistryError, match="cannot open registry"):
        Registry.open(tmp_path / "no-such-folder" / "reg.sqlite")


def test_a_closed_registry_says_so(pg_url: str) -> None:
    reg = Registry.open(pg_url)
    reg.close()
    reg.close()  # twice is fine
    with pytest.raises(RegistryError, match="closed"):
        reg.lookup("00" * 8)


def test_a_select_only_role_can_resolve_but_not_record(pg_url: str, signer) -> None:
    import psycopg

    label = Label.create(owner="O", system="S")
    with Registry.open(pg_url) as owner:  # the first open migrates, as the owner
        owner.record(label.content_id, sign_label(label, signer), "png", b"store", "urn:c2pa:r")
    database = pg_url.split("/")[3].split("?")[0]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS kz_reader")
        conn.execute("CREATE ROLE kz_reader LOGIN")
        conn.execute("GRANT SELECT ON kzlabel_labels, kzlabel_schema TO kz_reader")
    reader_url = pg_url.replace("postgresql://postgres@", "postgresql://kz_reader@")
    assert database in reader_url
    with Registry.open(reader_url) as reader:  # opening at the current version only reads
        assert reader.manifest_id(label.content_id) == "urn:c2pa:r" and reader.manifest("urn:c2pa:r") == b"store"
        with pytest.raises(RegistryError, match="permission denied"):
            reader.record("11" * 8, "t", "png")
