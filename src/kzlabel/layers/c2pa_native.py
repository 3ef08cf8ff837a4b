"""Data-hashed C2PA signing through the native library c2pa-python already loaded.

c2pa-python 0.38 wraps ``Builder.sign`` (the library hashes and rewrites a whole asset of a type it knows) but not the
data-hashed calls its libc2pa_c exports: ``c2pa_builder_data_hashed_placeholder`` (a manifest store of a fixed size,
reserved before the hash is known) and ``c2pa_builder_sign_data_hashed_embeddable`` (sign that store for a
``c2pa.hash.data`` binding the caller computed, with its exclusions). Those are what a format the library does not know
needs, such as text (C2PA 2.4, appendices A.7-A.9): kzlabel hashes the bytes itself and places the store.

This module binds exactly those calls, on c2pa-python's own library handle and its Builder/Signer handles (no second
copy of c2pa-rs). Function pointers are taken fresh from the handle (``lib[name]``), so c2pa-python's own prototypes
are never touched. Any failure is a ``NativeError`` with the library's message.
"""

from __future__ import annotations

import ctypes
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DataHash", "NativeError", "available", "placeholder", "sign_data_hashed"]

_BYTES_OUT = ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte))


class NativeError(Exception):
    """A data-hashed call failed in the native library (its message), or the library lacks the call."""


@dataclass(frozen=True)
class DataHash:
    """A ``c2pa.hash.data`` binding: ``hash`` is the digest of the asset's bytes outside ``exclusions``
    ((start, length) pairs, in bytes)."""

    hash: bytes
    exclusions: Sequence[tuple[int, int]] = ()
    alg: str = "sha256"
    name: str = "jumbf manifest"

    def to_json(self) -> str:
        # the shape of c2pa-rs's DataHash (serde): hash and pad are byte arrays
        return json.dumps(
            {
                "exclusions": [{"start": s, "length": n} for s, n in self.exclusions],
                "name": self.name,
                "alg": self.alg,
                "hash": list(self.hash),
                "pad": [],
            }
        )


@functools.lru_cache(maxsize=1)
def _functions() -> dict[str, Any] | None:
    """The two native calls with their prototypes, or None when c2pa-python (or these exports) is missing."""
    try:
        from c2pa import c2pa as binding  # c2pa-python's module that loads libc2pa_c
    except ImportError:
        return None
    lib = getattr(binding, "_lib", None)
    if lib is None:
        return None
    try:
        placeholder_fn = lib["c2pa_builder_data_hashed_placeholder"]
        sign_fn = lib["c2pa_builder_sign_data_hashed_embeddable"]
        free_fn = lib["c2pa_free"]
        error_fn = lib["c2pa_error"]
    except AttributeError:  # an older libc2pa_c without data-hashed signing
        return None
    placeholder_fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, _BYTES_OUT]
    placeholder_fn.restype = ctypes.c_int64
    sign_fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, _BYTES_OUT]
    sign_fn.restype = ctypes.c_int64
    free_fn.argtypes = [ctypes.c_void_p]
    free_fn.restype = None
    error_fn.argtypes = []
    error_fn.restype = ctypes.c_void_p
    return {"placeholder": placeholder_fn, "sign": sign_fn, "free": free_fn, "error": error_fn}


def available() -> bool:
    """Whether the loaded C2PA library exports data-hashed signing."""
    return _functions() is not None


def _fns() -> dict[str, Any]:
    fns = _functions()
    if fns is None:
        raise NativeError("the installed C2PA library has no data-hashed signing (c2pa-python >= 0.38 has it)")
    return fns


def _handle(obj: Any, what: str) -> int:
    """The native pointer behind a c2pa-python Builder or Signer (a ctypes pointer object)."""
    handle = getattr(obj, "_handle", None)
    if not handle:
        raise NativeError(f"the {what} is closed")
    return ctypes.cast(handle, ctypes.c_void_p).value or 0


def _take(fns: dict[str, Any], size: int, out: Any, call: str) -> bytes:
    """The bytes the library returned (freed here), or NativeError with its message."""
    if size < 0 or not out:
        err = fns["error"]()
        message = ""
        if err:
            try:
                message = ctypes.string_at(err).decode("utf-8", "replace")
            finally:
                fns["free"](err)
        raise NativeError(f"{call} failed: {message or 'no message from the C2PA library'}")
    try:
        return ctypes.string_at(out, size)
    finally:
        fns["free"](ctypes.cast(out, ctypes.c_void_p))


def placeholder(builder: Any, reserve_size: int, fmt: str = "application/c2pa") -> bytes:
    """A manifest store of the final size for ``builder`` (``reserve_size``: room for the signature); for
    ``application/c2pa`` it is the bare JUMBF store. The signed store from :func:`sign_data_hashed` has this size."""
    fns = _fns()
    out = ctypes.POINTER(ctypes.c_ubyte)()
    size = fns["placeholder"](_handle(builder, "builder"), reserve_size, fmt.encode(), ctypes.byref(out))
    return _take(fns, size, out, "c2pa_builder_data_hashed_placeholder")


def sign_data_hashed(builder: Any, signer: Any, data_hash: DataHash, fmt: str = "application/c2pa") -> bytes:
    """Sign ``builder``'s manifest for the caller's ``data_hash`` and return the store, padded to the placeholder's
    size when :func:`placeholder` was called on this builder first."""
    fns = _fns()
    out = ctypes.POINTER(ctypes.c_ubyte)()
    size = fns["sign"](
        _handle(builder, "builder"),
        _handle(signer, "signer"),
        data_hash.to_json().encode(),
        fmt.encode(),
        None,
        ctypes.byref(out),
    )
    return _take(fns, size, out, "c2pa_builder_sign_data_hashed_embeddable")
