"""The soft-binding registry: content id → signed label, so a file whose metadata was stripped can still be traced.

The watermark carries only the 64-bit content id; this table maps it back to the signed label (and so to the
owner responsible under Art. 21(3)). SQLite by default; the three methods are all another backend must offer.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from .errors import KzlabelError

__all__ = ["Registry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    content_id TEXT PRIMARY KEY,
    token      TEXT NOT NULL,
    format     TEXT NOT NULL,
    created    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
)
"""


class Registry:
    """A small thread-safe SQLite table of signed labels keyed by content id."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise KzlabelError(f"cannot open registry: {exc}", source=self.path) from None

    def record(self, content_id: str, token: str, format: str) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO labels (content_id, token, format) VALUES (?, ?, ?)",
                (content_id, token, format),
            )

    def lookup(self, content_id: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT token FROM labels WHERE content_id = ?", (content_id,)).fetchone()
        return row[0] if row else None

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
