"""One error hierarchy for everything kzlabel raises.

    KzlabelError
    ├── FormatError
    │   ├── UnsupportedFormat     the content is a type kzlabel has no handler for
    │   └── CorruptInput          the content claims a type but cannot be parsed
    ├── LimitExceeded             over a configured size / pixel / duration limit
    ├── LayerError
    │   ├── SigningError          a signature or manifest could not be produced
    │   └── CapacityError         the content is too small to carry a layer
    ├── KeyFileError              a key, certificate or trust file is unusable
    ├── RegistryError             the label registry cannot be opened, read or written
    └── MissingDependency         an optional extra is not installed

Every error carries ``source`` (the file or "<bytes>") and ``format`` (the detected format id) when known, so a
batch report can say which file failed and why without parsing messages.
"""

from __future__ import annotations

__all__ = [
    "CapacityError",
    "CorruptInput",
    "FormatError",
    "KeyFileError",
    "KzlabelError",
    "LayerError",
    "LimitExceeded",
    "MissingDependency",
    "RegistryError",
    "SigningError",
    "UnsupportedFormat",
    "error_kind",
]


class KzlabelError(Exception):
    """Root of all kzlabel errors."""

    def __init__(self, message: str, *, source: str | None = None, format: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.format = format

    def __str__(self) -> str:
        return f"{self.source}: {self.message}" if self.source else self.message


class FormatError(KzlabelError):
    """The input's format is the problem."""


class UnsupportedFormat(FormatError):
    """No handler exists for the detected content type (the message names it)."""


class CorruptInput(FormatError):
    """The content looks like a known format but is truncated or malformed."""


class LimitExceeded(KzlabelError):
    """The input is larger than a configured limit (pixels, bytes, duration, archive members)."""


class LayerError(KzlabelError):
    """A label layer could not be applied."""


class SigningError(LayerError):
    """A signature or C2PA manifest could not be produced."""


class CapacityError(LayerError):
    """The content is too small to carry the layer (e.g. a watermark in a 16×16 image)."""


class KeyFileError(KzlabelError):
    """A key, certificate chain or trust bundle is missing, malformed or unfit for signing."""


class RegistryError(KzlabelError):
    """The label registry cannot be opened, read or written (a bad URL, an unreachable server, a read-only
    resolver asked to record)."""


class MissingDependency(KzlabelError):
    """An optional dependency is not installed; the message names the pip extra."""


def error_kind(exc: KzlabelError) -> str:
    """The ``error`` field of a JSON error body (``kzlabel serve`` and ``kzlabel ... --json`` alike): a snake_case
    name for the common kinds, else the exception's class name."""
    for cls, kind in (
        (UnsupportedFormat, "unsupported_format"),
        (LimitExceeded, "limit_exceeded"),
        (CorruptInput, "corrupt_input"),
        (FormatError, "format_error"),
    ):
        if isinstance(exc, cls):
            return kind
    return type(exc).__name__
