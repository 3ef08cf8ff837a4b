"""Reading a source member by member: a folder, a zip, or a tar (plain, gzip or zstd), all streamed as Entries.

This is where hostile input is met, so it is where it is refused: names are normalised to relative POSIX paths
(no traversal, no absolute paths, no NULs), links and devices are reported and never followed, and sizes are checked
against both what an entry claims and what it really expands to (a zip bomb lies about its sizes). Members larger
than SPILL_OVER go to a temp file rather than memory, so a worker pipe never carries gigabytes; a tar is read as one
stream, so a 100 GB archive never sits in memory or needs seeking.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import stat
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import KzlabelError, MissingDependency
from .model import CHUNK, Entry, Meta, MiB, Refused, Safety

SPILL_OVER = 64 * MiB  # archive members above this go to a temp file instead of memory / the worker pipe


def safe_member_path(name: str) -> str:
    """Normalise an archive member name to a relative POSIX path, or refuse it (traversal, absolute, odd)."""
    if "\x00" in name:
        raise Refused("member name contains a NUL byte")
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) >= 2 and raw[1] == ":" and raw[0].isalpha()):
        raise Refused(f"absolute path {name!r}")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise Refused(f"path traversal ('..') in {name!r}")
    if not parts:
        raise Refused(f"empty member name {name!r}")
    return "/".join(parts)


def inside(root: Path, rel: str) -> Path:
    """The output path for ``rel`` under ``root``, refusing anything that would resolve outside it."""
    target = (root / rel).resolve()
    base = root.resolve()
    if target != base and base not in target.parents:
        raise Refused(f"{rel!r} would be written outside the destination")
    return target


_ARCHIVE_SUFFIXES = {
    ".zip": "zip",
    ".tar": "tar",
    ".tar.gz": "tgz",
    ".tgz": "tgz",
    ".tar.zst": "tzst",
    ".tar.zstd": "tzst",
    ".tzst": "tzst",
}


def kind_of(path: str | os.PathLike, *, existing: bool = False) -> str:
    """The kind ("folder", "zip", "tar", "tgz", "tzst"): by content for an existing source, by suffix otherwise."""
    p = Path(path)
    if existing and p.is_dir():
        return "folder"
    if existing and p.is_file():
        with open(p, "rb") as fh:
            head = fh.read(512)
        if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
            return "zip"
        if head.startswith(b"\x1f\x8b"):
            return "tgz"
        if head.startswith(b"\x28\xb5\x2f\xfd"):
            return "tzst"
        if len(head) >= 262 and head[257:262] == b"ustar":
            return "tar"
    name = p.name.lower()
    for suf in sorted(_ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suf):
            return _ARCHIVE_SUFFIXES[suf]
    if existing and p.is_file():
        raise KzlabelError("not a folder or a supported archive (.zip, .tar, .tar.gz, .tgz, .tar.zst)", source=str(p))
    return "folder"


class _CountingReader(io.RawIOBase):
    """Counts compressed bytes read, for the whole-archive expansion ratio."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.fh.read(len(b))
        n = len(data)
        b[:n] = data
        self.count += n
        return n


def _read_limited(fh: IO[bytes], limit: int, what: str) -> bytes:
    """Read all of ``fh`` but stop as soon as it passes ``limit`` bytes (the size claimed may be a lie)."""
    buf = bytearray()
    while True:
        chunk = fh.read(min(CHUNK, limit + 1 - len(buf)))
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise Refused(f"{what} expands past {limit} bytes")


def _read_member(fh: IO[bytes], limit: int, declared: int, spill_dir: Path | None) -> tuple[bytes | None, str | None]:
    """Member bytes in memory, or — when big — in a temp file, so in-flight work never holds GBs in RAM."""
    if spill_dir is None or declared <= SPILL_OVER:
        return _read_limited(fh, limit, "member"), None
    spill_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=spill_dir, suffix=".member")
    n = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := fh.read(CHUNK):
                n += len(chunk)
                if n > limit:
                    raise Refused(f"member expands past {limit} bytes")
                out.write(chunk)
    except BaseException:
        os.unlink(tmp)
        raise
    return None, tmp


