"""The format registry: handlers register themselves; content decides which one handles a file.

Detection is a scoring contest over the first bytes (after mutagen): every handler's ``score(header, name)``
returns 0 for "not mine" and more the surer it is; magic bytes weigh far more than a file name, and a name alone
never selects a handler. Ties go to the handler registered first, so detection is deterministic. The contract a
handler implements is in ``formats.base``.

Content whose magic only one family of handlers can own (JPEG, PNG, GIF, TIFF: images; PDF) is scored among that
family alone, so a cold ``kzlabel verify photo.jpg`` does not import the text, audio, video and PDF handlers;
tests/test_conformance.py checks that this gives the full contest's answer on every sample.
"""

from __future__ import annotations

import importlib

from ..errors import CorruptInput, UnsupportedFormat
from ..io import Input
from .base import Handler

__all__ = ["candidates", "describe_content", "detect", "family", "get", "handlers", "register"]


_REGISTRY: list[Handler] = []
_LOADED: set[str] = set()
# Format modules register themselves on import; a module whose optional dependency is missing is skipped here and
# reported by name when content of that kind shows up.
_MODULES = ("text", "image", "audio", "video", "pdf")
# Magic numbers of common types: ``what`` names the content in UnsupportedFormat messages, and a ``family`` marks magic
# that only that family's handlers can own, so such content is scored among that family alone (see candidates()).
_MAGIC: tuple[tuple[bytes, int, str, str | None], ...] = (
    (b"PK\x03\x04", 0, "ZIP archive (or an Office/EPUB document)", None),
    (b"\x1f\x8b", 0, "gzip data", None),
    (b"7z\xbc\xaf\x27\x1c", 0, "7-Zip archive", None),
    (b"Rar!", 0, "RAR archive", None),
    (b"\x7fELF", 0, "ELF executable", None),
    (b"MZ", 0, "Windows executable", None),
    (b"%PDF-", 0, "PDF document", "pdf"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG image", "image"),
    (b"\xff\xd8\xff", 0, "JPEG image", "image"),
    (b"GIF87a", 0, "GIF image", "image"),
    (b"GIF89a", 0, "GIF image", "image"),
    (b"GIF8", 0, "GIF image", None),
    (b"II*\x00", 0, "TIFF image", "image"),
    (b"MM\x00*", 0, "TIFF image", "image"),
    (b"BM", 0, "BMP image", None),
    (b"ID3", 0, "MP3 audio", None),
    (b"fLaC", 0, "FLAC audio", None),
    (b"OggS", 0, "Ogg media", None),
    (b"\x1aE\xdf\xa3", 0, "Matroska/WebM video", None),
    (b"ftyp", 4, "ISO media (MP4/MOV/M4A/HEIF)", None),
    (b"SQLite format 3\x00", 0, "SQLite database", None),
)


def register(handler: Handler) -> Handler:
    if any(h.id == handler.id for h in _REGISTRY):
        raise ValueError(f"format {handler.id!r} registered twice")
    _REGISTRY.append(handler)
    return handler


def family(handler: Handler) -> str:
    """The family module a handler comes from (``kzlabel.formats.image.jpeg`` -> ``image``): one of ``text``,
    ``image``, ``audio``, ``video``, ``pdf``."""
    return type(handler).__module__.removeprefix(f"{__name__}.").split(".")[0]


_ORDERED: dict[tuple[tuple[str, ...], int], list[Handler]] = {}


def _load(modules: tuple[str, ...] = _MODULES) -> list[Handler]:
    """Import the given family modules (once each); their handlers in the order of :data:`_MODULES`, then of
    registration, whatever order the families were loaded in (ties in detection go to the first)."""
    for module in modules:
        if module in _LOADED:
            continue
        _LOADED.add(module)
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise
    key = (modules, len(_REGISTRY))  # the registry only grows: a new handler changes the key
    if key not in _ORDERED:  # sorted once per family set (detection runs this for every file and every string)
        rank = {m: i for i, m in enumerate(_MODULES)}
        mine = [h for h in _REGISTRY if family(h) in modules]
        _ORDERED[key] = sorted(mine, key=lambda h: rank.get(family(h), len(rank)))
    return list(_ORDERED[key])


def handlers() -> list[Handler]:
    return _load()


def candidates(header: bytes) -> list[Handler]:
    """The handlers that may own content starting with ``header``: one family's for decisive magic, else all."""
    owner = next((fam for magic, at, _what, fam in _MAGIC if fam and header[at : at + len(magic)] == magic), None)
    return _load((owner,)) if owner else handlers()


def get(format_id: str) -> Handler:
    for h in handlers():
        if h.id == format_id:
            return h
    raise UnsupportedFormat(f"no handler for format {format_id!r}")


def describe_content(header: bytes) -> str:
    """A human name for unknown content, for error messages."""
    if not header:
        return "empty file"
    for magic, offset, what, _family in _MAGIC:
        if header[offset : offset + len(magic)] == magic:
            return what
    if header[:4] == b"RIFF":
        return f"RIFF {header[8:12].decode('latin-1')!r} data"
    return "binary data of unknown type"


def detect(inp: Input) -> Handler:
    """The handler whose score for this content is highest, or UnsupportedFormat naming what the content is."""
    header = inp.header
    if not header:  # nothing to label or to find a label in, whatever the name says (a 0-byte .json is no text)
        raise CorruptInput(f"empty file{f' (its name says {inp.suffix})' if inp.suffix else ''}", source=inp.source)
    best: Handler | None = None
    best_score = 0
    for h in candidates(header):
        s = h.score(header, inp.name)
        if s > best_score:
            best, best_score = h, s
    if best is None:
        raise UnsupportedFormat(f"unsupported format: {describe_content(header)}", source=inp.source)
    return best
