"""Shared fixtures: the pinned test faces and the models folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
