"""PyAV plumbing shared by the audio and video handlers: the import, its error types, sources and temp outputs."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import MissingDependency
from . import Input

try:
    import av
except ImportError:  # pragma: no cover - optional
    av = None

__all__ = ["AV_ERRORS", "av", "need_av", "source", "temp_output"]

# what PyAV raises on damaged or unexpected media (FFmpeg errors plus the Python errors its wrappers let through)
AV_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, EOFError, IndexError, KeyError, TypeError)
if av is not None:
    AV_ERRORS = (av.error.FFmpegError, *AV_ERRORS)


def need_av(what: str) -> Any:
    if av is None:
        raise MissingDependency(f"{what} needs PyAV: pip install av")
    return av


def source(inp: Input) -> Any:
    """A path when there is one (streamed from disk), else the bytes."""
    if inp.path is not None and inp._data is None:
        return str(inp.path)
    return io.BytesIO(inp.data)


@contextmanager
def temp_output(suffix: str) -> Iterator[str]:
    """A temp file path for a muxer that needs a seekable file; removed afterwards whatever happens."""
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix=".kzlabel-")
    os.close(fd)
    try:
        yield tmp
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
