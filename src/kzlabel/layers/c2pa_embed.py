"""Data-hashed C2PA manifests placed by kzlabel in a container slot, signed and read in bounded memory.

The C2PA library embeds a manifest by loading the whole asset (a 212 MB WAV cost +615 MB to sign and +210 MB to read
with c2pa-python 0.38, docs/audio.md). The hard binding of such a container is a ``c2pa.hash.data`` over the file with
the manifest's slot excluded, so kzlabel can do the library's part itself, as a stream:

1. the library reserves a placeholder store and says its final size (``c2pa.sign_data_hashed``);
2. the format writes the output with a zero-filled slot of that size (``reserve``: a RIFF ``C2PA`` chunk, ...);
3. the file is hashed in 1 MiB reads with the slot excluded, the library signs the store for that hash;
4. the store is written over the placeholder in place (same size, so nothing else moves).

Reading is the converse: the store is read out of the slot and validated by the library as a bare store
(signature, certificate trust, assertions), and the hash is checked here over the file, in the same reads. The format
knows where its slot is (:class:`Slot`); this module never knows which format it serves.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..keys import Signer, TrustStore
from . import c2pa as c2pa_layer
from .c2pa_native import DataHash

__all__ = ["STORE_MAX", "Slot", "check_hash", "file_hash", "read", "settle", "sign"]

_READ = 1 << 20  # 1 MiB reads: the hash runs at disk speed and memory does not grow with the file
STORE_MAX = 64 << 20  # a manifest store is KBs (a thumbnail makes it MBs): a slot claiming more is not read
HASH_CODES = ("assertion.dataHash.match", "assertion.dataHash.mismatch")


@dataclass(frozen=True)
class Slot:
    """Where a container holds a manifest store: its ``size`` bytes at offset ``at``, and the hard binding's
    exclusion ``(start, length)`` around it (for RIFF the whole chunk: its 8-byte header and the store)."""

    at: int
    size: int
    exclusion: tuple[int, int]


def file_hash(fh: IO[bytes], exclusions: Sequence[tuple[int, int]]) -> bytes:
    """SHA-256 of the file's bytes outside ``exclusions``, read in 1 MiB pieces (the file is never held)."""
    digest = hashlib.sha256()
    pos = 0
    fh.seek(0)
    for start, length in sorted(exclusions) + [(-1, 0)]:
        while start < 0 or pos < start:  # the bytes before the next exclusion (all the rest after the last)
            piece = fh.read(_READ if start < 0 else min(_READ, start - pos))
            if not piece:
                break
            digest.update(piece)
            pos += len(piece)
        if start >= 0:
            pos = start + length
            fh.seek(pos)
    return digest.digest()


def sign(
    src: Path,
    dst: Path,
    reserve: Callable[[IO[bytes], IO[bytes], int], Slot],
    signer: Signer,
    *,
    label_claims: dict | None,
    title: str | None = None,
    source_type: str = c2pa_layer.TRAINED_ALGORITHMIC_MEDIA_URI,
    soft_binding: dict | None = None,
    training: str | Mapping[str, Any] | None = None,
    mime: str = "application/octet-stream",
) -> bytes:
    """Write ``src`` to ``dst`` with a signed manifest in the slot ``reserve(src, dst, store_size)`` writes; returns
    the store. Memory stays flat whatever the file's size (``reserve`` copies in a stream too). Raises SigningError."""
    slot: Slot | None = None
    with open(src, "rb") as source, open(dst, "w+b") as out:

        def binding(size: int) -> DataHash:
            nonlocal slot
            out.seek(0)
            out.truncate()
            slot = reserve(source, out, size)
            out.flush()
            return DataHash(file_hash(out, [slot.exclusion]), [slot.exclusion])

        store = c2pa_layer.sign_data_hashed(
            signer,
            binding,
            label_claims=label_claims,
            title=title,
            source_type=source_type,
            soft_binding=soft_binding,
            training=training,
            mime=mime,
        )
        assert slot is not None
        if len(store) != slot.size:  # sign_data_hashed checked it against the placeholder: the format broke it
            raise RuntimeError(f"the slot holds {slot.size} bytes, the signed store is {len(store)}")
        out.seek(slot.at)
        out.write(store)
    return store


def check_hash(
    data_hash: dict | None, exclusion: tuple[int, int], digest: Callable[[], bytes], what: str = "content"
) -> tuple[bool, str]:
    """Whether a ``c2pa.hash.data`` binds the asset: its one exclusion is the manifest's slot ``exclusion`` and
    ``digest()`` (the asset's hash without it) is the signed one. (ok, why not)."""
    if not data_hash:
        return False, "the manifest has no c2pa.hash.data hard binding"
    try:
        excl = [(int(e.get("start", -1)), int(e.get("length", -1))) for e in data_hash.get("exclusions") or []]
        want = base64.b64decode(data_hash.get("hash") or "")
    except (binascii.Error, ValueError, TypeError, AttributeError):
        return False, "unreadable c2pa.hash.data"
    if (data_hash.get("alg") or "sha256") != "sha256" or excl != [tuple(exclusion)]:
        return False, "the hard binding's exclusion is not the manifest's slot"
    if digest() != want:
        return False, f"the {what} differs from the signed hash"
    return True, ""


def settle(rep: c2pa_layer.C2paReport, ok: bool, why: str) -> c2pa_layer.C2paReport:
    """A bare store's report completed with the hard binding checked by kzlabel: the hash code, and the state from
    the claim signature, the trust and that binding (any other failure code keeps it invalid)."""
    rep.codes = [c for c in rep.codes if c not in HASH_CODES] + [HASH_CODES[0] if ok else HASH_CODES[1]]
    benign = ("signingCredential.untrusted", "signingCredential.ocsp.skipped", "signingCredential.trusted")
    failures = [
        c
        for c in rep.codes
        if c not in HASH_CODES
        and c not in benign
        and c != "claimSignature.validated"
        and not c.startswith("ingredient:")
    ]
    if not ok or failures or "claimSignature.validated" not in rep.codes:
        rep.state = "invalid"
        rep.detail = why or ", ".join(failures) or "claim signature not validated"
    else:
        rep.state = "trusted" if "signingCredential.trusted" in rep.codes else "valid"
        rep.detail = why
    return rep


def read(fh: IO[bytes], slot: Slot, trust: TrustStore | None = None) -> c2pa_layer.C2paReport:
    """Validate the manifest store in ``slot`` of the file ``fh`` and its hard binding over the file, streamed;
    never raises for a broken manifest."""
    if slot.size > STORE_MAX:
        detail = f"a {slot.size}-byte manifest slot (over {STORE_MAX}): not read"
        return c2pa_layer.C2paReport(present=True, state="invalid", codes=["manifest.unreadable"], detail=detail)
    fh.seek(slot.at)
    store = fh.read(slot.size)
    rep = c2pa_layer.read(store, c2pa_layer.STORE_MIME, trust)
    if rep.manifest is None:
        return rep
    ok, why = check_hash(rep.data_hash, slot.exclusion, lambda: file_hash(fh, [slot.exclusion]))
    return settle(rep, ok, why)
