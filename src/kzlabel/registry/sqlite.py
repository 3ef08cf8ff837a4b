"""The SQLite registry: a local file (or ``:memory:``), the default backend.

One connection per registry object, serialised by a lock (sqlite3 connections are not safe to share between
threads); WAL mode and a busy timeout let several processes (batch workers) write the same file.
"""

from __future__ import annotations

import os
import sqlite3
import threading

from ..errors import RegistryError
from .base import SCHEMA_VERSION, Entry, Registry

__all__ = ["SQLiteRegistry"]

# each step takes the schema one version up; version 1 is the table kzlabel had before versions were recorded, so a
# registry file written by an older kzlabel (no kzlabel_schema table: version 0) is migrated in place
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS labels (
            content_id TEXT PRIMARY KEY,
            token      TEXT NOT NULL,
            format     TEXT NOT NULL,
            created    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
        )""",
    ),
    (
        "ALTER TABLE labels ADD COLUMN manifest_id TEXT",
        "ALTER TABLE labels ADD COLUMN manifest BLOB",
        "CREATE UNIQUE INDEX labels_manifest_id ON labels (manifest_id)",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION

_UPSERT = """
INSERT INTO labels (content_id, token, format, manifest_id, manifest) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (content_id) DO UPDATE SET token = excluded.token, format = excluded.format,
    manifest_id = excluded.manifest_id, manifest = excluded.manifest,
    created = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')
"""


class SQLiteRegistry(Registry, schemes=("", "sqlite")):
    """A thread-safe SQLite table of signed labels keyed by content id (``sqlite:///abs/path`` also names one)."""

    def __init__(self, location: str | os.PathLike[str] = ":memory:") -> None:
        path = os.fspath(location)
        if path.lower().startswith("sqlite://"):
            path = path[len("sqlite://") :]
        super().__init__(path)
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            if path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._migrate()
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open registry: {exc}", source=path) from None

    def _migrate(self) -> None:
        """Bring the file to SCHEMA_VERSION: at the current version only read (a read-only file opens); otherwise
        under the write lock (BEGIN IMMEDIATE), reading the version again, so concurrent openers migrate it once."""
        db = self._db
        if self._version() == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS kzlabel_schema (version INTEGER NOT NULL)")
            version = self._version()
            if db.execute("SELECT count(*) FROM kzlabel_schema").fetchone()[0] == 0:
                db.execute("INSERT INTO kzlabel_schema (version) VALUES (0)")
            for step in _MIGRATIONS[version:]:
                for statement in step:
                    db.execute(statement)
            db.execute("UPDATE kzlabel_schema SET version = ?", (SCHEMA_VERSION,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _version(self) -> int:
        exists = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kzlabel_schema'")
        if exists.fetchone() is None:
            return 0
        row = self._db.execute("SELECT version FROM kzlabel_schema").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise RegistryError(
                f"the registry's schema is version {version}, newer than this kzlabel knows ({SCHEMA_VERSION})",
                source=self.path,
            )
        return version

    def record(
        self,
        content_id: str,
        token: str,
        format: str,
        manifest: bytes | None = None,
        manifest_id: str | None = None,
    ) -> None:
        try:
            with self._lock:
                self._db.execute(_UPSERT, (content_id, token, format, manifest_id, manifest))
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot record in the registry: {exc}", source=self.path) from None

    def entry(self, content_id: str) -> Entry | None:
        row = self._one("SELECT token, format, manifest_id, manifest FROM labels WHERE content_id = ?", content_id)
        if row is None:
            return None
        return Entry(content_id, row[0], row[1], row[2], bytes(row[3]) if row[3] is not None else None)

    def manifest_id(self, content_id: str) -> str | None:
        row = self._one("SELECT manifest_id FROM labels WHERE content_id = ?", content_id)
        return row[0] if row is not None else None

    def manifest(self, manifest_id: str) -> bytes | None:
        row = self._one("SELECT manifest FROM labels WHERE manifest_id = ?", manifest_id)
        return bytes(row[0]) if row is not None and row[0] is not None else None

    def _one(self, sql: str, key: str) -> tuple | None:
        try:
            with self._lock:
                row: tuple | None = self._db.execute(sql, (key,)).fetchone()
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot read the registry: {exc}", source=self.path) from None
        return row

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
