"""Shared fixtures: one key set per test session (a local CA + leaf, as `kzlabel keygen` makes them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kzlabel import Signer, TrustStore
from kzlabel.keys import generate


@pytest.fixture(scope="session")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    generate(d, organization="Test Owner LLP")
    return d


@pytest.fixture(scope="session")
def other_keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("otherkeys")
    generate(d, organization="Somebody Else")
    return d


@pytest.fixture(scope="session")
def signer(keydir: Path) -> Signer:
    return Signer.load(keydir)


@pytest.fixture(scope="session")
def trust(keydir: Path) -> TrustStore:
    return TrustStore.load([keydir])


@pytest.fixture(scope="session")
def other_trust(other_keydir: Path) -> TrustStore:
    return TrustStore.load([other_keydir])
