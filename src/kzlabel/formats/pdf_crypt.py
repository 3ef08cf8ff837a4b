"""An encrypted PDF's protection carried over to the marked output, unchanged.

kzlabel never knows (nor asks for) the owner password of a PDF opened with its user password, and must not weaken
or change the protection either way. So it does not encrypt the output anew: the update appended to the input
(:func:`append_update`), or the full copy of a file whose structure cannot take one (:func:`keep_encryption`), keeps
the input's
encryption dictionary as it was (``/Filter``, ``/V``, ``/R``, ``/Length``, ``/P`` and the password hashes ``/O``,
``/U``, ``/OE``, ``/UE``, ``/Perms``) and its file identifier, and its objects are encrypted with the input's own
file key (read by opening the input with the password given). The same user and owner passwords open the output,
with the same permissions, under the same algorithm. The password itself is never written anywhere.

Used by the PDF handler (``formats.pdf``); pypdf is imported lazily, as there.
"""

from __future__ import annotations

import re
import struct
from typing import IO, Any

__all__ = ["ENCRYPTED_PDF_C2PA", "append_update", "describe", "has_encrypt_entry", "keep_encryption"]

# Why an encrypted PDF gets no embedded C2PA manifest (measured with c2pa-python 0.38.1, c2pa-rs 0.91.3): the
# library fails with "embedding error" on a PDF that needs a user password, and on one that opens with an empty user
# password it writes the whole file out decrypted, which would leave the output less protected than its input.
ENCRYPTED_PDF_C2PA = (
    "the C2PA library cannot embed a manifest into an encrypted PDF (it fails, or writes the file out decrypted); "
    "the output keeps its encryption and carries the signed label in XMP and the Info dictionary, the stamp and the "
    "page binding"
)

# the trailer's /Encrypt entry (an indirect reference or a direct dictionary); /EncryptMetadata does not match
_ENCRYPT = re.compile(rb"/Encrypt\s*(?:\d+\s+\d+\s+R|<<)")

# algorithm names as pypdf's ``encrypt(algorithm=…)`` spells them, by (V, R, stream crypt filter method)
_ALGORITHMS = {
    (1, 2): "RC4-40",
    (2, 3): "RC4-128",
    (4, 4, "/V2"): "RC4-128",
    (4, 4, "/AESV2"): "AES-128",
    (5, 5): "AES-256-R5",
    (5, 6): "AES-256",
}


def has_encrypt_entry(data: bytes) -> bool:
    """Whether the file's bytes name an encryption dictionary (a cheap test before parsing; a match inside a
    compressed stream is impossible, and one in an uncompressed content stream only errs on the side of caution)."""
    return _ENCRYPT.search(data) is not None


def keep_encryption(writer: Any, reader: Any) -> None:
    """Give ``writer`` (a full copy cloned from ``reader``) the encryption of ``reader``, which has been decrypted
    with a password: the same encryption dictionary, file identifier and file key."""
    from pypdf.generic import ArrayObject, DictionaryObject, NameObject  # lazy: loaded with the first PDF

    encryption = reader._encryption
    if encryption is None or not encryption.is_decrypted():
        raise ValueError("the PDF's encryption is unknown or not unlocked")
    entry = DictionaryObject()
    for key, value in reader.trailer["/Encrypt"].get_object().items():
        entry[NameObject(key)] = value.get_object().clone(writer, ignore_fields=())
    writer._add_object(entry)
    writer._encrypt_entry = entry
    writer._ID = ArrayObject(item.clone(writer) for item in reader.trailer["/ID"])
    # /EncryptMetadata false means something from V 4 on only (ISO 32000-2, Table 20); before, metadata is encrypted
    clear_metadata = not encryption.EncryptMetadata and encryption.V >= 4
    writer._encryption = _ClearMetadata(encryption) if clear_metadata else encryption


