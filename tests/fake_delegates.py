"""Fake Edge TPU delegate loaders for the probe's child process (the hardware edge).

Named as ``tests.fake_delegates:NAME`` in ``edge.perception.tpu_probe.PROBE_LOADER``.
"""

from __future__ import annotations

import os
import signal
from typing import Any


def crash(library: str) -> Any:
    """What a libedgetpu built for another TensorFlow does: the process dies of SIGSEGV."""
    os.kill(os.getpid(), signal.SIGSEGV)


def refuse(library: str) -> Any:
    """What load_delegate does with no Coral plugged in."""
    raise ValueError(f"Failed to load delegate from {library}")
