"""The resume journal: one SQLite row per finished member, written only after that member's output is durable.

A run killed at any instant (``kill -9`` included) leaves a journal that says exactly which outputs can be trusted,
so the next run with the same command skips those members and reuses their outputs; a member the journal does not
list, or lists as failed, is simply done again. The journal also remembers the source's folder entries and metadata
(mode, mtime, tar owners), which is all an archive output needs to be assembled from the staged parts; it is keyed
by a fingerprint of the run, so a different source, destination or option set cannot reuse it by mistake.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import KzlabelError
from .model import COPIED, DIR, LABELLED, REFUSED, MemberResult, Meta

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    path TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    format TEXT,
    reason TEXT,
    content_id TEXT,
    sha256 TEXT,
    size INTEGER,
    part TEXT,
    mode INTEGER,
    mtime_ns INTEGER,
    uid INTEGER,
    gid INTEGER,
    uname TEXT,
    gname TEXT,
    layers TEXT,
    skipped TEXT
);
"""
_COLS = [
    "path",
    "status",
    "format",
    "reason",
    "content_id",
    "sha256",
    "size",
    "part",
    "mode",
    "mtime_ns",
    "uid",
    "gid",
    "uname",
    "gname",
    "layers",
    "skipped",
]
_FINAL = {LABELLED, COPIED, REFUSED, DIR}  # journal statuses a resumed run does not redo (failed is retried)


class Journal:
    """SQLite record of finished members; a row is written only after its output is durable."""

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL survives a killed process (only a power cut may lose the last rows, which are then simply redone).
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        row = self.db.execute("SELECT value FROM meta WHERE key='fingerprint'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (fingerprint,))
        elif row[0] != fingerprint:
            self.db.close()
            raise KzlabelError(
                "the journal belongs to a different batch (other source, destination or options); "
                "delete it or pass another --journal",
                source=str(path),
            )

    def get(self, rel: str) -> dict[str, Any] | None:
        row = self.db.execute(f"SELECT {', '.join(_COLS)} FROM members WHERE path=?", (rel,)).fetchone()
        return dict(zip(_COLS, row, strict=True)) if row else None

    def done_paths(self) -> set[str]:
        q = f"SELECT path FROM members WHERE status IN ({','.join('?' * len(_FINAL))})"
        return {r[0] for r in self.db.execute(q, tuple(_FINAL))}

    def record(self, r: MemberResult, meta: Meta, part: str | None) -> None:
        self.db.execute(
            f"INSERT OR REPLACE INTO members ({', '.join(_COLS)}) VALUES ({', '.join('?' * len(_COLS))})",
            (
                r.path,
                r.status,
                r.format,
                r.reason,
                r.content_id,
                r.sha256,
                r.size,
                part,
                meta.mode,
                meta.mtime_ns,
                meta.uid,
                meta.gid,
                meta.uname,
                meta.gname,
                json.dumps(list(r.layers)),
                json.dumps(r.skipped, sort_keys=True),
            ),
        )

    def rows(self) -> Iterator[dict[str, Any]]:
        for row in self.db.execute(f"SELECT {', '.join(_COLS)} FROM members ORDER BY path"):
            yield dict(zip(_COLS, row, strict=True))

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self.db.close()


def result_from_row(row: Mapping[str, Any], resumed: bool) -> MemberResult:
    return MemberResult(
        row["path"],
        row["status"],
        row["format"],
        row["reason"] or "",
        row["content_id"],
        row["sha256"],
        row["size"],
        tuple(json.loads(row["layers"] or "[]")),
        json.loads(row["skipped"] or "{}"),
        resumed=resumed,
    )
