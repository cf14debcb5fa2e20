"""One wrapper over the TFLite interpreter, whichever package provides it.

``ai_edge_litert`` (NumPy 2) or ``tflite_runtime`` (NumPy 1, Raspberry Pi OS)
are imported lazily, on first use. ``open_model`` picks the backend:

* the ``*_edgetpu.tflite`` variant when that file exists next to the manifest
  with the sha256 ``make edgetpu`` recorded, ``libedgetpu.so.1`` is installed,
  the delegate loads and runs the file in a child process first
  (:mod:`edge.perception.tpu_probe`: a crashing runtime must not take the
  firmware down), and then loads in this process;
* otherwise the variant the manifest marks ``cpu_preferred`` (chosen by
  measurement in ``models/build_detector.py``), run with XNNPACK.

It logs which backend it chose and why; ``TFLiteModel.reason`` keeps the why
for the status topic and ``edge selftest``. Integer I/O is hidden from the
caller: ``run`` takes and returns float32.

An interpreter is not thread-safe: open one ``TFLiteModel`` per thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import BackendError, EdgeError, InferenceError, ModelHashError, ModelMissingError
from edge.perception import input_size
from edge.perception.manifest import Manifest, ModelEntry, verify_edgetpu, verify_entry

log = logging.getLogger(__name__)

EDGETPU_LIBRARY = "libedgetpu.so.1"

# Called with the shared-library name; returns a delegate or raises.
DelegateLoader = Callable[[str], Any]


def _interpreter_module() -> Any:
    """The first importable interpreter module (imported only when needed)."""
    errors = []
    for name in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            return __import__(name, fromlist=["Interpreter"])
        except ImportError as e:  # try the next runtime
            errors.append(f"{name}: {e}")
    raise BackendError(
        "no TFLite runtime importable (" + "; ".join(errors) + "); "
        "install ai-edge-litert (NumPy 2) or tflite-runtime with numpy<2"
    )


_DELEGATES: dict[str, Any] = {}


def default_delegate_loader(library: str) -> Any:
    """Load a TFLite external delegate by shared-library name, once per process.

    The detector and the embedder share one Edge TPU; one delegate (one
    device context) serves both interpreters.
    """
    if library not in _DELEGATES:
        _DELEGATES[library] = _interpreter_module().load_delegate(library)
    return _DELEGATES[library]


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # "edgetpu" or "cpu"
    entry: ModelEntry
    path: Path
    delegate: Any  # the loaded delegate for "edgetpu", else None
    reason: str


def choose_backend(
    manifest: Manifest,
    family: str,
    *,
    variant: str | None = None,
    delegate_loader: DelegateLoader = default_delegate_loader,
) -> BackendChoice:
    """Decide which file and backend to use; loads the delegate only if it can be used.

    ``variant`` pins the CPU variant; the Edge TPU file of the family is still
    preferred when present and loadable, unless a non-int8 variant is pinned.
    """
    cpu_entry = manifest.variant(family, variant) if variant else manifest.cpu_preferred(family)
    tpu_entries = [e for e in manifest.family(family) if e.edgetpu_file]
    if variant and variant != "int8":
        why = f"variant '{variant}' was requested"
    elif not tpu_entries:
        why = f"the manifest lists no Edge TPU file for '{family}'"
    else:
        tpu_entry = tpu_entries[0]
        tpu_path = manifest.edgetpu_path(tpu_entry)
        assert tpu_path is not None  # tpu_entries only holds entries with edgetpu_file
        if not tpu_path.is_file():
            why = (f"{tpu_path.name} is not installed (Edge TPU files are compiled by `make "
                   "edgetpu` on an x86-64 build host with Coral's edgetpu_compiler and shipped "
                   "with the models)")
        elif (problem := _tpu_problem(manifest, tpu_entry, tpu_path, delegate_loader)):
            why = problem
        else:
            try:
                delegate = delegate_loader(EDGETPU_LIBRARY)
            except (OSError, ValueError, RuntimeError, BackendError) as e:
                # ValueError is what load_delegate raises when the library or
                # the device is missing; the reason goes to the log and status.
                why = f"{EDGETPU_LIBRARY} did not load ({e})"
            else:
                return BackendChoice(
                    "edgetpu", tpu_entry, tpu_path, delegate,
                    f"{EDGETPU_LIBRARY} loaded and {tpu_path.name} is present",
                )
    return BackendChoice(
        "cpu", cpu_entry, manifest.path(cpu_entry), None,
        f"{why}; using CPU variant '{cpu_entry.variant}' ({cpu_entry.file})",
    )


# Model files rewritten for another input size, by (sha256, height, width).
_RESIZED: dict[tuple[str, int, int], bytes] = {}


class TFLiteModel:
    """A loaded model: float32 batches in, float32 arrays out."""

    def __init__(
        self, entry: ModelEntry | None, path: Path, backend: str, reason: str,
        interpreter: Any, num_threads: int = 1,
    ) -> None:
        self.entry = entry
        self.num_threads = num_threads
        self.model_id = entry.model_id if entry is not None else path.stem
        self.path = path
        self.backend = backend
        self.reason = reason
        self._interp = interpreter
        inp = interpreter.get_input_details()
        if len(inp) != 1:
            raise InferenceError(f"{path.name}: expected one input tensor, found {len(inp)}")
        self._in = inp[0]
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in self._in["shape"])
        self.input_dtype = np.dtype(self._in["dtype"])
        # Output order follows the manifest (the tensor names it lists) when
        # it can; the interpreter's order is not stable across converters.
        outs = interpreter.get_output_details()
        by_name = {d["name"]: d for d in outs}
        names = [t.name for t in entry.outputs] if entry is not None else []
        if names and all(n in by_name for n in names) and len(names) == len(outs):
            outs = [by_name[n] for n in names]
        self._outs = outs

    def input_multiple(self) -> int:
        """The model's total stride (``input_size.input_multiple``), read from its file."""
        try:
            return input_size.input_multiple(self.path.read_bytes())
        except OSError as e:
            raise ModelMissingError(f"model file {self.path} cannot be read ({e})") from e

    def resized(self, height: int, width: int) -> TFLiteModel:
        """This model on the CPU for a ``(1, height, width, C)`` input (``input_size``).

        The file is read again and checked against the manifest's hash before it is
        rewritten. An Edge TPU model is compiled for one input size: ``BackendError``.
        """
        if self.backend != "cpu":
            raise BackendError(f"{self.model_id} runs on {self.backend}, compiled for "
                               f"{self.input_shape}; only a CPU model changes its input size")
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise ModelMissingError(f"model file {self.path} cannot be read ({e})") from e
        digest = hashlib.sha256(data).hexdigest()
        if self.entry is not None and digest != self.entry.sha256:
            raise ModelHashError(f"model file {self.path} changed on disk since it was opened")
        key = (digest, height, width)
        if key not in _RESIZED:  # every tile worker resizes the same file: rewrite it once
            _RESIZED[key] = input_size.with_input_size(data, height, width)
        content = _RESIZED[key]
        interp = _make_interpreter(self.path, None, self.num_threads, content=content)
        return TFLiteModel(self.entry, self.path, self.backend,
                           f"{self.reason}; input {width}x{height}", interp, self.num_threads)

    def run(self, x: npt.ArrayLike) -> list[npt.NDArray[np.float32]]:
        """Run a float32 batch ``(N, *input_shape[1:])``; returns one array per output."""
        batch = np.asarray(x, dtype=np.float32)
        if batch.shape[1:] != self.input_shape[1:]:
            raise InferenceError(
                f"{self.model_id}: input shape {batch.shape} does not fit {self.input_shape}"
            )
        per_item = [self._run_one(batch[i : i + 1]) for i in range(batch.shape[0])]
        if not per_item:
            return []
        return [np.concatenate(parts, axis=0) for parts in zip(*per_item, strict=True)]

    def _run_one(self, x: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        try:
            self._interp.set_tensor(self._in["index"], _quantise(x, self._in))
            self._interp.invoke()
            return [_dequantise(self._interp.get_tensor(d["index"]), d) for d in self._outs]
        except (ValueError, RuntimeError) as e:
            raise InferenceError(f"{self.model_id} ({self.backend}) failed to run: {e}") from e


def _quantise(x: npt.NDArray[np.float32], detail: dict[str, Any]) -> npt.NDArray[Any]:
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.round(x / np.float32(scale)) + zero
    out: npt.NDArray[Any] = np.clip(q, info.min, info.max).astype(dtype)
    return out


def _dequantise(y: npt.NDArray[Any], detail: dict[str, Any]) -> npt.NDArray[np.float32]:
    if y.dtype == np.float32:
        return y.copy()  # the interpreter reuses its buffers
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - np.float32(zero)) * np.float32(scale)).astype(np.float32)


