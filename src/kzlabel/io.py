"""Input and output at the bottom floor: what every handler reads (Input), the limits that guard it, and the atomic
writes, spools and sidecars every output goes through.

A path is sniffed (``Input.header``) without reading the whole file, so a 2 GB video is never held in memory just to
pick its handler; outputs reach their destination only by rename, so a reader never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .errors import KzlabelError, LimitExceeded

__all__ = [
    "HEADER_SIZE",
    "ID3_SNIFF_MAX",
    "SIDECAR_MAX",
    "SPOOL_IN_RAM_MAX",
    "Input",
    "Limits",
    "Source",
    "Spool",
    "check_destination",
    "id3_end",
    "read_input",
    "replace_atomic",
    "sidecar_owner",
    "sidecar_path",
    "sniff_length",
    "sweep_stale_temps",
    "temp_beside",
    "temp_dir",
    "write_atomic",
]

Source = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]
HEADER_SIZE = 4096
SIDECAR_MAX = 16 << 20  # a sidecar manifest is a few KB; refuse to read anything absurd
ID3_SNIFF_MAX = 64 << 20  # a leading ID3v2 tag is looked past for sniffing up to this size


def id3_end(head: bytes) -> int:
    """Where a leading ID3v2 tag ends (0: none). Its size is a syncsafe integer, 7 bits a byte, after a 10-byte
    header; a footer adds 10 more."""
    if head[:3] != b"ID3" or len(head) < 10:
        return 0
    size = 0
    for b in head[6:10]:
        size = (size << 7) | (b & 0x7F)
    return 10 + size + (10 if head[5] & 0x10 else 0)


def sniff_length(head: bytes) -> int:
    """How many leading bytes detection needs: ``HEADER_SIZE``, or that much past a leading ID3v2 tag. Any audio
    container (MP3, FLAC, AAC) may start with one, and the C2PA library embeds its manifest there, so a labelled
    FLAC starts with KBs of ID3 before the ``fLaC`` that says what it is."""
    return min(id3_end(head), ID3_SNIFF_MAX) + HEADER_SIZE


@dataclass(frozen=True)
class Limits:
    """Guards against hostile or accidental giant inputs; all configurable."""

    max_pixels: int = 100_000_000
    max_bytes: int = 2 * 1024**3
    max_text_bytes: int = 64 * 1024**2
    max_duration_s: float = 6 * 3600.0
    # where the C2PA library embeds the manifest it holds the whole asset in memory to sign it (about 3× its size at
    # the peak) or to read its manifest: larger files are labelled without the manifest (layer skipped, with the
    # reason) and verify reports it unchecked, so memory stays bounded; raise it to sign bigger files on a machine with
    # the memory for it. WAV, MP3, FLAC and PDF are signed and read by kzlabel in a stream (layers/c2pa_embed): no
    # limit, also when the input's manifest is kept as the new one's ingredient (from its slot, the store alone); only
    # a manifest there that kzlabel's slot walker does not find is left to the library, within this limit
    max_c2pa_bytes: int = 512 * 1024**2


class Input:
    """The one shape every handler receives, whether the caller gave a path, bytes or a file object.

    For a path, the bytes are read only when a handler asks for ``data``; streaming handlers (video, long audio)
    open ``path`` themselves, so a 2 GB file is never held in memory just to be sniffed.
    """

    def __init__(
        self, data: bytes | None = None, name: str | None = None, path: Path | None = None, password: str | None = None
    ) -> None:
        if data is None and path is None:
            raise ValueError("Input needs data or a path")
        self._data = data
        self.name = name
        self.path = path
        self.password = password
        self._header: bytes | None = None

    def __repr__(self) -> str:
        return f"Input(source={self.source!r}, size={self.size})"

    @property
    def data(self) -> bytes:
        if self._data is None:
            assert self.path is not None
            self._data = self.path.read_bytes()
        return self._data

    @property
    def size(self) -> int:
        if self._data is not None or self.path is None:
            return len(self.data)
        return self.path.stat().st_size

    @property
    def source(self) -> str:
        return str(self.path or self.name or "<bytes>")

    @property
    def header(self) -> bytes:
        """The leading bytes detection looks at (:func:`sniff_length`)."""
        if self._data is not None:
            return self._data[: sniff_length(self._data[:10])]
        if self._header is None:
            assert self.path is not None
            with open(self.path, "rb") as fh:
                head = fh.read(HEADER_SIZE)
                more = sniff_length(head) - len(head)
                self._header = head + fh.read(more) if more > 0 and len(head) == HEADER_SIZE else head
        return self._header

    def open(self) -> IO[bytes]:
        """A binary file object over the content: the file itself when it has not been read, else the bytes."""
        if self._data is None:
            assert self.path is not None
            return open(self.path, "rb")
        return io.BytesIO(self._data)

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix.lower() if self.name else ""


def read_input(src: Source, limits: Limits, name: str | None = None, password: str | None = None) -> Input:
    """Path, bytes or binary file object → Input, refusing anything over the byte limit before reading it."""
    data: bytes | None
    path: Path | None = None
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    elif isinstance(src, (str, os.PathLike)):
        path = Path(src)
        try:
            if path.is_dir():
                raise KzlabelError("is a directory (use `kzlabel batch` for folders)", source=str(path))
            size = path.stat().st_size
            with open(path, "rb"):  # readable? (the bytes themselves are read when a handler needs them)
                pass
        except FileNotFoundError:
            raise KzlabelError("no such file", source=str(path)) from None
        except PermissionError:
            raise KzlabelError("permission denied", source=str(path)) from None
        if size > limits.max_bytes:
            raise LimitExceeded(f"file is {size} bytes, over the {limits.max_bytes}-byte limit", source=str(path))
        data = None
        name = name or path.name
    elif hasattr(src, "read"):
        data = src.read(limits.max_bytes + 1)
        if not isinstance(data, bytes):
            raise KzlabelError("file object must be opened in binary mode")
        name = name or (Path(str(getattr(src, "name", ""))).name or None)
    else:
        raise TypeError(f"expected a path, bytes or a binary file object, got {type(src).__name__}")
    if data is not None and len(data) > limits.max_bytes:
        raise LimitExceeded(f"input is over the {limits.max_bytes}-byte limit", source=name)
    return Input(data=data, name=name, path=path, password=password)


def _unwritable(exc: OSError, dst: Path) -> KzlabelError | None:
    """A destination problem the caller can fix (missing or unwritable folder, a folder where a file should go) as
    a kzlabel error naming the path; None for anything else (a bug, a full disk: those propagate as they are)."""
    folder = dst.parent
    if isinstance(exc, FileNotFoundError):
        return KzlabelError(f"output folder {folder} does not exist", source=str(dst))
    if isinstance(exc, NotADirectoryError):
        return KzlabelError(f"{folder} is not a folder", source=str(dst))
    if isinstance(exc, IsADirectoryError):
        return KzlabelError("is a folder; give a file name to write", source=str(dst))
    if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
        return KzlabelError(f"cannot write into {folder}: {exc.strerror or 'permission denied'}", source=str(dst))
    return None


def check_destination(dst: str | os.PathLike) -> None:
    """Refuse, before any work is done, a destination that cannot be written: its folder missing or read-only, or
    the path itself a folder. (The atomic write would fail the same way, only later.)"""
    path = Path(dst)
    folder = path.parent
    if path.is_dir():
        raise KzlabelError("is a folder; give a file name to write", source=str(path))
    if not folder.exists():
        raise KzlabelError(f"output folder {folder} does not exist", source=str(path))
    if not folder.is_dir():
        raise KzlabelError(f"{folder} is not a folder", source=str(path))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise KzlabelError(f"cannot write into {folder}: permission denied", source=str(path))


# Every temp file or folder kzlabel makes is named ``.NAME.kzPID.RANDOM.kztmp``: PID is the process that made it, so
# a later run can tell the leftovers of a killed one (its process is gone) from a live run's files, in any folder.
_TEMP_SUFFIX = ".kztmp"
_TEMP_NAME = re.compile(r"^\..*\.kz(\d+)\.[A-Za-z0-9_]+\.kztmp$")
_swept: set[str] = set()


def _temp_prefix(name: str) -> str:
    return f".{name}.kz{os.getpid()}."


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process (alive), or no such pid at all
        return True
    return True


def sweep_stale_temps(folder: Path) -> list[Path]:
    """Remove the temp files and folders that killed kzlabel runs left in ``folder`` (a ``kill -9`` cannot clean up
    after itself): only names of kzlabel's own pattern whose process no longer runs. Once per folder per process; the
    paths removed are returned."""
    key = os.path.realpath(folder)
    if key in _swept:
        return []
    _swept.add(key)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        found = _TEMP_NAME.match(entry.name)
        if found is None or _running(int(found.group(1))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def temp_beside(path: Path) -> Path:
    """A new empty temp file ``.NAME.kzPID.*.kztmp`` in ``path``'s folder (same file system, so a rename onto ``path``
    is atomic); stale ones of killed runs in that folder are swept first. A folder that is missing or unwritable is a
    :class:`KzlabelError` naming ``path``."""
    folder = path.parent or Path(".")
    sweep_stale_temps(folder)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=_temp_prefix(path.name), suffix=_TEMP_SUFFIX)
    except OSError as exc:
        err = _unwritable(exc, path)
        if err is None:
            raise
        raise err from None
    os.close(fd)
    return Path(tmp)


def temp_dir(name: str, folder: Path | None = None) -> Path:
    """A new private temp folder ``.NAME.kzPID.*.kztmp`` in ``folder`` (default: the system temp folder), after
    sweeping that folder's stale ones; the caller removes it."""
    where = folder if folder is not None else Path(tempfile.gettempdir())
    sweep_stale_temps(where)
    return Path(tempfile.mkdtemp(prefix=_temp_prefix(name), suffix=_TEMP_SUFFIX, dir=where))


