"""What every bench section shares: a timer and where the test faces are."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def testdata_dir() -> Path:
    """The pinned test faces (``make testdata``), or ``$EDGE_TESTDATA``."""
    return Path(os.environ.get("EDGE_TESTDATA", ROOT / ".cache" / "testdata"))


def timed(fn: Callable[[], object], n: int, warmup: int = 5) -> tuple[float, float]:
    """Mean and p95 in milliseconds of ``n`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        times[i] = (time.perf_counter() - t0) * 1e3
    return float(times.mean()), float(np.percentile(times, 95))
