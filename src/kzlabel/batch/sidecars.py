"""Sidecar C2PA manifests met in a source walk: ``X.c2pa`` is the companion of member ``X`` when X's type keeps its
manifest there (Ogg, Matroska, WebM: types the C2PA library cannot embed into), so the read-only passes verify
``X`` with it and do not count it as a member of its own; the same pairing for a folder and for an archive.

An archive is read in one pass and the companion may come before or after its owner. A sidecar met first is held
(it is small: at most ``SIDECAR_MAX`` bytes, and beyond ``HELD_IN_MEMORY`` in all they go to the spill folder) until
its owner comes; an owner met first waits for its sidecar until the end of the walk, its bytes parked in the spill
folder, except the latest one, kept in memory while the next entry is read (kzlabel writes ``X.c2pa`` right after
``X``). A sidecar whose owner went by without needing it, or never came, is a member of its own, as before.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath

from ..formats.sidecar import needs_sidecar
from ..io import SIDECAR_MAX, sidecar_path
from .model import Entry, MiB

HELD_IN_MEMORY = 64 * MiB  # sidecars waiting for their owner kept in memory up to this in all, then spilled


def _owner(entry: Entry) -> str | None:
    """The member ``entry`` would be the sidecar of (``X`` for a small file ``X.c2pa``), else None."""
    name = PurePosixPath(entry.path).name
    if entry.kind != "file" or not name.endswith(".c2pa") or name == ".c2pa" or entry.size > SIDECAR_MAX:
        return None
    return entry.path[: -len(".c2pa")]


def _needs(entry: Entry) -> bool:
    """Whether ``entry`` keeps its manifest in a sidecar (a folder's file only when there is one beside it)."""
    if entry.kind != "file":
        return False
    name = PurePosixPath(entry.path).name
    if entry.data is not None:
        return needs_sidecar(entry.data, name)
    if entry.src_file is None:
        return False
    if not entry.spilled and not sidecar_path(entry.src_file).is_file():
        return False  # a folder's file: its sidecar would lie beside it, and none does
    return needs_sidecar(Path(entry.src_file), name)


def _park(entry: Entry, spill: Path | None) -> Entry:
    """Move an entry's bytes from memory to a file in the spill folder (deleted when the member is finished)."""
    if entry.data is None or spill is None:
        return entry
    spill.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=spill, suffix=".member")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(entry.data)
    except BaseException:
        os.unlink(tmp)
        raise
    entry.data, entry.src_file, entry.spilled = None, tmp, True
    return entry


def _take(side: Entry) -> bytes:
    """A paired sidecar's bytes (its spilled copy, if any, is removed: it is no member of its own)."""
    if side.data is not None:
        return side.data
    assert side.src_file is not None
    data = Path(side.src_file).read_bytes()
    if side.spilled:
        Path(side.src_file).unlink(missing_ok=True)
    return data


def pair_sidecars(
    entries: Iterable[Entry], spill: Path | None, on_paired: Callable[[], None] = lambda: None
) -> Iterator[tuple[Entry, bytes | None]]:
    """Each entry with its sidecar manifest's bytes, or None; a paired sidecar is not yielded (``on_paired`` is
    called for it instead). Entries come in walk order, except owners whose sidecar had not come yet: at the end."""
    seen: set[str] = set()  # members gone by: a sidecar met after its owner that did not need it stands alone
    held: dict[str, Entry] = {}  # sidecars met before their owner, by owner path
    held_bytes = 0
    waiting: dict[str, Entry] = {}  # owners whose sidecar has not come yet, by path
    fresh: str | None = None  # the latest waiting owner, its bytes still in memory
    for entry in entries:
        owner = _owner(entry)
        if fresh is not None and owner != fresh:
            waiting[fresh] = _park(waiting[fresh], spill)
        fresh = None
        if owner is not None:
            if owner in waiting:
                on_paired()
                yield waiting.pop(owner), _take(entry)
            elif owner in seen:
                yield entry, None
            else:
                if entry.data is not None and held_bytes + len(entry.data) > HELD_IN_MEMORY:
                    entry = _park(entry, spill)
                held_bytes += len(entry.data or b"")
                held[owner] = entry
            continue
        side = held.pop(entry.path, None)
        held_bytes -= len(side.data or b"") if side is not None else 0
        if side is not None and _needs(entry):
            on_paired()
            yield entry, _take(side)
        elif side is None and _needs(entry):
            waiting[entry.path] = entry
            fresh = entry.path
            continue
        else:
            yield entry, None
            if side is not None:
                yield side, None
        seen.add(entry.path)
    for entry in waiting.values():
        yield entry, None  # no sidecar came: verified without one (its C2PA reads as absent)
    for side in held.values():
        yield side, None  # no owner came: a member of its own