def replace_atomic(tmp: Path, dst: Path, mode_from: Path | None) -> None:
    """fsync ``tmp``, give it ``mode_from``'s permissions (else the umask's) and rename it onto ``dst``."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    if mode_from is not None and mode_from.exists():
        os.chmod(tmp, mode_from.stat().st_mode & 0o7777)
    else:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    try:
        os.replace(tmp, dst)
    except OSError as exc:  # e.g. dst became a folder since the temp file was made beside it
        err = _unwritable(exc, dst)
        if err is None:
            raise
        raise err from None


def write_atomic(dst: str | os.PathLike, data: bytes, *, mode_from: Path | None = None) -> None:
    """Write via a temp file in the same folder and rename, so readers never see a half-written file."""
    path = Path(dst)
    tmp = temp_beside(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        replace_atomic(tmp, path, mode_from)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where the sidecar C2PA manifest of ``path`` lives: ``NAME.EXT.c2pa`` beside it."""
    return Path(os.fspath(path) + ".c2pa")


def sidecar_owner(path: str | os.PathLike) -> Path | None:
    """The file whose sidecar manifest ``path`` is (``X`` for an ``X.c2pa`` beside an existing file ``X``), else None.

    Folder walks (batch verify, the training check) skip such a file: it is read together with ``X``, not as a
    file of its own."""
    p = Path(path)
    if not p.name.endswith(".c2pa") or p.name == ".c2pa":
        return None
    owner = p.with_name(p.name[: -len(".c2pa")])
    return owner if owner.is_file() else None


