"""Data-hashed signing through the native library c2pa-python loads: placeholder size, the caller's hash, errors."""

from __future__ import annotations

import base64
import hashlib
import io

import c2pa
import pytest

from kzlabel.keys import Signer, TrustStore
from kzlabel.layers import c2pa as layer
from kzlabel.layers import c2pa_native as native

ASSET = b"an asset the C2PA library has no handler for: " + bytes(range(256))
TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJ4IjoxfQ.c2ln"


def _sign(signer: Signer, asset: bytes, at: int, seen: list[int]) -> bytes:
    def binding(size: int) -> native.DataHash:
        seen.append(size)
        return native.DataHash(hashlib.sha256(asset).digest(), [(at, size)])

    return layer.sign_data_hashed(signer, binding, label_claims={"token": TOKEN})


def test_store_has_the_placeholder_size_and_the_callers_binding(signer: Signer, trust: TrustStore) -> None:
    seen: list[int] = []
    store = _sign(signer, ASSET, len(ASSET), seen)
    assert seen == [len(store)]  # the exclusion the caller wrote covers exactly the store
    rep = layer.read(store, layer.STORE_MIME, trust)
    assert "claimSignature.validated" in rep.codes and rep.label_token == TOKEN
    assert rep.data_hash is not None
    assert rep.data_hash["exclusions"] == [{"start": len(ASSET), "length": len(store)}]
    assert base64.b64decode(rep.data_hash["hash"]) == hashlib.sha256(ASSET).digest()
    assert rep.actions[0] == "c2pa.created"


def test_c2pa_rs_recomputes_the_same_hash(signer: Signer, trust: TrustStore) -> None:
    """The hash kzlabel computed is the one c2pa-rs computes over the asset with the store at the exclusion."""
    store = _sign(signer, ASSET, len(ASSET), [])

    def codes(asset: bytes) -> list[str]:
        with c2pa.Context.from_dict({"verify": {"verify_trust": False}}) as ctx:
            reader = c2pa.Reader.try_create("application/octet-stream", io.BytesIO(asset), store, ctx)
            assert reader is not None
            try:
                return [e["code"] for e in reader.get_validation_results()["activeManifest"]["success"]]
            finally:
                reader.close()

    assert "assertion.dataHash.match" in codes(ASSET + store)
    assert "assertion.dataHash.match" not in codes(ASSET[:-1] + b"X" + store)


def test_closed_builder_is_an_error_not_a_crash(signer: Signer) -> None:
    builder = c2pa.Builder({"claim_generator_info": [{"name": "t", "version": "1"}], "assertions": []})
    builder.close()
    with pytest.raises(native.NativeError, match="closed"):
        native.placeholder(builder, 10000)


def test_native_failure_carries_the_library_message() -> None:
    builder = c2pa.Builder({"claim_generator_info": [{"name": "t", "version": "1"}], "assertions": []})
    try:
        with pytest.raises(native.NativeError, match="placeholder failed: .*unsupported"):
            native.placeholder(builder, 10000, "nonsense/x")
    finally:
        builder.close()
