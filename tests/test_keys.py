"""Keys, certificates and trust: keygen output, preflight diagnostics, loading errors, JWS signatures, chains."""

from __future__ import annotations

import datetime as dt
import os
import stat
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kzlabel.errors import KeyFileError
from kzlabel.keys import (
    OID_DOCUMENT_SIGNING,
    KeyPaths,
    Signer,
    TrustStore,
    generate,
    preflight,
    verify_jws_signature,
)

NOW = dt.datetime.now(dt.timezone.utc)


# --- helpers: build (possibly defective) certificates ----------------------------------------------------------
def _ca(key=None):
    key = key or ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, None)
    )
    return key, cert


def _leaf(
    ca_key,
    ca_cert,
    *,
    key=None,
    aki=True,
    ski=True,
    is_ca=False,
    eku=(ExtendedKeyUsageOID.EMAIL_PROTECTION,),
    digital_signature=True,
    not_before=None,
    not_after=None,
):
    key = key or ed25519.Ed25519PrivateKey.generate()
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature, False, False, False, False, is_ca, False, False, False), critical=True
        )
    )
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if ski:
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if aki:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    return key, b.sign(ca_key, None)


@pytest.fixture(scope="module")
def ca():
    return _ca()


def _problems(ca, **kw):
    ca_key, ca_cert = ca
    key, leaf = _leaf(ca_key, ca_cert, **kw)
    return preflight([leaf, ca_cert], key)


# --- keygen ----------------------------------------------------------------------------------------------------
def test_generate_writes_files_with_private_key_0600(tmp_path: Path) -> None:
    paths = generate(tmp_path / "k", organization="Org LLP")
    assert isinstance(paths, KeyPaths)
    assert paths.key.name == "signing.key" and paths.chain.name == "chain.pem" and paths.trust.name == "trust.pem"
    assert stat.S_IMODE(os.stat(paths.key).st_mode) == 0o600
    assert not (tmp_path / "k" / "ca.key").exists()
    assert b"BEGIN PRIVATE KEY" in paths.key.read_bytes()
    chain = x509.load_pem_x509_certificates(paths.chain.read_bytes())
    trust = x509.load_pem_x509_certificates(paths.trust.read_bytes())
    assert len(chain) == 2 and trust == [chain[1]]


def test_generate_refuses_overwrite_and_keep_ca(tmp_path: Path) -> None:
    generate(tmp_path)
    before = (tmp_path / "signing.key").read_bytes()
    with pytest.raises(KeyFileError, match="overwrite"):
        generate(tmp_path)
    assert (tmp_path / "signing.key").read_bytes() == before
    generate(tmp_path, overwrite=True, keep_ca=True, alg="es256")
    assert (tmp_path / "signing.key").read_bytes() != before
    assert stat.S_IMODE(os.stat(tmp_path / "ca.key").st_mode) == 0o600


def test_generate_rejects_unknown_alg(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="ed25519, es256"):
        generate(tmp_path, alg="rsa")


@pytest.mark.parametrize("alg", ["ed25519", "es256"])
def test_chain_extensions_and_issuer(tmp_path: Path, alg: str) -> None:
    paths = generate(tmp_path, alg=alg)
    leaf, ca_cert = x509.load_pem_x509_certificates(paths.chain.read_bytes())
    ext = leaf.extensions
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ext.get_extension_for_class(x509.AuthorityKeyIdentifier)
    ext.get_extension_for_class(x509.SubjectKeyIdentifier)
    eku = list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in eku and OID_DOCUMENT_SIGNING in eku
    assert leaf.version == x509.Version.v3
    ca_ext = ca_cert.extensions
    assert ca_ext.get_extension_for_class(x509.BasicConstraints).value.ca is True
    ca_ku = ca_ext.get_extension_for_class(x509.KeyUsage).value
    assert ca_ku.key_cert_sign and ca_ku.crl_sign
    ca_ext.get_extension_for_class(x509.SubjectKeyIdentifier)
    leaf.verify_directly_issued_by(ca_cert)  # raises if not
    assert preflight([leaf, ca_cert], serialization.load_pem_private_key(paths.key.read_bytes(), None)) == []


