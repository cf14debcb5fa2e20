"""Prove the Edge TPU delegate works in a child process before the firmware uses it.

A libedgetpu built against an older TensorFlow than the TFLite runtime can
segfault inside ``load_delegate`` or the first ``invoke``; a segfault skips every
Python ``except``, and systemd would restart the service into the same crash.
So before the delegate is loaded in the firmware's own process, a child
(``python -m edge.perception.tpu_probe MODEL``) loads it, builds an interpreter
for the compiled model and runs it once. If the child dies, the firmware says
so and runs on the CPU; if it works, the firmware loads the delegate itself.

Before any of that, :func:`library_present` looks for ``libedgetpu.so.1``: with
no Edge TPU runtime installed, ``load_delegate`` is never called (it would print
an upstream ``Delegate.__del__`` error on stderr for nothing).

The supported pair, also in the README: ai-edge-litert :data:`TFLITE_RUNTIME`
with libedgetpu built for the same TensorFlow (see :data:`LIBEDGETPU_PAIR`).
"""

from __future__ import annotations

import argparse
import ctypes.util
import importlib
import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from edge.perception.runtime import EDGETPU_LIBRARY, _interpreter_module

TFLITE_RUNTIME = "ai-edge-litert 2.3.0"
LIBEDGETPU_PAIR = ("libedgetpu1-std built from google-coral/libedgetpu at the TensorFlow "
                   "release of ai-edge-litert 2.3.0 (not Coral's 16.0 package, built for "
                   "TensorFlow 2.5)")
# The loader the child uses, as "module:function"; tests point it at a fake delegate.
PROBE_LOADER = "edge.perception.runtime:default_delegate_loader"
PROBE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    reason: str


@cache
def library_present(library: str = EDGETPU_LIBRARY) -> bool:
    """Whether the dynamic linker can find the Edge TPU runtime, without loading it."""
    stem = library.removeprefix("lib").split(".so")[0]
    return ctypes.util.find_library(stem) is not None


def _resolve(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def probe(model: Path, *, loader: str | None = None, timeout: float = PROBE_TIMEOUT_S
          ) -> ProbeResult:
    """Load the delegate and run ``model`` once in a child; never crashes the caller."""
    spec = loader or PROBE_LOADER
    cmd = [sys.executable, "-m", "edge.perception.tpu_probe", "--loader", spec, str(model)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return ProbeResult(False, f"the Edge TPU runtime hung for {timeout:.0f} s on "
                                  f"{model.name} in a probe process; {_fix()}")
    if r.returncode < 0:
        try:
            sig = signal.Signals(-r.returncode).name
        except ValueError:
            sig = f"signal {-r.returncode}"
        return ProbeResult(False, f"the Edge TPU runtime crashed ({sig}) loading {model.name} "
                                  f"in a probe process; {_fix()}")
    try:
        report = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        report = {"ok": False, "error": (r.stderr.strip() or "no output")[-300:]}
    if r.returncode == 0 and report.get("ok"):
        return ProbeResult(True, f"{EDGETPU_LIBRARY} ran {model.name} in a probe process")
    return ProbeResult(False, f"{EDGETPU_LIBRARY} did not load ({report.get('error')})")


def _fix() -> str:
    return (f"install a libedgetpu built for the TFLite runtime in use ({TFLITE_RUNTIME}): "
            f"{LIBEDGETPU_PAIR}; running on the CPU")


def _child(model: Path, loader_spec: str) -> int:
    """In the probe process: load, build, invoke once; one JSON line on stdout."""
    import numpy as np

    try:
        delegate = _resolve(loader_spec)(EDGETPU_LIBRARY)
        interp = _interpreter_module().Interpreter(
            model_path=str(model), experimental_delegates=[delegate])
        interp.allocate_tensors()
        d = interp.get_input_details()[0]
        interp.set_tensor(d["index"], np.zeros(d["shape"], dtype=d["dtype"]))
        interp.invoke()
    except Exception as e:  # report any failure to the parent as data
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
        return 1
    print(json.dumps({"ok": True}))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Edge TPU probe (run by the firmware)")
    ap.add_argument("--loader", default=PROBE_LOADER)
    ap.add_argument("model", type=Path)
    args = ap.parse_args(argv)
    return _child(args.model, args.loader)


if __name__ == "__main__":
    sys.exit(main())
