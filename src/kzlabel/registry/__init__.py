"""The label registry: content id → signed label and manifest store, behind one interface (:class:`Registry`).

``Registry.open(location)`` opens the backend the location names: a file path → :class:`SQLiteRegistry` (the default),
``postgresql://...`` → :class:`PostgresRegistry`, ``http(s)://...`` → :class:`ResolverRegistry` (a remote Soft Binding
Resolution API, read-only). Importing the backends here registers their URL schemes.
"""

from __future__ import annotations

from .base import SCHEMA_VERSION, SOFT_BINDING_ALG, Entry, Registry, binding_value, content_id_from_binding, redact
from .postgres import PostgresRegistry
from .resolver import ResolverRegistry
from .sqlite import SQLiteRegistry

__all__ = [
    "SCHEMA_VERSION",
    "SOFT_BINDING_ALG",
    "Entry",
    "PostgresRegistry",
    "Registry",
    "ResolverRegistry",
    "SQLiteRegistry",
    "binding_value",
    "content_id_from_binding",
    "redact",
]
