"""Everything a batch writes, and how it makes each write durable: member outputs, the source's modes and times
on them, the JSONL report, and the archive assembled from the staged parts at the end.

A member is journalled as done only after its output has been fsynced and renamed into place and its folder entry
fsynced, so these writers never leave a half-written file under its final name; temp files a killed run leaves
behind are swept at the end (kzlabel's one temp-name pattern, :func:`kzlabel.io.temp_beside`). Archive assembly is
deterministic (sorted member order, metadata from the source, fixed compression headers), which is why a resumed run
produces the archive an uninterrupted run would have produced from the same member outputs.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import tarfile
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..io import replace_atomic, sidecar_path, sweep_stale_temps, temp_beside, write_atomic
from .archives import inside
from .journal import Journal
from .model import CHUNK, DIR, REFUSED, MemberResult, Meta, Refused, safe_mode


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable (best effort: some filesystems cannot open a folder)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def restore_meta(path: Path, meta: Meta, *, is_dir: bool = False) -> None:
    """Give an output the source's mode (made safe: :func:`~kzlabel.batch.model.safe_mode`) and mtime."""
    if meta.mode is not None:
        os.chmod(path, safe_mode(meta.mode, is_dir=is_dir))
    if meta.mtime_ns is not None:
        os.utime(path, ns=(meta.mtime_ns, meta.mtime_ns))


def write_output(out: Path, data: bytes, meta: Meta, apply_meta: bool) -> None:
    """Durable write: temp + fsync + rename (write_atomic), then the source's mode/mtime, then the folder entry."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, data)
    if apply_meta:
        restore_meta(out, meta)
    fsync_dir(out.parent)


def copy_output(src_file: Path, out: Path, meta: Meta, apply_meta: bool) -> tuple[str, int]:
    """Stream-copy an unsupported file (it may be big) with the same durability as write_output."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(out)
    h = hashlib.sha256()
    n = 0
    try:
        with open(src_file, "rb") as fi, open(tmp, "wb") as fo:
            while chunk := fi.read(CHUNK):
                h.update(chunk)
                n += len(chunk)
                fo.write(chunk)
        replace_atomic(tmp, out, None)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if apply_meta:
        restore_meta(out, meta)
    fsync_dir(out.parent)
    return h.hexdigest(), n


def write_report(path: Path, results: Iterable[MemberResult]) -> None:
    """The JSONL report, one line per member, replaced whole (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:  # streamed: a report can hold millions of lines
            fh.writelines(json.dumps(r.to_dict(), ensure_ascii=False, sort_keys=False) + "\n" for r in results)
        replace_atomic(tmp, path, None)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def restore_dirs(dst: Path, dirs: list[tuple[str, Meta]]) -> None:
    """Create the source's folders in ``dst`` with their times and modes, deepest first (a parent's mtime would
    otherwise move again when its children are touched); a folder that cannot be made is left to the members' report."""
    for rel, meta in sorted(dirs, key=lambda d: d[0].count("/"), reverse=True):
        try:
            p = inside(dst, rel)
            p.mkdir(parents=True, exist_ok=True)
            restore_meta(p, meta, is_dir=True)
        except (OSError, Refused):
            pass


def remove_stale_temps(root: Path) -> None:
    """Temp files of writes a killed run left half-done are not part of the output: every folder of ``root`` is
    swept of them (only kzlabel's own pattern, only those of processes that no longer run)."""
    for dirpath, _dirs, _files in os.walk(root):
        sweep_stale_temps(Path(dirpath))


