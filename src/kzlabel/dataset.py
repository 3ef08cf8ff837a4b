"""Art. 27(5): a data library's producer, stated in machine-readable form.

``kzlabel dataset DIR`` writes an MLCommons Croissant 1.0 JSON-LD description of the folder — producer, time,
purpose, licence, every file with its SHA-256 and the training permissions found in it — extended with a ``kz:``
namespace and signed with a detached JWS (RFC 7515 Appendix F) over the canonical JSON of the rest, so any Croissant
reader can use it and anyone with the trust bundle can check it. Verification reports added, removed and changed files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from . import formats
from .errors import KzlabelError
from .io import Input, Limits, write_atomic
from .keys import verify_jws_signature
from .label import USES, Training, b64url_decode, canonical_json
from .rights.actions import read_signals
from .rights.vocab import decide

__all__ = ["MANIFEST_NAME", "DatasetCheck", "build_manifest", "verify_manifest", "write_manifest"]

MANIFEST_NAME = "croissant.json"
KZ_NS = "http://kzlabel.kz/ns/1.0/"
SIGNATURE_KEY = "kz:signature"
JWS_TYPE = "kzlabel-dataset+json"
_RESERVED = (Training.NOT_ALLOWED.value, Training.CONSTRAINED.value)

CROISSANT_CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    "kz": KZ_NS,
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _files(root: Path, exclude: Path | None) -> Iterator[Path]:
    """Regular files under root in a stable order; symlinks are not followed (they could leave the tree)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) / d).is_symlink())
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file() or (exclude is not None and path == exclude):
                continue
            yield path


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _describe(path: Path, rel: str, limits: Limits) -> dict[str, Any]:

    entry: dict[str, Any] = {
        "@type": "cr:FileObject",
        "@id": rel,
        "name": rel,
        "contentUrl": rel,
        "contentSize": f"{path.stat().st_size} B",
        "sha256": _sha256(path),
        "encodingFormat": "application/octet-stream",
    }
    training = {u: Training.UNSPECIFIED.value for u in USES}
    if path.stat().st_size <= limits.max_bytes:
        try:
            inp = Input(path.read_bytes(), path.name, path)
            handler = formats.detect(inp)
            entry["encodingFormat"] = handler.mime
            check = decide(read_signals(inp, handler, limits))
            training = {u: t.value for u, t in check.uses.items()}
        except KzlabelError:
            pass  # unsupported or unreadable content: described by hash only, permissions unspecified
    entry["kz:training"] = training
    return entry


def build_manifest(
    root: str | os.PathLike,
    *,
    producer: str,
    license: str,
    purpose: str = "",
    name: str | None = None,
    description: str = "",
    url: str = "",
    signer: Any = None,
    exclude: str | os.PathLike | None = None,
    limits: Limits = Limits(),
    now: datetime | None = None,
) -> dict[str, Any]:
    """The Croissant description of ``root``; signed when a signer is given."""
    base = Path(root)
    if not base.is_dir():
        raise KzlabelError("not a folder", source=str(base))
    if not producer.strip():
        raise KzlabelError("a data library needs its producer (Art. 27(5))")
    when = (now or datetime.now(UTC)).replace(microsecond=0)
    skip = Path(exclude) if exclude is not None else base / MANIFEST_NAME
    files = [_describe(p, p.relative_to(base).as_posix(), limits) for p in _files(base, skip)]
    manifest: dict[str, Any] = {
        "@context": CROISSANT_CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": name or base.resolve().name,
        "description": description or f"Data library produced by {producer}",
        "license": license,
        "creator": {"@type": "sc:Organization", "name": producer},
        "datePublished": when.date().isoformat(),
        "kz:producer": producer,
        "kz:purpose": purpose,
        "kz:created": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kz:notAllowedForTraining": [f["@id"] for f in files if f["kz:training"]["ai_training"] in _RESERVED],
        "distribution": files,
    }
    if url:
        manifest["url"] = url
    if signer is not None:
        header = {"alg": signer.jws_alg, "typ": JWS_TYPE, "x5c": signer.x5c, "b64": True}
        protected = _b64url(canonical_json(header))
        signing_input = (protected + "." + _b64url(canonical_json(manifest))).encode("ascii")
        manifest[SIGNATURE_KEY] = protected + ".." + _b64url(signer.sign(signing_input))
    return manifest


def write_manifest(root: str | os.PathLike, out: str | os.PathLike | None = None, **options: Any) -> Path:
    """Build and atomically write the manifest (default ``ROOT/croissant.json``, itself left out of the list)."""

    target = Path(out) if out is not None else Path(root) / MANIFEST_NAME
    manifest = build_manifest(root, exclude=target, **options)
    write_atomic(target, (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode())
    return target


@dataclass
class DatasetCheck:
    """Signature status (trusted/valid/untrusted/invalid/absent) and what changed since the manifest was made."""

    signature: str
    reason: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    producer: str = ""

    @property
    def ok(self) -> bool:
        return self.signature in ("trusted", "valid", "untrusted") and not (self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "signature": self.signature,
            "reason": self.reason,
            "producer": self.producer,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
        }


def _check_signature(manifest: dict[str, Any], trust: Any) -> tuple[str, str]:
    token = manifest.get(SIGNATURE_KEY)
    if not isinstance(token, str):
        return "absent", "the manifest is not signed"
    parts = token.split(".")
    if len(parts) != 3 or parts[1] != "":
        return "invalid", "not a detached compact JWS"
    try:
        header = json.loads(b64url_decode(parts[0]))
        chain = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in header["x5c"]]
        signature = b64url_decode(parts[2])
        subject = chain[0].subject.rfc4514_string()
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, x509.InvalidVersion):
        return "invalid", "malformed signature header"
    body = {k: v for k, v in manifest.items() if k != SIGNATURE_KEY}
    signing_input = (parts[0] + "." + _b64url(canonical_json(body))).encode("ascii")
    if header.get("typ") != JWS_TYPE or not verify_jws_signature(
        chain[0], header.get("alg", ""), signing_input, signature
    ):
        return "invalid", f"signature does not match the manifest (signer {subject})"
    if trust is None or not trust.anchors:
        return "valid", f"signed by {subject} (no trust anchors given)"
    trusted, why = trust.check_chain(chain)
    return ("trusted", f"signed by {subject}") if trusted else ("untrusted", f"signed by {subject}, not trusted: {why}")


def verify_manifest(
    root: str | os.PathLike, manifest_path: str | os.PathLike | None = None, *, trust: Any = None
) -> DatasetCheck:
    """Check the signature and compare the listed files with the folder as it is now."""
    base = Path(root)
    path = Path(manifest_path) if manifest_path is not None else base / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        listed = {f["@id"]: f["sha256"] for f in manifest["distribution"]}
    except FileNotFoundError:
        raise KzlabelError("no dataset manifest (run `kzlabel dataset DIR` first)", source=str(path)) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KzlabelError(f"unreadable dataset manifest: {exc}", source=str(path)) from None
    status, reason = _check_signature(manifest, trust)
    present = {p.relative_to(base).as_posix(): p for p in _files(base, path)}
    check = DatasetCheck(status, reason, producer=str(manifest.get("kz:producer", "")))
    check.added = sorted(set(present) - set(listed))
    check.removed = sorted(set(listed) - set(present))
    check.changed = sorted(r for r in set(listed) & set(present) if _sha256(present[r]) != listed[r])
    return check
