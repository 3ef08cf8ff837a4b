"""The registry contract: content id → signed label (and the C2PA manifest store signed with it).

The watermark carries only the 64-bit content id; a registry maps it back to the signed label (and so to the owner
responsible under Art. 21(3)) and to the manifest store, so that a file whose metadata was stripped can still be
traced, and served to others through the C2PA Soft Binding Resolution API (``kzlabel serve``).

``Registry.open(location)`` opens the backend ``location`` names: a file path is SQLite (the default, ``:memory:``
without one), ``postgresql://...`` a PostgreSQL database shared by several service instances, ``http(s)://...`` a
remote Soft Binding Resolution API (read-only). Each backend registers its URL schemes by subclassing
(``class X(Registry, schemes=(...))``); the package imports them all.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..errors import RegistryError

__all__ = [
    "SCHEMA_VERSION",
    "SOFT_BINDING_ALG",
    "Entry",
    "Registry",
    "binding_value",
    "content_id_from_binding",
    "redact",
]

# The soft-binding algorithm: kzlabel's watermark (image and audio), whose payload is the label's 64-bit content id.
# The one id written into every manifest's ``c2pa.soft-binding`` assertion and served by the Soft Binding Resolution
# API (``/services/supportedAlgorithms``); it is kzlabel's own, not (yet) on the C2PA soft binding algorithm list.
SOFT_BINDING_ALG = "kz.kzlabel.wm.1"
MAX_BINDING_BYTES = 64  # a payload is 8 bytes; anything much longer is not one of ours


def binding_value(content_id: str) -> str:
    """The soft-binding value of a content id: its payload bytes in standard base64, as the assertion and the
    resolution API carry it (``0123456789abcdef`` → ``ASNFZ4mrze8=``)."""
    return base64.b64encode(bytes.fromhex(content_id)).decode("ascii")


def content_id_from_binding(value: str) -> str:
    """The content id (lower-case hex) a base64 soft-binding value carries; standard or URL-safe alphabet, padding
    optional. Raises ValueError for anything else."""
    text = value.strip()
    if not text or len(text) > 2 * MAX_BINDING_BYTES:
        raise ValueError("the value must be the base64 of the watermark payload (a few bytes)")
    text = text.replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the value is not valid base64") from None
    if not raw or len(raw) > MAX_BINDING_BYTES:
        raise ValueError("the value must be the base64 of the watermark payload (a few bytes)")
    return raw.hex()


# the schema every SQL backend migrates to on first use (its ``kzlabel_schema`` table holds the version reached):
# 1 the labels table; 2 the manifest store and its id beside each label
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Entry:
    """What a registry holds for one content id. ``token`` is the signed label (None when a remote resolver returned
    only the manifest store, which carries the label inside); ``manifest_id`` is the active manifest's URN."""

    content_id: str
    token: str | None
    format: str
    manifest_id: str | None = None
    manifest: bytes | None = field(default=None, repr=False)


def redact(location: str) -> str:
    """``location`` without a password (``postgresql://u:secret@h/db`` → ``postgresql://u:***@h/db``, and a
    ``?password=`` parameter likewise), for messages and logs."""
    parts = urlsplit(location)
    if parts.password is not None:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1))
    if "password=" in parts.query:
        query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        parts = parts._replace(query=urlencode(query, safe="/*"))
    return parts.geturl()


def _scheme(location: str | os.PathLike[str]) -> str:
    if not isinstance(location, str) or "://" not in location:
        return ""  # a path (a drive letter such as C:\ is no scheme either)
    return location.split("://", 1)[0].lower()


class Registry(ABC):
    """One interface over every backend. ``record`` (mark) and ``entry``/``lookup``/``manifest`` (verify, the
    resolution API) are all a backend must offer; ``writable`` is False for a remote resolver."""

    _backends: ClassVar[dict[str, type[Registry]]] = {}
    writable: ClassVar[bool] = True
    location: str  # what reopens it in another process (a path or URL; it may hold a password: never log it)

    def __init__(self, location: str | os.PathLike[str]) -> None:
        self.location = os.fspath(location)

    def __init_subclass__(cls, schemes: Sequence[str] = (), **kw: Any) -> None:
        super().__init_subclass__(**kw)
        for scheme in schemes:
            Registry._backends[scheme] = cls

    @classmethod
    def open(cls, location: str | os.PathLike[str] = ":memory:") -> Registry:
        """The registry ``location`` names: a file path (SQLite), ``postgresql://...``, ``http(s)://...``."""
        scheme = _scheme(location)
        backend = Registry._backends.get(scheme)
        if backend is None:
            known = ", ".join(sorted(s + "://" for s in Registry._backends if s))
            raise RegistryError(f"unsupported registry URL scheme {scheme!r} (a file path, or {known})")
        return backend(location)

    @abstractmethod
    def record(
        self,
        content_id: str,
        token: str,
        format: str,
        manifest: bytes | None = None,
        manifest_id: str | None = None,
    ) -> None:
        """Store (or replace: the newest label of a content id wins) the label and its manifest store."""

    @abstractmethod
    def entry(self, content_id: str) -> Entry | None:
        """Everything held for ``content_id`` (lower-case hex), or None."""

    @abstractmethod
    def manifest(self, manifest_id: str) -> bytes | None:
        """The manifest store whose active manifest is ``manifest_id``, or None."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    def __bool__(self) -> bool:
        return True  # an empty registry is still a registry (``if registry:`` must not count its rows)

    def manifest_id(self, content_id: str) -> str | None:
        """The id of the manifest store recorded for ``content_id`` (what a byBinding match names), or None; SQL
        backends read that one column, not the whole entry."""
        found = self.entry(content_id)
        return found.manifest_id if found is not None else None

    # --- reads from an event loop (the service's resolution API) ---------------------------------------------------
    async def start_async(self) -> None:
        """Open what the ``*_async`` reads need on the running loop (the service's lifespan calls it); backends
        without their own async driver need nothing."""
        return None

    async def stop_async(self) -> None:
        """Close what :meth:`start_async` opened, on the same loop."""
        return None

    async def manifest_id_async(self, content_id: str) -> str | None:
        """:meth:`manifest_id` for a coroutine: the blocking call on a worker thread unless the backend reads on the
        loop itself (PostgreSQL: the thread hop cost ~40% of a byBinding lookup's CPU)."""
        return await asyncio.to_thread(self.manifest_id, content_id)

    async def manifest_async(self, manifest_id: str) -> bytes | None:
        """:meth:`manifest` for a coroutine (as :meth:`manifest_id_async`)."""
        return await asyncio.to_thread(self.manifest, manifest_id)

    def lookup(self, content_id: str) -> str | None:
        """The signed label recorded for ``content_id``, or None."""
        found = self.entry(content_id)
        return found.token if found is not None else None

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.location)!r})"