# --- preflight -------------------------------------------------------------------------------------------------
def test_preflight_ok(ca) -> None:
    assert _problems(ca) == []


def test_preflight_missing_aki(ca) -> None:
    assert any("Authority Key Identifier" in p for p in _problems(ca, aki=False))


def test_preflight_missing_ski(ca) -> None:
    assert any("Subject Key Identifier" in p for p in _problems(ca, ski=False))


def test_preflight_leaf_is_ca(ca) -> None:
    assert any("CA=true" in p for p in _problems(ca, is_ca=True))


def test_preflight_no_eku(ca) -> None:
    assert any("no extended key usage" in p for p in _problems(ca, eku=None))


def test_preflight_wrong_eku(ca) -> None:
    assert any("not usable for C2PA" in p for p in _problems(ca, eku=(ExtendedKeyUsageOID.SERVER_AUTH,)))


def test_preflight_no_digital_signature(ca) -> None:
    assert any("digitalSignature" in p for p in _problems(ca, digital_signature=False))


def test_preflight_expired_says_dates(ca) -> None:
    probs = _problems(ca, not_before=NOW - dt.timedelta(days=20), not_after=NOW - dt.timedelta(days=2))
    msg = next(p for p in probs if "expired" in p)
    assert (NOW - dt.timedelta(days=2)).strftime("%Y-%m-%d") in msg


def test_preflight_not_yet_valid(ca) -> None:
    probs = _problems(ca, not_before=NOW + dt.timedelta(days=2), not_after=NOW + dt.timedelta(days=20))
    assert any("not yet valid" in p for p in probs)


def test_preflight_mismatched_key(ca) -> None:
    ca_key, ca_cert = ca
    _, leaf = _leaf(ca_key, ca_cert)
    assert any("does not match" in p for p in preflight([leaf, ca_cert], ed25519.Ed25519PrivateKey.generate()))


def test_preflight_unsupported_algorithm(ca) -> None:
    ca_key, ca_cert = ca
    rkey = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    _, leaf = _leaf(ca_key, ca_cert, key=rkey)
    probs = preflight([leaf, ca_cert], rkey)
    assert any("unsupported key algorithm" in p and "es256" in p for p in probs)


def test_preflight_lists_every_problem_and_load_raises(ca, tmp_path: Path) -> None:
    ca_key, ca_cert = ca
    key, leaf = _leaf(ca_key, ca_cert, aki=False, eku=None, is_ca=True)
    assert len(preflight([leaf, ca_cert], key)) >= 3
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    chain_pem = leaf.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(KeyFileError) as info:
        Signer.from_pem(key_pem, chain_pem)
    text = str(info.value)
    assert "Authority Key Identifier" in text and "CA=true" in text and "extended key usage" in text
    assert "PRIVATE KEY" not in text


# --- loading ---------------------------------------------------------------------------------------------------
def test_load_directory_and_files(keydir: Path) -> None:
    s1 = Signer.load(keydir)
    s2 = Signer.load(keydir / "signing.key", keydir / "chain.pem")
    assert s1.alg == s2.alg == "ed25519" and s1.jws_alg == "EdDSA"
    assert len(s1.chain) == 2
    assert len(s1.x5c) == 1  # self-signed root left out


def test_garbage_key_is_keyfileerror(tmp_path: Path, keydir: Path) -> None:
    bad = tmp_path / "bad.key"
    fd = os.open(bad, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"this is not a key\n")
    os.close(fd)
    with pytest.raises(KeyFileError) as info:
        Signer.load(bad, keydir / "chain.pem")
    assert str(bad) in str(info.value)