def append_update(writer: Any, out: IO[bytes]) -> None:
    """Write the original bytes of an encrypted PDF and, after them, an incremental update with the objects that
    ``writer`` (an incremental writer over the decrypted reader) changed or added, each encrypted with the file's own
    key, and a cross-reference stream (never encrypted) carrying the file's ``/Encrypt`` and ``/ID``. What pypdf's
    own incremental writing does for an unencrypted file, which it refuses for an encrypted one."""
    from pypdf.generic import ArrayObject, NameObject, NumberObject, StreamObject  # lazy: loaded with the first PDF

    reader = writer._reader
    encryption = reader._encryption
    if encryption is None or not encryption.is_decrypted():
        raise ValueError("the PDF's encryption is unknown or not unlocked")
    crypt = _ClearMetadata(encryption) if not encryption.EncryptMetadata and encryption.V >= 4 else encryption
    writer._resolve_links()
    reader.stream.seek(0)
    out.write(reader.stream.read())
    ids = sorted(ref.idnum for ref in writer.list_objects_in_increment())
    if not ids:
        return
    positions = []
    for idnum in ids:
        positions.append(out.tell())
        out.write(f"{idnum} 0 obj\n".encode())
        crypt.encrypt_object(writer._objects[idnum - 1], idnum, 0).write_to_stream(out)
        out.write(b"\nendobj\n")
    blocks: list[list[int]] = []
    for idnum in ids:
        if blocks and blocks[-1][0] + blocks[-1][1] == idnum:
            blocks[-1][1] += 1
        else:
            blocks.append([idnum, 1])
    xref_at, xref_id = out.tell(), len(writer._objects) + 1
    fields: dict[Any, Any] = {
        NameObject("/Type"): NameObject("/XRef"),
        NameObject("/Size"): NumberObject(xref_id + 1),
        NameObject("/Root"): writer.root_object.indirect_reference,
        NameObject("/Prev"): NumberObject(reader._startxref),
        NameObject("/Encrypt"): reader.trailer.raw_get("/Encrypt"),
        NameObject("/ID"): reader.trailer["/ID"],
        NameObject("/Filter"): NameObject("/FlateDecode"),
        NameObject("/Index"): ArrayObject(NumberObject(n) for block in blocks for n in block),
        NameObject("/W"): ArrayObject([NumberObject(1), NumberObject(4), NumberObject(1)]),
        "__streamdata__": b"",
    }
    if writer._info is not None:
        fields[NameObject("/Info")] = writer._info.indirect_reference
    xref = StreamObject.initialize_from_dictionary(fields)
    xref.set_data(b"".join(struct.pack(">BIB", 1, at, 0) for at in positions))
    out.write(f"{xref_id} 0 obj\n".encode())
    xref.write_to_stream(out)
    out.write(f"\nendobj\nstartxref\n{xref_at}\n%%EOF\n".encode())


class _ClearMetadata:
    """The input's encryption for a file whose ``/EncryptMetadata`` is false (V 4 or 5): the XMP metadata stream is
    written in the clear (as the specification requires, and as readers then expect), everything else encrypted."""

    def __init__(self, encryption: Any) -> None:
        self._encryption = encryption

    def encrypt_object(self, obj: Any, idnum: int, generation: int) -> Any:
        from pypdf.generic import StreamObject  # lazy: loaded with the first PDF

        if isinstance(obj, StreamObject) and obj.get("/Type") == "/Metadata":
            return obj
        return self._encryption.encrypt_object(obj, idnum, generation)


def describe(reader: Any) -> dict[str, Any]:
    """The encryption of an opened PDF as plain values (no secrets): ``{}`` when it is not encrypted."""
    if not reader.is_encrypted:
        return {}
    entry = reader.trailer["/Encrypt"].get_object()
    v, r = int(entry.get("/V", 0)), int(entry["/R"])
    method = None
    if v == 4:
        cf = entry.get("/CF", {}).get(entry.get("/StmF", "/Identity"), {})
        method = str(cf.get("/CFM", "/None"))
    name = _ALGORITHMS.get((v, r, method) if method else (v, r), f"V{v} R{r}")
    return {
        "algorithm": name,
        "V": v,
        "R": r,
        "Length": int(entry.get("/Length", 40)),
        "P": int(entry["/P"]),
        "EncryptMetadata": bool(entry.get("/EncryptMetadata", True)),
    }