# an output returned as bytes (no destination) of at most this many input bytes is spooled in RAM (/dev/shm, where
# there is one with _RAM_FREE_MIN bytes free: a container's is often 64 MB, shared by concurrent requests): a 2 KB chat
# answer passed through two or three temp files on disk, which cost more than the signing (0.48 ms per file on disk
# against 0.05 ms in /dev/shm, and tens of ms when another job loads the disk)
SPOOL_IN_RAM_MAX = 1 << 20
_RAM_FOLDER = Path("/dev/shm")
_RAM_FREE_MIN = 32 << 20


def _ram_folder_usable() -> bool:
    try:
        stat = os.statvfs(_RAM_FOLDER)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize >= _RAM_FREE_MIN and os.access(_RAM_FOLDER, os.W_OK | os.X_OK)


class Spool:
    """The temp files an output passes through, beside the destination (or, when there is no destination path, in
    the temp folder; in RAM for a ``small`` one); every one still here at ``close()`` is removed."""

    def __init__(self, dst: str | os.PathLike | IO[bytes] | None, *, small: bool = False) -> None:
        if isinstance(dst, (str, os.PathLike)):
            self.beside = Path(dst)
        else:
            ram = small and dst is None and _ram_folder_usable()
            self.beside = (_RAM_FOLDER if ram else Path(tempfile.gettempdir())) / "kzlabel"
        self.paths: list[Path] = []

    def new(self) -> Path:
        path = temp_beside(self.beside)
        self.paths.append(path)
        return path

    def drop(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self.paths.remove(path)

    def keep(self, path: Path) -> None:
        """``path`` has been moved away (renamed onto the destination): no longer ours to remove."""
        self.paths.remove(path)

    def close(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)
        self.paths.clear()
