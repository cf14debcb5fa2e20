"""Shared fixtures: the pinned test faces and the models folder."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.broker import Broker, Pki, make_pki

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = Path(os.environ.get("EDGE_TESTDATA", ROOT / ".cache" / "testdata"))


@pytest.fixture(scope="session")
def testdata() -> Path:
    """Folder of test images extracted from pinned PyPI packages (``make testdata``)."""
    if not (TESTDATA / ".complete").exists():
        pytest.fail(f"test images missing in {TESTDATA}: run `make testdata`")
    return TESTDATA


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return ROOT / "models"


# --- a real Mosquitto on a free loopback port (tests/broker.py) ----------------------


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A plain Mosquitto on 127.0.0.1:<free port>, persistence on; stopped after the test."""
    b = Broker(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throw-away CA with a server cert (127.0.0.1) and client certs dev-1, dev-2, central."""
    return make_pki(tmp_path_factory.mktemp("pki"), ("dev-1", "dev-2", "central"))


@pytest.fixture
def tls_broker(tmp_path: Path, test_pki: Pki) -> Iterator[Broker]:
    """Mosquitto requiring client certificates (CN becomes the username) on a free port."""
    b = Broker(tmp_path / "tls-broker", tls=test_pki.server)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    """Factory for extra brokers (``tls=``, ``acl=``); each is stopped after the test."""
    made: list[Broker] = []

    def make(name: str = "broker", **kw: Any) -> Broker:
        b = Broker(tmp_path / f"mb-{name}", **kw)
        made.append(b)
        return b.start()

    try:
        yield make
    finally:
        for b in made:
            b.stop()