def test_corrupt_pem_key_is_keyfileerror(tmp_path: Path, keydir: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    bad.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a readable PEM private key"):
        Signer.load(bad, keydir / "chain.pem")


def test_encrypted_key_is_keyfileerror(tmp_path: Path, keydir: Path) -> None:
    key = serialization.load_pem_private_key((keydir / "signing.key").read_bytes(), None)
    enc = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    p = tmp_path / "enc.key"
    p.write_bytes(enc)
    p.chmod(0o600)
    with pytest.raises(KeyFileError, match="encrypted") as info:
        Signer.load(p, keydir / "chain.pem")
    assert str(p) in str(info.value)


def test_garbage_chain_and_missing_files(tmp_path: Path, keydir: Path) -> None:
    chain = tmp_path / "chain.pem"
    chain.write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(KeyFileError, match="certificate"):
        Signer.load(keydir / "signing.key", chain)
    with pytest.raises(KeyFileError, match="not found"):
        Signer.load(tmp_path / "missing")


def test_readable_key_warns(tmp_path: Path) -> None:
    generate(tmp_path)
    (tmp_path / "signing.key").chmod(0o644)
    with pytest.warns(UserWarning, match="0600"):
        Signer.load(tmp_path)


def test_private_key_mode_no_warning(keydir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Signer.load(keydir)


def test_repr_has_no_key_material(keydir: Path) -> None:
    s = Signer.load(keydir)
    key_pem = (keydir / "signing.key").read_text()
    body = "".join(key_pem.strip().splitlines()[1:-1])
    for text in (repr(s), str(s)):
        assert "PRIVATE" not in text and body[:16] not in text and body not in text
    assert "ed25519" in repr(s)


# --- JWS signatures --------------------------------------------------------------------------------------------
def test_ed25519_signature(signer: Signer) -> None:
    sig = signer.sign(b"hello")
    assert len(sig) == 64
    assert verify_jws_signature(signer.chain[0], "EdDSA", b"hello", sig)
    assert not verify_jws_signature(signer.chain[0], "EdDSA", b"hellO", sig)
    assert not verify_jws_signature(signer.chain[0], "ES256", b"hello", sig)


def test_es256_signature_is_raw_and_verifies(tmp_path: Path) -> None:
    generate(tmp_path, alg="es256")
    s = Signer.load(tmp_path)
    assert s.alg == "es256" and s.jws_alg == "ES256"
    sig = s.sign(b"payload")
    assert isinstance(sig, bytes) and len(sig) == 64  # r||s, not DER
    assert verify_jws_signature(s.chain[0], "ES256", b"payload", sig)
    assert not verify_jws_signature(s.chain[0], "ES256", b"payload!", sig)
    assert not verify_jws_signature(s.chain[0], "ES256", b"payload", sig[:-1])
    # interoperates: cryptography verifies the DER form of r||s
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    s.chain[0].public_key().verify(der, b"payload", ec.ECDSA(hashes.SHA256()))
    assert TrustStore.empty().verify_signature(s.chain[0], "ES256", b"payload", sig)


# --- trust -----------------------------------------------------------------------------------------------------
def test_truststore_load_and_pem(keydir: Path, other_keydir: Path) -> None:
    t = TrustStore.load([keydir, other_keydir / "trust.pem"])
    assert len(t.anchors) == 2
    assert t.pem().count("BEGIN CERTIFICATE") == 2
    assert TrustStore.load(keydir).anchors == TrustStore.load(str(keydir / "trust.pem")).anchors
    assert TrustStore.empty().anchors == []
    with pytest.raises(KeyFileError):
        TrustStore.load(keydir / "signing.key")


def test_check_chain(signer: Signer, trust: TrustStore, other_trust: TrustStore) -> None:
    ok, why = trust.check_chain(signer.chain)
    assert ok, why
    ok, why = trust.check_chain(signer.chain[:1])  # leaf only (as in x5c)
    assert ok, why
    ok, why = other_trust.check_chain(signer.chain[:1])
    assert not ok and "not among" in why
    ok, why = TrustStore.empty().check_chain(signer.chain)
    assert not ok
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3000)
    ok, why = trust.check_chain(signer.chain, at=later)
    assert not ok and "expired" in why


def test_check_chain_wrong_order(signer: Signer, trust: TrustStore, other_keydir: Path) -> None:
    other = Signer.load(other_keydir)
    ok, why = trust.check_chain([signer.chain[0], other.chain[1]])
    assert not ok and "not signed by" in why
