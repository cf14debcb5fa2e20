"""What a benchmark ran on: figures only mean something with the architecture beside them.

The manifest's ``cpu_preferred`` is chosen per architecture (x86-64 build host,
aarch64 Pi); a figure from qemu-user emulation says nothing about a Pi's speed.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The first "model name" or "Model" line (x86 and Raspberry Pi kernels differ)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return "unknown CPU"
    for key in ("model name", "Model"):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key:
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def describe() -> str:
    from importlib.metadata import PackageNotFoundError, version

    import numpy as np

    try:
        litert = version("ai-edge-litert")
    except PackageNotFoundError:  # tflite-runtime instead
        litert = "not installed"
    return (f"machine: {platform.machine()}, {cpu_model()}, {os.cpu_count()} CPUs; "
            f"python {platform.python_version()}, numpy {np.__version__}, ai-edge-litert {litert}")
