"""The format registry: handlers register themselves; content decides which one handles a file.

Detection is a scoring contest over the first bytes (after mutagen): every handler's ``score(header, name)``
returns 0 for "not mine" and more the surer it is; magic bytes weigh far more than a file name, and a name alone
never selects a handler. Ties go to the handler registered first, so detection is deterministic.
"""

from __future__ import annotations

import importlib
import io
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from ..errors import CorruptInput, UnsupportedFormat
from ..label import Label, TrainingSignal

if TYPE_CHECKING:  # pragma: no cover
    from ..optout import TrainingPolicy

__all__ = [
    "ALL_LAYERS",
    "Findings",
    "Handler",
    "Input",
    "LabelMatch",
    "Limits",
    "MarkOptions",
    "describe_content",
    "detect",
    "handlers",
    "register",
]

ALL_LAYERS = frozenset({"c2pa", "metadata", "watermark", "visible"})
HEADER_SIZE = 4096


@dataclass(frozen=True)
class Limits:
    """Guards against hostile or accidental giant inputs; all configurable."""

    max_pixels: int = 100_000_000
    max_bytes: int = 2 * 1024**3
    max_text_bytes: int = 64 * 1024**2
    max_duration_s: float = 6 * 3600.0
    # the C2PA library holds the whole asset in memory to sign it (about 3× a WAV's size at the peak) or to read its
    # manifest: larger files are labelled without the manifest (layer skipped, with the reason) and verify reports it
    # unchecked, so memory stays bounded; raise it to sign bigger files on a machine with the memory for it
    max_c2pa_bytes: int = 512 * 1024**2


@dataclass(frozen=True)
class MarkOptions:
    """How the layers are applied; handlers read only what concerns them."""

    layers: frozenset[str] = ALL_LAYERS
    # text: "start" | "end"; audio: "start" | "end" | "both" (the tone); images/PDF: a corner such as "bottom-left";
    # video: a corner and/or a tone position ("top-right,start"): a tone position marks the soundtrack too
    position: str | None = None
    style: str = "plate"  # "plate" | "outline" | "icon"
    watermark_key: bytes | None = None
    thumbnail: bool = False
    pages: str = "all"  # paged documents: "all" or "first"
    video_warning: str = "both"  # video: "opening" (full size, first seconds), "persistent" (small, throughout), "both"
    audio_notice: str = "tone"  # audio files: "tone" (the · − · · rhythm), "speech" (the notice read aloud), "both"


def temp_beside(path: Path) -> Path:
    """A new empty temp file ``.NAME.*.kztmp`` in ``path``'s folder (same file system, so a rename onto ``path`` is
    atomic; ``kzlabel batch`` sweeps that pattern after a killed run)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent or Path("."), prefix=f".{path.name}.", suffix=".kztmp")
    os.close(fd)
    return Path(tmp)


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
        if self._data is not None:
            return self._data[:HEADER_SIZE]
        if self._header is None:
            assert self.path is not None
            with open(self.path, "rb") as fh:
                self._header = fh.read(HEADER_SIZE)
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


@dataclass
class Findings:
    """What a handler read from a file for verification; the pipeline turns it into Evidence."""

    tokens: list[tuple[str, str]] = field(default_factory=list)  # (carrier, compact JWS)
    fields: dict[str, Any] = field(default_factory=dict)  # standard fields seen, e.g. {"xmp:DigitalSourceType": uri}
    watermark: Any = None  # kzlabel.watermark.WatermarkResult, or None where the format has no watermark
    warning_found: bool | None = None  # a perceptible warning seen without a label to compare with
    state: Any = None  # handler-private data for check_label
    # carriers inside the file checked on their own, reported as "<layer>:<name>" evidence lines: a video's
    # soundtrack is {"audio": Findings(watermark=…, warning_found=…)}
    parts: dict[str, Findings] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelMatch:
    """How a verified label relates to the content it sits in.

    content: True when the label's binding matches, False when the content changed after signing, None when the
    label binds nothing here (e.g. images rely on the C2PA hard binding). warning: whether the perceptible warning
    recorded in the label is still present (None when the format cannot tell).
    """

    content: bool | None
    warning: bool | None
    detail: str = ""


class Handler:
    """Base class of a format handler; subclasses override what their format supports."""

    id: ClassVar[str] = ""
    name: ClassVar[str] = ""
    mime: ClassVar[str] = "application/octet-stream"
    extensions: ClassVar[tuple[str, ...]] = ()
    layers: ClassVar[frozenset[str]] = frozenset()
    is_text: ClassVar[bool] = False
    # True: the handler writes its output to a file (``encode_to``, ``write_metadata_to``) and reads its input
    # through ``Input.path``/``Input.open()``, so the pipeline never holds the input or the output in memory (long
    # audio); ``c2pa_skip_reason`` is then not asked (it takes the whole input as bytes)
    streams: ClassVar[bool] = False

    def score(self, header: bytes, name: str | None) -> int:
        """0: not this format; higher: surer. Magic bytes should score ≥ 100, content heuristics less."""
        raise NotImplementedError

    # --- mark ---------------------------------------------------------------------------------------------------
    def load(self, inp: Input, limits: Limits) -> Any:
        raise NotImplementedError

    def draw_warning(self, doc: Any, label: Label, opts: MarkOptions) -> None:
        raise NotImplementedError(f"{self.name} has no visible layer")

    def embed_watermark(self, doc: Any, payload: bytes, key: bytes | None) -> None:
        raise NotImplementedError(f"{self.name} has no watermark layer")

    def encode(self, doc: Any, opts: MarkOptions) -> bytes:
        raise NotImplementedError

    def encode_to(self, doc: Any, opts: MarkOptions, path: Path) -> None:
        """A streaming handler's ``encode``: write the encoded content to ``path`` (an existing empty file)."""
        raise NotImplementedError

    def bind(self, doc: Any, encoded: bytes | Path) -> Mapping[str, Any]:
        """Label fields (``binding``, ``warning``) computed from the encoded content (bytes, or the file a streaming
        handler wrote) before signing."""
        return {}

    def write_metadata(self, data: bytes, label: Label, token: str) -> bytes:
        raise NotImplementedError(f"{self.name} has no metadata layer")

    def write_metadata_to(self, path: Path, label: Label, token: str) -> None:
        """A streaming handler's ``write_metadata``: edit the file at ``path`` (in place, or replaced whole)."""
        raise NotImplementedError(f"{self.name} has no metadata layer")

    # --- verify -------------------------------------------------------------------------------------------------
    def inspect(self, inp: Input, limits: Limits, key: bytes | None) -> Findings:
        raise NotImplementedError

    def check_label(self, findings: Findings, label: Label) -> LabelMatch:
        return LabelMatch(content=None, warning=findings.warning_found)

    def c2pa_skip_reason(self, data: bytes) -> str | None:
        """Why an embedded manifest must not be written into this particular file (None: go ahead)."""
        return None

    # --- training permissions (Art. 23(5)) ------------------------------------------------------------------------
    def read_training(self, inp: Input, limits: Limits) -> list[TrainingSignal]:
        """Training statements in this format's own carriers (XMP, meta tags, tags); C2PA and labels are generic."""
        return []

    def write_training(self, data: bytes, policy: TrainingPolicy, limits: Limits) -> bytes:
        raise NotImplementedError(f"{self.name} has no carrier for training permissions")