def open_model(
    manifest: Manifest,
    family: str,
    *,
    variant: str | None = None,
    delegate_loader: DelegateLoader = default_delegate_loader,
    num_threads: int = 2,
    verify: bool = True,
) -> TFLiteModel:
    """Open the best model of ``family`` for this machine (see module docstring)."""
    choice = choose_backend(manifest, family, variant=variant, delegate_loader=delegate_loader)
    if verify:
        verify_entry(manifest.models_dir, choice.entry)  # the int8 source of the TPU file too
    if choice.backend == "edgetpu":
        try:
            interp = _make_interpreter(choice.path, [choice.delegate], num_threads)
        except BackendError as e:
            # A present but unusable TPU should not stop the appliance: fall
            # back to the CPU and say so loudly (status shows backend=cpu).
            log.warning("Edge TPU model %s failed to load (%s); falling back to CPU",
                        choice.path.name, e)
            fallback = choose_backend(manifest, family, variant=variant,
                                      delegate_loader=_refuse(str(e)))
            if verify:
                verify_entry(manifest.models_dir, fallback.entry)
            choice = fallback
            interp = _make_interpreter(choice.path, None, num_threads)
    else:
        interp = _make_interpreter(choice.path, None, num_threads)
    log.info("%s: backend=%s model=%s threads=%d (%s)", family, choice.backend,
             choice.entry.model_id, num_threads, choice.reason)
    return TFLiteModel(choice.entry, choice.path, choice.backend, choice.reason, interp, num_threads)


