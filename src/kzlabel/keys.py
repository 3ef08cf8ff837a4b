"""Signing keys, certificate chains and trust anchors.

``generate(DIR)`` makes what a small publisher needs to sign C2PA manifests and kzlabel labels without buying a
certificate: a local CA, a leaf certificate fit for C2PA claim signing, and the trust bundle verifiers load::

    DIR/signing.key   PKCS8 PEM private key of the leaf (mode 0600)
    DIR/chain.pem     leaf certificate, then the local CA certificate
    DIR/trust.pem     the local CA certificate only (give this to verifiers)

``Signer`` loads a key + chain, checks them (``preflight``) and signs raw JWS signatures (EdDSA / ES256) and, through
``c2pa_signer()``, C2PA manifests. ``TrustStore`` holds the anchors a verifier trusts and checks chains against them.
Private key bytes are never printed, logged or put into an exception message.
"""

from __future__ import annotations

import base64
import datetime as _dt
import os
import stat
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import KeyFileError, MissingDependency, SigningError

__all__ = [
    "ALGORITHMS",
    "CA_KEY_FILE",
    "CHAIN_FILE",
    "KEY_FILE",
    "TRUST_FILE",
    "KeyPaths",
    "Signer",
    "TrustStore",
    "generate",
    "preflight",
    "verify_jws_signature",
]

ALGORITHMS = ("ed25519", "es256")
_JWS_ALG = {"ed25519": "EdDSA", "es256": "ES256"}

KEY_FILE = "signing.key"
CHAIN_FILE = "chain.pem"
TRUST_FILE = "trust.pem"
CA_KEY_FILE = "ca.key"

#: id-kp-documentSigning (RFC 9336)
OID_DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
#: c2pa-kp-claimSigning (C2PA trust list)
OID_C2PA_CLAIM_SIGNING = x509.ObjectIdentifier("1.3.6.1.4.1.62558.2.1")
_C2PA_EKUS = {
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    OID_DOCUMENT_SIGNING: "documentSigning",
    OID_C2PA_CLAIM_SIGNING: "c2pa claimSigning",
}

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PathLike = Union[str, "os.PathLike[str]"]


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _fmt(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


# --- key generation ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyPaths:
    """Where ``generate`` put the files."""

    key: Path
    chain: Path
    trust: Path


def _new_key(alg: str) -> PrivateKey:
    if alg == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def _sign_hash(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _name(common_name: str, organization: str | None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _pkcs8(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_secret(path: Path, data: bytes, overwrite: bool) -> None:
    """Write ``data`` to ``path`` created with mode 0600 (never world-readable, not even briefly)."""
    if overwrite:
        path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # in case the umask or filesystem changed it
        os.write(fd, data)
    finally:
        os.close(fd)


def generate(
    directory: PathLike,
    *,
    alg: str = "ed25519",
    common_name: str = "kzlabel signer",
    organization: str | None = None,
    days: int = 825,
    overwrite: bool = False,
    keep_ca: bool = False,
) -> KeyPaths:
    """Create a local CA and a C2PA-fit signing certificate in ``directory``.

    Writes ``signing.key`` (0600), ``chain.pem`` (leaf, CA) and ``trust.pem`` (CA). The CA key is discarded unless
    ``keep_ca`` (then ``ca.key``, 0600). Refuses to replace an existing key unless ``overwrite``.
    """
    alg = alg.lower()
    if alg not in ALGORITHMS:
        raise KeyFileError(f"unsupported key algorithm {alg!r}; supported: {', '.join(ALGORITHMS)}")
    if days < 1:
        raise KeyFileError("certificate validity must be at least one day")
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(f"cannot create the key folder: {exc.strerror or exc}", source=str(d)) from None
    paths = KeyPaths(d / KEY_FILE, d / CHAIN_FILE, d / TRUST_FILE)
    existing = [p for p in (paths.key, d / CA_KEY_FILE) if p.exists()]
    if existing and not overwrite:
        raise KeyFileError(
            f"{existing[0].name} already exists; refusing to overwrite a key (pass overwrite=True / --force)",
            source=str(existing[0]),
        )

    now = _now()
    not_before = now - _dt.timedelta(minutes=5)
    not_after = now + _dt.timedelta(days=days)

    ca_key = _new_key(alg)
    ca_name = _name(f"{common_name} local CA", organization)
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after + _dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, _sign_hash(ca_key))
    )

    leaf_key = _new_key(alg)
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organization))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, OID_DOCUMENT_SIGNING]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, _sign_hash(ca_key))
    )

    leaf_pem = leaf_cert.public_bytes(serialization.Encoding.PEM)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    try:
        _write_secret(paths.key, _pkcs8(leaf_key), overwrite)
        if keep_ca:
            _write_secret(d / CA_KEY_FILE, _pkcs8(ca_key), overwrite)
        paths.chain.write_bytes(leaf_pem + ca_pem)
        paths.trust.write_bytes(ca_pem)
    except OSError as exc:
        raise KeyFileError(f"cannot write key files: {exc.strerror or exc}", source=str(d)) from None
    del ca_key  # the CA key is not kept (unless keep_ca): nothing more can be issued under this CA
    return paths


