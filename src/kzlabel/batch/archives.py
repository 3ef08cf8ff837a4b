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
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import CorruptInput, KzlabelError, MissingDependency
from .model import CHUNK, Entry, Meta, MiB, Refused, Safety

SPILL_OVER = 64 * MiB  # archive members above this go to a temp file instead of memory / the worker pipe
# A skipped tar member is inflated and dropped in reads of this size: small enough to stay in the CPU cache. Skipping
# 1 GiB in a .tar.gz cost (CPU s, zeros / noise) 0.93 / 0.93 as tarfile's 10 KiB stream reads, 0.80 / 0.82 in 16 KiB
# reads, 0.41 / 0.73 in 256 KiB and 1.31 / 1.74 in 1 MiB (same machine, runs alternated; benchmarks/README.md).
SKIP_READ = 256 * 1024


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
    """Counts compressed bytes read; ``tell()`` through the BufferedReader above it is what was consumed."""

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

    def tell(self) -> int:
        return self.count


class _Bomb(Exception):
    """A tar stream expanded past ``max_total_ratio``: reading stops there (nothing later can be reached cheaply)."""


class _ExpansionGuard:
    """The decompressed tar stream that tarfile reads, as a forward-only file: its expansion is checked as the bytes
    come out, and a skip is a run of SKIP_READ reads (a real seek in an uncompressed tar).

    Every byte counts, the data of members that are read and of members tarfile skips over (refused for their size,
    or done in an earlier run) alike: a compressed stream can only be skipped by inflating it, so a member over the
    size limit is still inflated to reach the next one, and the ratio is what stops a bomb hiding there. Measuring
    real bytes rather than declared sizes also keeps a big incompressible first member from looking like a bomb
    (its declared size against the little read so far once did). tarfile is opened on it in its seeking mode
    (``r:``), whose forward seeks land here, rather than as a stream (``r|``), which skips in 10 KiB reads through
    two more layers of Python (benchmarks/bench_tar_skip.py).
    """

    def __init__(
        self, stream: IO[bytes], compressed: IO[bytes], safety: Safety, errors: tuple[type[Exception], ...]
    ) -> None:
        self.stream = stream
        self.compressed = compressed  # the BufferedReader over the file: tell() is the compressed bytes consumed
        self.safety = safety
        self.errors = errors  # what the decompressor raises on corrupt or truncated data
        self.out = 0

    def _read(self, size: int) -> bytes:
        try:
            return self.stream.read(size)
        except self.errors as exc:
            raise tarfile.ReadError(f"corrupt compressed data: {exc}") from None

    def read(self, size: int = -1) -> bytes:
        data = self._read(size)
        while size >= 0 and 0 < len(data) < size:  # a decompressor may return less than asked before its end
            more = self._read(size - len(data))
            if not more:
                break
            data += more
        self.out += len(data)
        if self.out > self.safety.bomb_min_bytes:
            read_in = max(self.compressed.tell(), 1)
            if self.out > self.safety.max_total_ratio * read_in:
                raise _Bomb(
                    f"decompression bomb: archive expands more than {self.safety.max_total_ratio:.0f}x "
                    f"({self.out} bytes from {read_in}); stopped"
                )
        return data

    def tell(self) -> int:
        return self.out

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            pos += self.out
        if whence not in (os.SEEK_SET, os.SEEK_CUR) or pos < self.out:
            raise io.UnsupportedOperation("a tar stream is read in order: it only seeks forward")
        if self.stream is self.compressed:  # an uncompressed tar: a real seek, nothing to inflate or read
            self.out = self.stream.seek(pos)
        while self.out < pos:
            if not self.read(min(SKIP_READ, pos - self.out)):
                break  # past the end: the next read says so
        return self.out


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


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, ValueError) as exc:  # its central directory
        raise CorruptInput(f"not a readable zip archive: {exc}", source=str(path)) from None


def _walk_zip(path: Path, safety: Safety, skip: Callable[[str], bool], spill: Path | None) -> Iterator[Entry]:
    with _open_zip(path) as zf:
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
            except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, OSError, EOFError) as exc:
                yield Entry(rel, "refused", meta, size, reason=f"unreadable member: {exc}")
                continue
            yield Entry(rel, "file", meta, size, data=data, src_file=spilled, spilled=spilled is not None)


def _open_tar_stream(path: Path, kind: str, safety: Safety) -> tuple[tarfile.TarFile, _ExpansionGuard, list[Any]]:
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller with the decompressor and tarfile
    closers: list[Any] = [raw]
    # what the decompressor reads (its tell() is the compressed bytes consumed) and what it raises on bad data
    compressed: IO[bytes] = io.BufferedReader(_CountingReader(raw), CHUNK)
    errors: tuple[type[Exception], ...] = (OSError, EOFError)
    if kind == "tgz":
        stream: IO[bytes] = gzip.GzipFile(fileobj=compressed, mode="rb")  # type: ignore[assignment]
        closers.insert(0, stream)
        errors = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError
    elif kind == "tzst":
        try:
            import zstandard  # optional (the batch extra), so only when a .tar.zst is read
        except ImportError:
            raw.close()
            raise MissingDependency("reading .tar.zst needs zstandard: pip install kzlabel[batch]") from None
        stream = zstandard.ZstdDecompressor().stream_reader(compressed)
        closers.insert(0, stream)
        errors = (OSError, EOFError, zstandard.ZstdError)
    else:
        stream = compressed = raw  # plain tar: the file itself, so a skip is a seek
    guard = _ExpansionGuard(stream, compressed, safety, errors)
    try:
        # tarfile reads members in order, so it only seeks forward; typeshed wants a whole file object
        tf = tarfile.open(fileobj=guard, mode="r:")  # type: ignore[call-overload]  # noqa: SIM115 - closed by _walk_tar
    except (tarfile.TarError, OSError, EOFError, _Bomb) as exc:
        for c in closers:
            with contextlib.suppress(Exception):
                c.close()
        raise CorruptInput(f"not a readable tar archive: {exc}", source=str(path)) from None
    return tf, guard, closers


def _walk_tar(
    path: Path, kind: str, safety: Safety, skip: Callable[[str], bool], abort: list[str], spill: Path | None
) -> Iterator[Entry]:
    """Members in stream order. A member over the size limit (or done in an earlier run) is never read into memory,
    a temp file or a hash: tarfile skips its data, which for a compressed stream means inflating it, under the
    expansion guard. A bomb (in any member's data, skipped or read) stops the run there."""
    tf, guard, closers = _open_tar_stream(path, kind, safety)
    try:
        while True:
            try:
                ti = tf.next()
            except _Bomb as exc:
                abort.append(str(exc))
                return
            except (tarfile.TarError, OSError, EOFError) as exc:
                abort.append(f"archive unreadable after {guard.out} bytes: {exc}")
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
            if skip(rel):
                yield Entry(rel, "file", meta, ti.size)
                continue
            fh = tf.extractfile(ti)
            try:
                data, spilled = _read_member(fh, safety.max_member_bytes, ti.size, spill) if fh else (b"", None)
            except _Bomb as exc:
                yield Entry(
                    rel, "refused", meta, ti.size, reason=f"archive expands more than {safety.max_total_ratio:.0f}x"
                )
                abort.append(str(exc))
                return
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
        with _open_zip(src) as zf:
            return sum(1 for i in zf.infolist() if not i.is_dir())
    return None
