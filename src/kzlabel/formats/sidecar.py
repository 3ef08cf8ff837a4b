"""Which files keep their C2PA manifest in a sidecar ``X.c2pa`` beside them: the types the C2PA library cannot embed
into. Mark writes one there, verify reads it, and a folder walk counts it as part of ``X``, not a file of its own."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import KzlabelError
from ..io import Input, sidecar_owner
from ..layers import c2pa as c2pa_layer
from ..layers import c2pa_text
from . import detect

__all__ = ["is_sidecar_companion", "needs_sidecar"]


def needs_sidecar(src: Path | bytes, name: str | None = None) -> bool:
    """Whether the C2PA manifest of ``src`` (a path, or an archive member's bytes named ``name``) lives in a sidecar
    beside it (a type the C2PA library cannot embed into): mark writes one there and verify reads it; False for
    anything unreadable or unsupported."""
    try:
        inp = Input(data=src, name=name) if isinstance(src, bytes) else Input(path=src, name=name or src.name)
        handler = detect(inp)
    except (KzlabelError, ImportError, OSError):
        return False
    return "c2pa" in handler.layers and handler.mime not in c2pa_layer.supported_mime_types() | c2pa_text.MIMES


def is_sidecar_companion(path: str | os.PathLike) -> bool:
    """``path`` is ``X.c2pa`` beside a file ``X`` whose manifest lives there: part of ``X``, read when ``X`` is
    verified, so a folder walk does not count it as a file of its own."""
    owner = sidecar_owner(path)
    return owner is not None and needs_sidecar(owner)
