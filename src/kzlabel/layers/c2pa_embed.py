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

A format whose writers only ever append to a file or rewrite it whole (PDF: incremental updates, or a new file) says
where the signed bytes may have ended (``Slot.ends``). A hash that broke with the manifest still where it was signed
then tells three cases apart: the signed bytes intact with an update appended (a container edit), or a file
re-laid out (the slot moved: a container edit), or bytes changed in place, which no such writer does — damage or a
hand edit, reported as a failure of its own (``CHANGED_IN_PLACE``) so it is not taken for a container edit.
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

__all__ = [
    "CHANGED_IN_PLACE",
    "STORE_MAX",
    "Slot",
    "check_hash",
    "file_hash",
    "parent",
    "prefix_hashes",
    "read",
    "settle",
    "sign",
]

_READ = 1 << 20  # 1 MiB reads: the hash runs at disk speed and memory does not grow with the file
STORE_MAX = 64 << 20  # a manifest store is KBs (a thumbnail makes it MBs): a slot claiming more is not read
HASH_CODES = ("assertion.dataHash.match", "assertion.dataHash.mismatch")
# kzlabel's failure code for a hash broken by bytes changed in place (Slot.ends): not a container edit
CHANGED_IN_PLACE = "kzlabel.dataHash.changedInPlace"


@dataclass(frozen=True)
class Slot:
    """Where a container holds a manifest store: its ``size`` bytes at offset ``at``, and the hard binding's
    exclusion ``(start, length)`` around it (for RIFF the whole chunk: its 8-byte header and the store). ``ends``:
    for a format whose writers append or rewrite but never change bytes in place (PDF), the offsets at which the
    signed file may have ended (each end of an update after the slot); None: no such rule. ``seal``: bytes the
    format keeps right after the store, computed from it once signed (a PNG chunk's CRC; inside the exclusion)."""

    at: int
    size: int
    exclusion: tuple[int, int]
    ends: tuple[int, ...] | None = None
    seal: Callable[[bytes], bytes] | None = None


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


def prefix_hashes(fh: IO[bytes], exclusion: tuple[int, int], ends: Sequence[int]) -> dict[int, bytes]:
    """SHA-256 of the file's bytes before each offset in ``ends``, outside ``exclusion``: one pass in 1 MiB reads."""
    digest = hashlib.sha256()
    out: dict[int, bytes] = {}
    start, length = exclusion
    pos = 0
    fh.seek(0)
    for end in sorted(set(ends)):
        while pos < end:
            if start <= pos < start + length:  # inside the exclusion: skipped, not hashed
                pos = min(start + length, end)
                fh.seek(pos)
                continue
            stop = min(end, start) if pos < start else end
            piece = fh.read(min(_READ, stop - pos))
            if not piece:
                return out
            digest.update(piece)
            pos += len(piece)
        out[end] = digest.copy().digest()
    return out


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
    parent: c2pa_layer.Parent | None = None,
) -> bytes:
    """Write ``src`` to ``dst`` with a signed manifest in the slot ``reserve(src, dst, store_size)`` writes; returns
    the store. Memory stays flat whatever the file's size (``reserve`` copies in a stream too). ``parent``: the
    input's manifest (:func:`parent`), kept as the new one's ``parentOf`` ingredient. Raises SigningError."""
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
            parent=parent,
        )
        assert slot is not None
        if len(store) != slot.size:  # sign_data_hashed checked it against the placeholder: the format broke it
            raise RuntimeError(f"the slot holds {slot.size} bytes, the signed store is {len(store)}")
        out.seek(slot.at)
        out.write(store)
        if slot.seal is not None:
            out.write(slot.seal(store))
    return store


def parent(fh: IO[bytes], slot: Slot) -> c2pa_layer.Parent:
    """The manifest store in ``slot`` of the input ``fh``, to keep as the new manifest's parent ingredient: validated
    as a bare store, its hard binding checked over the file here in 1 MiB reads (the file is never held)."""
    if slot.size > STORE_MAX:
        return c2pa_layer.Parent(None, damaged=f"a {slot.size}-byte manifest slot (over {STORE_MAX}): not read")
    fh.seek(slot.at)
    store = fh.read(slot.size)
    return c2pa_layer.parent_from_store(
        store, lambda data_hash: check_hash(data_hash, slot.exclusion, lambda: file_hash(fh, [slot.exclusion]))
    )


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


def settle(rep: c2pa_layer.C2paReport, ok: bool, why: str, extra: Sequence[str] = ()) -> c2pa_layer.C2paReport:
    """A bare store's report completed with the hard binding checked by kzlabel: the hash code (and ``extra``
    codes), and the state from the claim signature, the trust and that binding (any other failure keeps it invalid)."""
    rep.codes = [c for c in rep.codes if c not in HASH_CODES] + [HASH_CODES[0] if ok else HASH_CODES[1], *extra]
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
    signed = _signed_exclusion(rep.data_hash)
    if ok or slot.ends is None or signed is None or signed[0] != slot.exclusion[0]:
        return settle(rep, ok, why)  # a store that moved (a file re-laid out) is left to the content binding
    return _appended_or_in_place(fh, signed, rep, slot.ends)


def _signed_exclusion(data_hash: dict | None) -> tuple[int, int] | None:
    """The one exclusion a ``c2pa.hash.data`` was signed with (where the store was), None for any other shape."""
    try:
        (only,) = (data_hash or {}).get("exclusions") or [None]
        return int(only["start"]), int(only["length"])
    except (TypeError, ValueError, KeyError):
        return None


def _appended_or_in_place(
    fh: IO[bytes], signed: tuple[int, int], rep: c2pa_layer.C2paReport, ends: Sequence[int]
) -> c2pa_layer.C2paReport:
    """A broken hash over a file whose manifest store still starts where it was signed (``signed``: the exclusion):
    the signed bytes intact before an update appended after them (a container edit), else bytes changed in place
    or cut (CHANGED_IN_PLACE: a failure of its own, not a container edit)."""
    size = fh.seek(0, 2)
    try:
        want = base64.b64decode((rep.data_hash or {}).get("hash") or "")
    except (binascii.Error, ValueError, TypeError):
        want = b""
    earlier = [end for end in ends if end < size]
    for end, digest in prefix_hashes(fh, signed, earlier).items():
        if digest == want:
            why = f"the signed bytes are intact, and {size - end} bytes were appended after them (an update)"
            return settle(rep, False, why)
    why = (
        "the signed file's bytes were changed in place or cut (its manifest store starts where it was signed, and "
        "the signed bytes are not followed by an appended update)"
    )
    return settle(rep, False, why, [CHANGED_IN_PLACE])