def _walk_folder(root: Path, safety: Safety, exclude: list[Path]) -> Iterator[Entry]:
    """Sorted walk; symlinks are reported, never followed; the destination (if inside) is left out."""
    excluded = {p.resolve() for p in exclude}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        keep = []
        for name in sorted(dirnames):
            p = d / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                yield Entry(rel, "refused", reason="symlink to a folder (not followed)")
                continue
            if p.resolve() in excluded:
                continue
            st = p.lstat()
            keep.append(name)
            yield Entry(rel, "dir", Meta(stat.S_IMODE(st.st_mode), st.st_mtime_ns))
        dirnames[:] = keep
        for name in sorted(filenames):
            p = d / name
            rel = p.relative_to(root).as_posix()
            if p.resolve() in excluded and not p.is_symlink():
                continue
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                yield Entry(rel, "refused", reason="symlink (not followed)")
            elif not stat.S_ISREG(st.st_mode):
                yield Entry(rel, "refused", reason="not a regular file (device, socket or pipe)")
            elif st.st_size > safety.max_member_bytes:
                yield Entry(
                    rel,
                    "refused",
                    size=st.st_size,
                    reason=f"{st.st_size} bytes, over the {safety.max_member_bytes}-byte limit",
                )
            else:
                yield Entry(rel, "file", Meta(stat.S_IMODE(st.st_mode), st.st_mtime_ns), st.st_size, src_file=str(p))


def _zip_mtime_ns(dt: tuple[int, int, int, int, int, int]) -> int:
    return int(time.mktime((*dt, 0, 0, -1))) * 1_000_000_000


def _walk_zip(path: Path, safety: Safety, skip: Callable[[str], bool], spill: Path | None) -> Iterator[Entry]:
    with zipfile.ZipFile(path) as zf:
        total_out = 0
        total_in = 0
        for info in zf.infolist():
            try:
                rel = safe_member_path(info.filename)
            except Refused as exc:
                yield Entry(info.filename, "refused", reason=str(exc))
                continue
            unix = info.external_attr >> 16
            meta = Meta(stat.S_IMODE(unix) if unix else None, _zip_mtime_ns(info.date_time))
            if info.is_dir():
                yield Entry(rel, "dir", meta)
                continue
            if unix and stat.S_ISLNK(unix):
                yield Entry(rel, "refused", reason="symlink member")
                continue
            if unix and stat.S_IFMT(unix) not in (0, stat.S_IFREG):
                yield Entry(rel, "refused", reason="not a regular file (device or special member)")
                continue
            if info.flag_bits & 0x1:
                yield Entry(rel, "refused", reason="encrypted member")
                continue
            size = info.file_size
            if size > safety.max_member_bytes:
                yield Entry(
                    rel, "refused", meta, size, reason=f"{size} bytes, over the {safety.max_member_bytes}-byte limit"
                )
                continue
            ratio = size / max(info.compress_size, 1)
            if ratio > safety.bomb_ratio and size > safety.bomb_min_bytes:
                yield Entry(rel, "refused", meta, size, reason=f"zip bomb: expands {ratio:.0f}x to {size} bytes")
                continue
            total_out += size
            total_in += info.compress_size
            if total_out > safety.bomb_min_bytes and total_out / max(total_in, 1) > safety.max_total_ratio:
                yield Entry(
                    rel, "refused", meta, size, reason=f"archive expands more than {safety.max_total_ratio:.0f}x"
                )
                continue
            if skip(rel):
                yield Entry(rel, "file", meta, size)
                continue
            try:
                with zf.open(info) as fh:
                    data, spilled = _read_member(fh, min(size, safety.max_member_bytes), size, spill)
            except Refused as exc:
                yield Entry(rel, "refused", meta, size, reason=f"{exc} (declared {size})")
                continue
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as exc:
                yield Entry(rel, "refused", meta, size, reason=f"unreadable member: {exc}")
                continue
            yield Entry(rel, "file", meta, size, data=data, src_file=spilled, spilled=spilled is not None)


def _open_tar_stream(path: Path, kind: str) -> tuple[tarfile.TarFile, _CountingReader, list[Any]]:
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller with the decompressor and tarfile
    counter = _CountingReader(raw)
    buffered = io.BufferedReader(counter, CHUNK)
    closers: list[Any] = [raw]
    if kind == "tgz":
        stream: IO[bytes] = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
        closers.insert(0, stream)
    elif kind == "tzst":
        try:
            import zstandard  # optional (the batch extra), so only when a .tar.zst is read
        except ImportError:
            raw.close()
            raise MissingDependency("reading .tar.zst needs zstandard: pip install kzlabel[batch]") from None
        stream = zstandard.ZstdDecompressor().stream_reader(buffered)
        closers.insert(0, stream)
    else:
        stream = buffered
    tf = tarfile.open(fileobj=stream, mode="r|")  # noqa: SIM115 - streamed by _walk_tar, closed there
    return tf, counter, closers


