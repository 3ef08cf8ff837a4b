"""The PostgreSQL registry: one database shared by every instance of a service (``postgresql://...`` URLs).

psycopg 3 over a small connection pool (psycopg_pool), so the threads of one process (the service's worker lanes)
do not queue behind one connection; the service's resolution API reads through a second, asyncio pool opened on its
event loop (``start_async``), with no thread hop per lookup. Tables carry a ``kzlabel_`` prefix so the registry can
live in a database that holds other things. The schema is created and migrated on first use, under a
transaction-scoped advisory lock, so several instances starting at once against a fresh database migrate it exactly
once.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from ..errors import MissingDependency, RegistryError
from .base import SCHEMA_VERSION, Entry, Registry, redact

__all__ = ["PostgresRegistry"]

_LOCK_ID = 0x6B7A6C6162656C  # "kzlabel": the advisory lock migrations take
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS kzlabel_labels (
            content_id text PRIMARY KEY,
            token      text NOT NULL,
            format     text NOT NULL,
            created    timestamptz NOT NULL DEFAULT now()
        )""",
    ),
    (
        "ALTER TABLE kzlabel_labels ADD COLUMN IF NOT EXISTS manifest_id text",
        "ALTER TABLE kzlabel_labels ADD COLUMN IF NOT EXISTS manifest bytea",
        "CREATE UNIQUE INDEX IF NOT EXISTS kzlabel_labels_manifest_id ON kzlabel_labels (manifest_id)",
    ),
)
assert len(_MIGRATIONS) == SCHEMA_VERSION

_UPSERT = """
INSERT INTO kzlabel_labels (content_id, token, format, manifest_id, manifest) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (content_id) DO UPDATE SET token = excluded.token, format = excluded.format,
    manifest_id = excluded.manifest_id, manifest = excluded.manifest, created = now()
"""
_BY_CONTENT_ID = "SELECT manifest_id FROM kzlabel_labels WHERE content_id = %s"
_MANIFEST = "SELECT manifest FROM kzlabel_labels WHERE manifest_id = %s"


def _psycopg() -> tuple[Any, Any]:
    """psycopg and psycopg_pool, imported when a PostgreSQL registry is opened (the SQLite default needs neither)."""
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        raise MissingDependency("a postgresql:// registry needs psycopg: pip install 'kzlabel[postgres]'") from None
    return psycopg, psycopg_pool