# --- preflight -----------------------------------------------------------------------------------------------------
def _ext(cert: x509.Certificate, cls: type) -> Any:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:  # malformed extensions
        return None


def _key_alg(key: Any) -> str | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return "es256"
    return None


def _describe_key(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"ECDSA {key.curve.name}"
    name = type(key).__name__.replace("_", "").replace("PrivateKey", "")
    return name or "unknown"


def _spki(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
        return True
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False


def _validity_problem(cert: x509.Certificate, at: _dt.datetime, what: str) -> str | None:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if at < start:
        return f"{what} is not yet valid: valid from {_fmt(start)} to {_fmt(end)}"
    if at > end:
        return f"{what} has expired: valid from {_fmt(start)} to {_fmt(end)}"
    return None


def preflight(chain: list[x509.Certificate], key: Any, at: _dt.datetime | None = None) -> list[str]:
    """Check a certificate chain (leaf first) and private key for C2PA signing; return every problem found.

    An empty list means the pair is usable.
    """
    problems: list[str] = []
    at = at or _now()
    if not chain:
        return ["the certificate chain is empty"]
    leaf = chain[0]

    alg = _key_alg(key)
    if alg is None:
        problems.append(
            f"unsupported key algorithm ({_describe_key(key)}); supported: Ed25519 (ed25519) and ECDSA P-256 (es256)"
        )
    else:
        try:
            if _spki(key.public_key()) != _spki(leaf.public_key()):
                problems.append("the private key does not match the certificate (different public key)")
        except (ValueError, TypeError, UnsupportedAlgorithm):
            problems.append("the private key does not match the certificate (unreadable public key)")

    if leaf.version != x509.Version.v3:
        problems.append("the certificate is not X.509 version 3")
    if _ext(leaf, x509.AuthorityKeyIdentifier) is None:
        problems.append("the certificate has no Authority Key Identifier extension (C2PA requires it)")
    if _ext(leaf, x509.SubjectKeyIdentifier) is None:
        problems.append("the certificate has no Subject Key Identifier extension (C2PA requires it)")
    bc = _ext(leaf, x509.BasicConstraints)
    if bc is not None and bc.ca:
        problems.append(
            "the signing certificate is a CA certificate (basicConstraints CA=true); use a leaf certificate"
        )
    ku = _ext(leaf, x509.KeyUsage)
    if ku is None:
        problems.append("the certificate has no keyUsage extension; it needs keyUsage digitalSignature")
    elif not ku.digital_signature:
        problems.append("the certificate's keyUsage lacks digitalSignature")
    eku = _ext(leaf, x509.ExtendedKeyUsage)
    if eku is None:
        problems.append(
            "the certificate has no extended key usage (EKU); C2PA needs one of: " + ", ".join(_C2PA_EKUS.values())
        )
    else:
        oids = set(eku)
        if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in oids:
            problems.append("the certificate's EKU is anyExtendedKeyUsage, which C2PA does not accept")
        elif not oids & set(_C2PA_EKUS):
            names = ", ".join(getattr(o, "_name", o.dotted_string) for o in eku)
            problems.append(
                f"the certificate's EKU ({names}) is not usable for C2PA; it needs one of: "
                + ", ".join(_C2PA_EKUS.values())
            )
    for i, cert in enumerate(chain):
        what = "the signing certificate" if i == 0 else f"chain certificate {i + 1} ({cert.subject.rfc4514_string()})"
        p = _validity_problem(cert, at, what)
        if p:
            problems.append(p)
    for i in range(len(chain) - 1):
        try:
            chain[i].verify_directly_issued_by(chain[i + 1])
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            problems.append(
                f"chain certificate {i + 1} ({chain[i].subject.rfc4514_string()}) is not issued by the next one "
                f"({chain[i + 1].subject.rfc4514_string()}); put the leaf first, then its issuers in order"
            )
    if len(chain) == 1 and _is_self_signed(leaf):
        problems.append(
            "the certificate is self-signed; C2PA signing needs a leaf issued by a CA (see `kzlabel keygen`)"
        )
    return problems


# --- loading -------------------------------------------------------------------------------------------------------
def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{what} not found", source=str(path)) from None
    except IsADirectoryError:
        raise KeyFileError(f"{what} expected, found a folder", source=str(path)) from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {what}: {exc.strerror or exc}", source=str(path)) from None


def _parse_key(data: bytes, source: str) -> Any:
    if b"-----BEGIN" not in data:
        raise KeyFileError("not a PEM private key (expected '-----BEGIN PRIVATE KEY-----')", source=source)
    if b"ENCRYPTED" in data:
        raise KeyFileError(
            "the private key is encrypted; kzlabel needs an unencrypted PKCS8 PEM key "
            "(decrypt it, e.g. `openssl pkey -in KEY -out signing.key`, and keep it mode 0600)",
            source=source,
        )
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(
            "the private key is encrypted; kzlabel needs an unencrypted PKCS8 PEM key", source=source
        ) from None
    except UnsupportedAlgorithm:
        raise KeyFileError(
            "unsupported key algorithm; supported: Ed25519 (ed25519) and ECDSA P-256 (es256)", source=source
        ) from None
    except ValueError:  # never let a parser traceback (or key bytes) escape
        raise KeyFileError("not a readable PEM private key (corrupt or wrong file)", source=source) from None


def parse_certs(data: bytes, source: str, what: str = "certificate chain") -> list[x509.Certificate]:
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise KeyFileError(f"{what}: no PEM certificate found (expected '-----BEGIN CERTIFICATE-----')", source=source)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise KeyFileError(f"{what}: malformed PEM certificate", source=source) from None
    if not certs:
        raise KeyFileError(f"{what}: no certificate found", source=source)
    return certs


def _pem_certs(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


class Signer:
    """A private key with its certificate chain (leaf first), checked for C2PA use."""

    alg: str
    jws_alg: str
    chain: list[x509.Certificate]

    def __init__(self, key: Any, chain: list[x509.Certificate], *, source: str = "<bytes>") -> None:
        problems = preflight(chain, key)
        if problems:
            raise KeyFileError(
                "the key and certificate chain cannot be used for signing:\n  - " + "\n  - ".join(problems),
                source=source,
            )
        alg = _key_alg(key)
        assert alg is not None
        self.alg = alg
        self.jws_alg = _JWS_ALG[alg]
        self.chain = list(chain)
        self.source = source
        self.__key = key
        self._c2pa_lock = threading.Lock()
        self._c2pa: Any = None

    # -- construction --
    @classmethod
    def load(cls, directory_or_key: PathLike, chain: PathLike | None = None) -> Signer:
        """Load from a ``generate()`` folder, or from a key file plus a chain file (default: chain.pem beside it)."""
        p = Path(directory_or_key)
        if p.is_dir():
            key_path = p / KEY_FILE
            chain_path = Path(chain) if chain is not None else p / CHAIN_FILE
        else:
            key_path = p
            chain_path = Path(chain) if chain is not None else p.parent / CHAIN_FILE
        if not key_path.exists():
            raise KeyFileError("signing key not found (create one with `kzlabel keygen DIR`)", source=str(key_path))
        key_data = _read(key_path, "signing key")
        key = _parse_key(key_data, str(key_path))
        del key_data
        try:
            mode = stat.S_IMODE(key_path.stat().st_mode)
        except OSError:
            mode = 0
        if os.name == "posix" and mode & 0o077:
            warnings.warn(
                f"{key_path}: the signing key is readable by group/others (mode {mode:04o}); it should be 0600 "
                f"(chmod 600 {key_path})",
                stacklevel=2,
            )
        if chain is None and not chain_path.exists():
            raise KeyFileError(
                "certificate chain not found; pass the chain file (leaf certificate first)", source=str(chain_path)
            )
        certs = parse_certs(_read(chain_path, "certificate chain"), str(chain_path))
        return cls(key, certs, source=str(key_path))

    @classmethod
    def from_pem(cls, key_pem: bytes, chain_pem: bytes) -> Signer:
        if isinstance(key_pem, str):
            key_pem = key_pem.encode("ascii", "replace")
        if isinstance(chain_pem, str):
            chain_pem = chain_pem.encode("ascii", "replace")
        key = _parse_key(key_pem, "<key bytes>")
        certs = parse_certs(chain_pem, "<chain bytes>")
        return cls(key, certs, source="<bytes>")

    # -- use --
    def sign(self, data: bytes) -> bytes:
        """Raw JWS signature: Ed25519 (64 bytes) or ES256 as r||s (64 bytes, RFC 7518 §3.4)."""
        key = self.__key
        if self.alg == "ed25519":
            return key.sign(data)
        der = key.sign(data, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    @property
    def certificate(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def subject(self) -> str:
        return self.chain[0].subject.rfc4514_string()

    @property
    def x5c(self) -> list[str]:
        """Standard-base64 DER of the chain, leaf first, without a self-signed root (RFC 7515 §4.1.6)."""
        certs = [c for i, c in enumerate(self.chain) if i == 0 or not _is_self_signed(c)]
        return [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii") for c in certs]

    def chain_pem(self, *, include_root: bool = False) -> bytes:
        """The chain as PEM (leaf first); the self-signed root is left out unless ``include_root``."""
        certs = [c for i, c in enumerate(self.chain) if include_root or i == 0 or not _is_self_signed(c)]
        return _pem_certs(certs)

    def c2pa_signer(self) -> Any:
        """A ``c2pa.Signer`` for c2pa-python, created once and reused (it is not consumed by ``Builder.sign``)."""
        with self._c2pa_lock:
            if self._c2pa is not None and getattr(self._c2pa, "is_valid", True):
                return self._c2pa
            try:
                import c2pa
            except ImportError:
                raise MissingDependency("C2PA signing needs c2pa-python: pip install 'kzlabel[c2pa]'") from None
            try:
                info = c2pa.C2paSignerInfo(
                    alg=self.alg.encode("ascii"),
                    sign_cert=self.chain_pem(),
                    private_key=_pkcs8(self.__key),
                    ta_url=None,
                )
                self._c2pa = c2pa.Signer.from_info(info)
            except (c2pa.C2paError, ValueError) as exc:  # ValueError: c2pa-python's own checks of the signer info
                raise SigningError(
                    f"the C2PA library rejected the signing key/certificate: {exc}", source=self.source
                ) from exc
            return self._c2pa

    def __repr__(self) -> str:
        return (
            f"Signer(alg={self.alg!r}, subject={self.subject!r}, chain={len(self.chain)} certs, source={self.source!r})"
        )

    __str__ = __repr__


# --- verification --------------------------------------------------------------------------------------------------
def verify_jws_signature(cert: x509.Certificate, alg: str, signing_input: bytes, signature: bytes) -> bool:
    """Check a raw JWS signature (EdDSA, or ES256 as r||s) over ``signing_input`` with ``cert``'s public key."""
    try:
        pub = cert.public_key()
        if alg == "EdDSA":
            if not isinstance(pub, ed25519.Ed25519PublicKey) or len(signature) != 64:
                return False
            pub.verify(signature, signing_input)
            return True
        if alg == "ES256":
            if not isinstance(pub, ec.EllipticCurvePublicKey) or not isinstance(pub.curve, ec.SECP256R1):
                return False
            if len(signature) != 64:
                return False
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            pub.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
            return True
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return False


class TrustStore:
    """The certificates a verifier trusts (trust anchors)."""

    def __init__(self, anchors: Iterable[x509.Certificate] = ()) -> None:
        self.anchors: list[x509.Certificate] = []
        seen: set[bytes] = set()
        for a in anchors:
            der = a.public_bytes(serialization.Encoding.DER)
            if der not in seen:
                seen.add(der)
                self.anchors.append(a)

    @classmethod
    def load(cls, paths: PathLike | Iterable[PathLike]) -> TrustStore:
        """Load PEM bundle files, or keygen folders (their trust.pem)."""
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        anchors: list[x509.Certificate] = []
        for item in paths:
            p = Path(item)
            if p.is_dir():
                p = p / TRUST_FILE
            anchors.extend(parse_certs(_read(p, "trust bundle"), str(p), "trust bundle"))
        return cls(anchors)

    @classmethod
    def empty(cls) -> TrustStore:
        return cls(())

    def __len__(self) -> int:
        return len(self.anchors)

    def __bool__(self) -> bool:  # an empty store is still a store
        return True

    def __repr__(self) -> str:
        return f"TrustStore({len(self.anchors)} anchors)"

    def pem(self) -> str:
        return _pem_certs(self.anchors).decode("ascii")

    def _is_anchor(self, cert: x509.Certificate) -> bool:
        der = cert.public_bytes(serialization.Encoding.DER)
        return any(a.public_bytes(serialization.Encoding.DER) == der for a in self.anchors)

    def check_chain(self, chain: list[x509.Certificate], at: _dt.datetime | None = None) -> tuple[bool, str]:
        """Is ``chain`` (leaf first) valid at ``at`` and rooted in one of the anchors? Returns (trusted, reason)."""
        at = at or _now()
        if at.tzinfo is None:
            at = at.replace(tzinfo=_dt.UTC)
        if not chain:
            return False, "no certificate"
        if not self.anchors:
            return False, "no trust anchors configured"
        for i, cert in enumerate(chain):
            what = "signer certificate" if i == 0 else f"certificate {cert.subject.rfc4514_string()}"
            p = _validity_problem(cert, at, what)
            if p:
                return False, p
            if self._is_anchor(cert):
                return True, f"chains to trust anchor {cert.subject.rfc4514_string()}"
            if i + 1 < len(chain):
                try:
                    cert.verify_directly_issued_by(chain[i + 1])
                except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                    return False, (
                        f"{cert.subject.rfc4514_string()} is not signed by {chain[i + 1].subject.rfc4514_string()}"
                    )
        last = chain[-1]
        for anchor in self.anchors:
            if anchor.subject != last.issuer:
                continue
            try:
                last.verify_directly_issued_by(anchor)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                continue
            p = _validity_problem(anchor, at, f"trust anchor {anchor.subject.rfc4514_string()}")
            if p:
                return False, p
            return True, f"chains to trust anchor {anchor.subject.rfc4514_string()}"
        return False, f"issuer {last.issuer.rfc4514_string()} is not among the {len(self.anchors)} trust anchors"

    def verify_signature(self, cert: x509.Certificate, alg: str, signing_input: bytes, signature: bytes) -> bool:
        """Signature check only (no trust decision); see ``check_chain`` for that."""
        return verify_jws_signature(cert, alg, signing_input, signature)