def _walk_tar(
    path: Path, kind: str, safety: Safety, skip: Callable[[str], bool], abort: list[str], spill: Path | None
) -> Iterator[Entry]:
    tf, counter, closers = _open_tar_stream(path, kind)
    total_out = 0
    try:
        while True:
            try:
                ti = tf.next()
            except (tarfile.TarError, OSError, EOFError) as exc:
                abort.append(f"archive unreadable after {total_out} bytes: {exc}")
                return
            if ti is None:
                return
            try:
                rel = safe_member_path(ti.name)
            except Refused as exc:
                yield Entry(ti.name, "refused", reason=str(exc))
                continue
            meta = Meta(ti.mode, int(ti.mtime * 1_000_000_000), ti.uid, ti.gid, ti.uname, ti.gname)
            if ti.isdir():
                yield Entry(rel, "dir", meta)
                continue
            if ti.issym() or ti.islnk():
                yield Entry(
                    rel, "refused", reason=f"{'symlink' if ti.issym() else 'hardlink'} member -> {ti.linkname!r}"
                )
                continue
            if not ti.isreg():
                yield Entry(rel, "refused", reason="device, fifo or other special member")
                continue
            if ti.size > safety.max_member_bytes:
                yield Entry(
                    rel,
                    "refused",
                    meta,
                    ti.size,
                    reason=f"{ti.size} bytes, over the {safety.max_member_bytes}-byte limit",
                )
                continue
            total_out += ti.size
            if total_out > safety.bomb_min_bytes and total_out / max(counter.count, 1) > safety.max_total_ratio:
                yield Entry(
                    rel, "refused", meta, ti.size, reason=f"archive expands more than {safety.max_total_ratio:.0f}x"
                )
                abort.append(f"decompression bomb: archive expands more than {safety.max_total_ratio:.0f}x; stopped")
                return
            if skip(rel):
                yield Entry(rel, "file", meta, ti.size)
                continue
            fh = tf.extractfile(ti)
            try:
                data, spilled = _read_member(fh, safety.max_member_bytes, ti.size, spill) if fh else (b"", None)
            except (tarfile.TarError, OSError, EOFError) as exc:
                abort.append(f"archive unreadable in {rel}: {exc}")
                yield Entry(rel, "refused", meta, ti.size, reason=f"unreadable member: {exc}")
                return
            except Refused as exc:
                yield Entry(rel, "refused", meta, ti.size, reason=str(exc))
                continue
            yield Entry(rel, "file", meta, ti.size, data=data, src_file=spilled, spilled=spilled is not None)
    finally:
        tf.close()
        for c in closers:
            with contextlib.suppress(Exception):  # closing a half-read stream may complain; nothing to do
                c.close()


def iter_entries(
    src: Path,
    safety: Safety,
    *,
    skip: Callable[[str], bool] = lambda _p: False,
    exclude: Iterable[Path] = (),
    abort: list[str] | None = None,
    spill_dir: Path | None = None,
) -> Iterator[Entry]:
    """Every member of a folder or archive, streamed; ``skip(path)`` true means "don't read its bytes".

    Archive members over SPILL_OVER bytes are written to a temp file in ``spill_dir`` (when given) and passed as
    ``src_file`` with ``spilled=True``; the caller deletes that file when the member is finished.
    """
    kind = kind_of(src, existing=True)
    abort = abort if abort is not None else []
    if kind == "folder":
        yield from _walk_folder(src, safety, list(exclude))
    elif kind == "zip":
        yield from _walk_zip(src, safety, skip, spill_dir)
    else:
        yield from _walk_tar(src, kind, safety, skip, abort, spill_dir)


def count_members(src: Path, exclude: Iterable[Path]) -> int | None:
    """A cheap total for the progress bar (None for streamed tar: unknown until the end)."""
    kind = kind_of(src, existing=True)
    if kind == "folder":
        excluded = {p.resolve() for p in exclude}
        n = 0
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames[:] = [d for d in dirnames if (Path(dirpath) / d).resolve() not in excluded]
            n += len(filenames)
        return n
    if kind == "zip":
        with zipfile.ZipFile(src) as zf:
            return sum(1 for i in zf.infolist() if not i.is_dir())
    return None
