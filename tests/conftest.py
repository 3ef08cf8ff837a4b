"""Shared fixtures: one key set per test session (a local CA + leaf, as `kzlabel keygen` makes them)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from kzlabel import Signer, TrustStore
from kzlabel.keys import generate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
import pgcluster  # noqa: E402 - fixtures/ is put on the path just above

# Property tests explore fresh random cases on a developer's machine (that is how they find bugs: a byte flip in a
# TIFF's IFD once did) and replay a fixed sequence in CI, so a merge is never failed by a case no one has seen.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


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


@pytest.fixture(scope="session")
def postgres() -> Iterator[pgcluster.Cluster]:
    """A real PostgreSQL server for the session (a throwaway cluster on a Unix socket); missing binaries fail."""
    with pgcluster.cluster() as server:
        yield server


@pytest.fixture
def pg_url(postgres: pgcluster.Cluster) -> str:
    """The URL of a new, empty database on the session's server."""
    return postgres.new_database()