class PostgresRegistry(Registry, schemes=("postgresql", "postgres")):
    """Labels in a PostgreSQL database. ``pool_size``: connections this process may hold at most (the service's
    worker lanes plus the soft-binding endpoints); ``connect_timeout``: seconds to wait for the server."""

    def __init__(self, location: str | os.PathLike[str], *, pool_size: int = 4, connect_timeout: float = 10.0) -> None:
        super().__init__(location)
        self._pool_size, self._connect_timeout = max(1, pool_size), connect_timeout
        self._apool: Any = None  # the asyncio pool, and the loop it belongs to (start_async)
        self._aloop: asyncio.AbstractEventLoop | None = None
        psycopg, psycopg_pool = _psycopg()
        self._errors: tuple[type[BaseException], ...] = (psycopg.Error,)
        self._closed = threading.Event()
        shown = redact(self.location)
        try:
            self._pool = psycopg_pool.ConnectionPool(
                self.location,
                min_size=1,
                max_size=self._pool_size,
                kwargs={"autocommit": True},
                timeout=connect_timeout,
                open=False,
                name="kzlabel-registry",
            )
        except psycopg.ProgrammingError as exc:  # a malformed URL
            raise RegistryError(f"bad registry URL: {exc}", source=shown) from None
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
            self._migrate()
        except psycopg.Error as exc:
            self._pool.close()
            raise RegistryError(f"cannot open registry: {_first_line(exc)}", source=shown) from None
        except BaseException:
            self._pool.close()
            raise

    @contextmanager
    def _conn(self, what: str) -> Iterator[Any]:
        """A pooled connection; psycopg's errors become RegistryError naming the (password-less) URL."""
        if self._closed.is_set():
            raise RegistryError("the registry is closed", source=redact(self.location))
        try:
            with self._pool.connection() as conn:
                yield conn
        except self._errors as exc:
            raise RegistryError(
                f"cannot {what} the registry: {_first_line(exc)}", source=redact(self.location)
            ) from None

    async def start_async(self) -> None:
        if self._apool is not None:
            return
        psycopg, psycopg_pool = _psycopg()
        pool = psycopg_pool.AsyncConnectionPool(
            self.location,
            min_size=1,
            max_size=self._pool_size,
            kwargs={"autocommit": True},
            timeout=self._connect_timeout,
            open=False,
            name="kzlabel-registry-async",
        )
        try:
            await pool.open(wait=True, timeout=self._connect_timeout)
        except psycopg.Error as exc:
            await pool.close()
            raise RegistryError(f"cannot open registry: {_first_line(exc)}", source=redact(self.location)) from None
        self._apool, self._aloop = pool, asyncio.get_running_loop()

    async def stop_async(self) -> None:
        pool, self._apool, self._aloop = self._apool, None, None
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def _aconn(self, what: str) -> AsyncIterator[Any]:
        """A connection of the asyncio pool (as :meth:`_conn`)."""
        if self._closed.is_set():
            raise RegistryError("the registry is closed", source=redact(self.location))
        try:
            async with self._apool.connection() as conn:
                yield conn
        except self._errors as exc:
            raise RegistryError(
                f"cannot {what} the registry: {_first_line(exc)}", source=redact(self.location)
            ) from None

    def _on_loop(self) -> bool:
        """The asyncio pool serves this loop (a test client may run requests on loops of its own)."""
        return self._apool is not None and self._aloop is asyncio.get_running_loop()

    async def manifest_id_async(self, content_id: str) -> str | None:
        if not self._on_loop():
            return await super().manifest_id_async(content_id)
        async with self._aconn("read") as conn:
            cur = await conn.execute(_BY_CONTENT_ID, (content_id,))
            row = await cur.fetchone()
        return row[0] if row is not None else None

    async def manifest_async(self, manifest_id: str) -> bytes | None:
        if not self._on_loop():
            return await super().manifest_async(manifest_id)
        async with self._aconn("read") as conn:
            cur = await conn.execute(_MANIFEST, (manifest_id,))
            row = await cur.fetchone()
        return bytes(row[0]) if row is not None and row[0] is not None else None

    def _migrate(self) -> None:
        """Bring the database to SCHEMA_VERSION. At the current version this only reads (a role with SELECT alone
        can open the registry); otherwise the steps run in one transaction under the advisory lock, after reading
        the version again (another instance may have migrated it while this one waited)."""
        with self._pool.connection() as conn, conn.transaction():
            if self._version(conn) == SCHEMA_VERSION:
                return
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            conn.execute("CREATE TABLE IF NOT EXISTS kzlabel_schema (version integer NOT NULL)")
            version = self._version(conn)
            if conn.execute("SELECT count(*) FROM kzlabel_schema").fetchone()[0] == 0:
                conn.execute("INSERT INTO kzlabel_schema (version) VALUES (0)")
            for step in _MIGRATIONS[version:]:
                for statement in step:
                    conn.execute(statement)
            conn.execute("UPDATE kzlabel_schema SET version = %s", (SCHEMA_VERSION,))

    def _version(self, conn: Any) -> int:
        """The schema version reached (0: no kzlabel tables yet); a newer one than this kzlabel knows is refused."""
        if conn.execute("SELECT to_regclass('kzlabel_schema')").fetchone()[0] is None:
            return 0
        row = conn.execute("SELECT version FROM kzlabel_schema").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise RegistryError(
                f"the registry's schema is version {version}, newer than this kzlabel knows ({SCHEMA_VERSION})",
                source=redact(self.location),
            )
        return version

    def schema_version(self) -> int:
        with self._conn("read") as conn:
            return int(conn.execute("SELECT version FROM kzlabel_schema").fetchone()[0])

    def record(
        self,
        content_id: str,
        token: str,
        format: str,
        manifest: bytes | None = None,
        manifest_id: str | None = None,
    ) -> None:
        with self._conn("write to") as conn:
            conn.execute(_UPSERT, (content_id, token, format, manifest_id, manifest))

    def entry(self, content_id: str) -> Entry | None:
        with self._conn("read") as conn:
            row = conn.execute(
                "SELECT token, format, manifest_id, manifest FROM kzlabel_labels WHERE content_id = %s", (content_id,)
            ).fetchone()
        if row is None:
            return None
        return Entry(content_id, row[0], row[1], row[2], bytes(row[3]) if row[3] is not None else None)

    def manifest_id(self, content_id: str) -> str | None:
        with self._conn("read") as conn:
            row = conn.execute(_BY_CONTENT_ID, (content_id,)).fetchone()
        return row[0] if row is not None else None

    def manifest(self, manifest_id: str) -> bytes | None:
        with self._conn("read") as conn:
            row = conn.execute(_MANIFEST, (manifest_id,)).fetchone()
        return bytes(row[0]) if row is not None and row[0] is not None else None

    def __len__(self) -> int:
        with self._conn("read") as conn:
            return int(conn.execute("SELECT count(*) FROM kzlabel_labels").fetchone()[0])

    def close(self) -> None:
        """Close the thread pool; the asyncio pool is closed by :meth:`stop_async` on its loop (reads through it
        fail from now on all the same)."""
        if not self._closed.is_set():
            self._closed.set()
            self._pool.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