_REGISTRY: list[Handler] = []
_LOADED = False
# Format modules register themselves on import; a module whose optional dependency is missing is skipped here and
# reported by name when content of that kind shows up.
_MODULES = ("text", "image", "audio", "video", "pdf")


def register(handler: Handler) -> Handler:
    if any(h.id == handler.id for h in _REGISTRY):
        raise ValueError(f"format {handler.id!r} registered twice")
    _REGISTRY.append(handler)
    return handler


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for module in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise


def handlers() -> list[Handler]:
    _load_all()
    return list(_REGISTRY)


def get(format_id: str) -> Handler:
    for h in handlers():
        if h.id == format_id:
            return h
    raise UnsupportedFormat(f"no handler for format {format_id!r}")


# Magic numbers of common types kzlabel may not handle, so UnsupportedFormat can name what it saw.
_KNOWN_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"PK\x03\x04", 0, "ZIP archive (or an Office/EPUB document)"),
    (b"\x1f\x8b", 0, "gzip data"),
    (b"7z\xbc\xaf\x27\x1c", 0, "7-Zip archive"),
    (b"Rar!", 0, "RAR archive"),
    (b"\x7fELF", 0, "ELF executable"),
    (b"MZ", 0, "Windows executable"),
    (b"%PDF-", 0, "PDF document"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG image"),
    (b"\xff\xd8\xff", 0, "JPEG image"),
    (b"GIF8", 0, "GIF image"),
    (b"II*\x00", 0, "TIFF image"),
    (b"MM\x00*", 0, "TIFF image"),
    (b"BM", 0, "BMP image"),
    (b"ID3", 0, "MP3 audio"),
    (b"fLaC", 0, "FLAC audio"),
    (b"OggS", 0, "Ogg media"),
    (b"\x1aE\xdf\xa3", 0, "Matroska/WebM video"),
    (b"ftyp", 4, "ISO media (MP4/MOV/M4A/HEIF)"),
    (b"SQLite format 3\x00", 0, "SQLite database"),
)


def describe_content(header: bytes) -> str:
    """A human name for unknown content, for error messages."""
    if not header:
        return "empty file"
    for magic, offset, what in _KNOWN_MAGIC:
        if header[offset : offset + len(magic)] == magic:
            return what
    if header[:4] == b"RIFF":
        return f"RIFF {header[8:12].decode('latin-1')!r} data"
    return "binary data of unknown type"


def detect(inp: Input) -> Handler:
    """The handler whose score for this content is highest, or UnsupportedFormat naming what the content is."""
    header = inp.header
    best: Handler | None = None
    best_score = 0
    for h in handlers():
        s = h.score(header, inp.name)
        if s > best_score:
            best, best_score = h, s
    if best is None:
        raise UnsupportedFormat(f"unsupported format: {describe_content(header)}", source=inp.source)
    if not inp.header and inp.suffix and best.is_text:
        # Empty content is valid text, but an empty "photo.png" is a broken PNG, not an empty text file.
        if not any(inp.suffix in h.extensions for h in handlers() if h.is_text):
            raise CorruptInput(f"empty file (its name says {inp.suffix})", source=inp.source)
    return best