def open_file(
    path: Path, entry: ModelEntry | None = None, *, num_threads: int = 2,
) -> TFLiteModel:
    """Open one file on the CPU as-is, unchecked (benchmarks and model-build checks)."""
    interp = _make_interpreter(path, None, num_threads)
    return TFLiteModel(entry, path, "cpu", f"file {path.name} opened directly", interp, num_threads)


def available_cpus() -> int:
    """CPUs this process may run on (systemd's CPUAffinity= or a cgroup cpuset narrow it)."""
    return len(os.sched_getaffinity(0))


_PROBED: dict[Path, str | None] = {}


def _tpu_problem(manifest: Manifest, entry: ModelEntry, path: Path,
                 loader: DelegateLoader) -> str | None:
    """Why the present TPU file cannot be used, before anything is loaded here; or None."""
    try:
        verify_edgetpu(manifest.models_dir, entry)
    except EdgeError as e:
        return str(e)
    if loader is not default_delegate_loader:
        return None  # an injected loader (config off, tests) is used as given
    from edge.perception import tpu_probe

    if not tpu_probe.library_present(EDGETPU_LIBRARY):
        # load_delegate is not even tried: it would print an upstream error on stderr.
        return (f"{EDGETPU_LIBRARY} did not load (not installed: `sudo apt install "
                "libedgetpu1-std`, the version the README's Coral section pins)")
    if path not in _PROBED:  # once per file and process: at start and in selftest
        result = tpu_probe.probe(path)
        _PROBED[path] = None if result.ok else result.reason
    return _PROBED[path]


def _refuse(message: str) -> DelegateLoader:
    def loader(library: str) -> Any:
        raise BackendError(f"{library} unusable: {message}")
    return loader


def _make_interpreter(path: Path, delegates: list[Any] | None, num_threads: int, *,
                      content: bytes | None = None) -> Any:
    """An allocated interpreter of the file, or of ``content`` (the file rewritten)."""
    if content is None and not path.is_file():
        raise ModelMissingError(f"model file {path} is missing; rebuild with `make models`")
    module = _interpreter_module()
    source = {"model_path": str(path)} if content is None else {"model_content": content}
    try:
        interp = module.Interpreter(
            **source, experimental_delegates=delegates, num_threads=num_threads,
        )
        interp.allocate_tensors()
    except (ValueError, RuntimeError, OSError, TypeError, AttributeError) as e:
        # TypeError/AttributeError: a delegate object the runtime cannot use.
        raise BackendError(f"cannot load {path.name}: {e}") from e
    return interp


__all__ = [
    "EDGETPU_LIBRARY",
    "BackendChoice",
    "DelegateLoader",
    "TFLiteModel",
    "available_cpus",
    "choose_backend",
    "default_delegate_loader",
    "open_file",
    "open_model",
]