def _zip_date(mtime_ns: int | None) -> tuple[int, int, int, int, int, int]:
    if mtime_ns is None:
        return (1980, 1, 1, 0, 0, 0)
    t = time.localtime(mtime_ns // 1_000_000_000)
    if t.tm_year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    if t.tm_year > 2107:
        return (2107, 12, 31, 23, 59, 58)
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def _member_mode(mode: int | None, is_dir: bool) -> int:
    """An output archive member's mode: the source's, made safe, else 0755 for a folder and 0644 for a file."""
    if mode is None:
        return 0o755 if is_dir else 0o644
    return safe_mode(mode, is_dir=is_dir)


def _row_meta(row: dict[str, Any]) -> Meta:
    return Meta(row["mode"], row["mtime_ns"], row["uid"], row["gid"], row["uname"], row["gname"])


def replace_old_sidecars(journal: Journal, parts: Path) -> None:
    """Archive DST: a member whose sidecar C2PA manifest was staged beside its part gets the member ``X.c2pa``, so
    the source's own ``X.c2pa`` is not copied as well (a folder DST refuses it for the same reason)."""
    owners = [r["path"] for r in journal.rows() if r["part"] and sidecar_path(parts / r["part"]).is_file()]
    for owner in owners:
        row = journal.get(owner + ".c2pa")
        if row is not None and row["status"] not in (REFUSED, DIR):
            why = f"replaced by the new sidecar C2PA manifest of {owner}"
            journal.record(MemberResult(row["path"], REFUSED, None, why), _row_meta(row), None)


def _archive_members(rows: list[dict[str, Any]], parts: Path) -> Iterator[tuple[str, dict[str, Any], Path | None]]:
    """(member path, its journal row, its staged file or None for a folder), a staged sidecar manifest right after
    its owner as ``X.c2pa`` with the owner's metadata."""
    for r in rows:
        if r["status"] == DIR:
            yield r["path"], r, None
            continue
        yield r["path"], r, parts / r["part"]
        side = sidecar_path(parts / r["part"])
        if side.is_file():
            yield r["path"] + ".c2pa", r, side


def assemble(dst: Path, kind: str, journal: Journal, parts: Path) -> None:
    """Build the output archive from the journal and the staged parts, then rename it into place."""
    tmp = temp_beside(dst)
    rows = [r for r in journal.rows() if r["status"] == DIR or r["part"]]
    try:
        with open(tmp, "wb") as raw:
            if kind == "zip":
                with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
                    for path, r, staged in _archive_members(rows, parts):
                        is_dir = staged is None
                        zi = zipfile.ZipInfo(path + ("/" if is_dir else ""), _zip_date(r["mtime_ns"]))
                        zi.create_system = 3
                        mode = _member_mode(r["mode"], is_dir)
                        zi.external_attr = ((stat.S_IFDIR if is_dir else stat.S_IFREG) | mode) << 16
                        if staged is None:
                            zi.external_attr |= 0x10
                            zf.writestr(zi, b"")
                            continue
                        zi.compress_type = zipfile.ZIP_DEFLATED
                        size = staged.stat().st_size
                        with open(staged, "rb") as fi, zf.open(zi, "w", force_zip64=size > 2**31) as fo:
                            shutil.copyfileobj(fi, fo, CHUNK)
            else:
                zstd_writer = None
                if kind == "tgz":
                    stream: Any = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
                elif kind == "tzst":
                    import zstandard  # optional (the batch extra): only when writing a .tar.zst

                    zstd_writer = zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False)
                    stream = zstd_writer
                else:
                    stream = raw
                with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                    for path, r, staged in _archive_members(rows, parts):
                        is_dir = staged is None
                        ti = tarfile.TarInfo(path)
                        ti.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
                        ti.mode = _member_mode(r["mode"], is_dir)
                        ti.mtime = (r["mtime_ns"] or 0) // 1_000_000_000
                        ti.uid, ti.gid = r["uid"] or 0, r["gid"] or 0
                        ti.uname, ti.gname = r["uname"] or "", r["gname"] or ""
                        if staged is None:
                            tf.addfile(ti)
                            continue
                        ti.size = staged.stat().st_size
                        with open(staged, "rb") as fi:
                            tf.addfile(ti, fi)
                if kind in ("tgz", "tzst"):
                    stream.close()  # writes the trailer; raw stays open (closefd=False / fileobj)
        replace_atomic(tmp, dst, None)
        fsync_dir(dst.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
