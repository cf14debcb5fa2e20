"""The model manifest (``models/manifest.json``) as typed, validated records.

The manifest is the single statement of which model files the firmware may
load: their hashes, tensor layouts, quantisation and provenance. Loading only
parses and validates; ``verify_hashes`` reads the files and is called by the
runtime before a model is opened and by ``edge selftest``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import ModelError, ModelHashError, ModelMissingError

SCHEMA = "edge.models/1"
MANIFEST_NAME = "manifest.json"
SYSTEM_MODELS_DIR = Path("/usr/share/edge/models")
ROLES = ("detector", "embedder", "landmarks")
ARCHITECTURES = ("x86_64", "aarch64")  # platform.machine() of the build host and the Pi
VARIANTS = ("float32", "fp16", "int8")
# The recogniser family used when nothing names another (config ``models.embedder``,
# ``--embedder``): MobileFace V2, whose provenance verdict makes it an eligible default
# (MIT weights; no published training-data terms forbid the use) and which the model
# card measures far stronger than dlib's descriptor. ``dlib_resnet_v1`` stays selectable.
DEFAULT_EMBEDDER = "mobileface_v2"
_FIX = "rebuild with `make models` or reinstall the firmware package"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor as the manifest records it."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    # (scale, zero_point) for integer tensors, None for float tensors.
    quantization: tuple[float, int] | None = None


@dataclass(frozen=True)
class ModelEntry:
    """One model file and everything needed to use it correctly."""

    model_id: str
    file: str
    sha256: str
    role: str
    family: str
    variant: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    quantization: str = ""
    preprocessing: str = ""
    source: Mapping[str, Any] = field(default_factory=dict)
    licence: str = ""
    build_command: str = ""
    edgetpu_file: str | None = None
    # Recorded by `make edgetpu` (models/build_edgetpu.py) with the compiler's op report.
    edgetpu_sha256: str | None = None
    # The CPU variant choice per architecture (ARCHITECTURES); ``cpu_preferred`` is
    # the one for the machine that loaded the manifest.
    cpu_preferred_by_arch: Mapping[str, bool] = field(default_factory=dict)
    cpu_preferred: bool = False
    # Role-specific blocks kept as parsed JSON: "decode" for detectors,
    # alignment template and embedding size for embedders, and anything newer.
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """All entries of one models folder, and the measured model cards (keyed by family).

    The cards (``model_cards``, written by ``models/model_card.py``) are kept as parsed
    JSON; ``edge.accountability.governance`` reads the threshold floor from them.
    """

    models_dir: Path
    models: Mapping[str, ModelEntry]
    cards: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def get(self, model_id: str) -> ModelEntry:
        try:
            return self.models[model_id]
        except KeyError:
            raise ModelMissingError(
                f"model '{model_id}' is not in {self.models_dir / MANIFEST_NAME}; "
                f"known: {', '.join(sorted(self.models))}"
            ) from None

    def path(self, entry: ModelEntry) -> Path:
        return self.models_dir / entry.file

    def edgetpu_path(self, entry: ModelEntry) -> Path | None:
        return self.models_dir / entry.edgetpu_file if entry.edgetpu_file else None

    def family(self, family: str) -> list[ModelEntry]:
        found = [e for e in self.models.values() if e.family == family]
        if not found:
            families = sorted({e.family for e in self.models.values()})
            raise ModelMissingError(
                f"no model of family '{family}' in {self.models_dir / MANIFEST_NAME}; "
                f"known families: {', '.join(families)}"
            )
        return found

    def variant(self, family: str, variant: str) -> ModelEntry:
        for e in self.family(family):
            if e.variant == variant:
                return e
        raise ModelMissingError(
            f"family '{family}' has no '{variant}' variant in {self.models_dir / MANIFEST_NAME}"
        )

    def cpu_preferred(self, family: str) -> ModelEntry:
        """The variant marked fastest-accurate on this architecture's CPU; else the float one."""
        entries = self.family(family)
        for e in entries:
            if e.cpu_preferred:
                return e
        for e in entries:
            if e.variant == "float32":
                return e
        return entries[0]

    def verify_hashes(self, model_ids: Iterable[str] | None = None) -> None:
        """Check that each listed file exists and has the recorded sha256.

        An Edge TPU file (compiled by ``make edgetpu`` on a build host) is
        optional; when it is present it must have the hash the manifest records.
        """
        for model_id in model_ids if model_ids is not None else sorted(self.models):
            entry = self.get(model_id)
            verify_entry(self.models_dir, entry)
            tpu = self.edgetpu_path(entry)
            if tpu is not None and tpu.is_file():
                verify_edgetpu(self.models_dir, entry)


def cpu_preferred_by_arch(variant: str, fastest_here: bool) -> dict[str, bool]:
    """What a model build records: its own measurement for this machine's architecture;
    float32 on the others (the only variant whose scores match across CPUs; see the
    manifest's ``cpu_preferred_basis``) until a build on that architecture measures it."""
    out = {arch: variant == "float32" for arch in ARCHITECTURES}
    out[platform.machine()] = fastest_here
    return out


def verify_entry(models_dir: Path, entry: ModelEntry) -> None:
    path = models_dir / entry.file
    try:
        digest = sha256_file(path)
    except FileNotFoundError:
        raise ModelMissingError(
            f"model file {path} (model '{entry.model_id}') is missing; {_FIX}"
        ) from None
    except OSError as e:
        raise ModelMissingError(f"model file {path} cannot be read ({e}); {_FIX}") from e
    if digest != entry.sha256:
        raise ModelHashError(
            f"model file {path} (model '{entry.model_id}') has sha256 {digest}, "
            f"manifest says {entry.sha256}; the file is corrupt or was replaced: {_FIX}"
        )


def verify_edgetpu(models_dir: Path, entry: ModelEntry) -> None:
    """The entry's compiled Edge TPU file has the sha256 `make edgetpu` recorded."""
    if entry.edgetpu_file is None:
        raise ModelMissingError(f"model '{entry.model_id}' has no Edge TPU file")
    if entry.edgetpu_sha256 is None:
        raise ModelHashError(
            f"{entry.edgetpu_file} has no sha256 in the manifest: Edge TPU files come from "
            "`make edgetpu` on an x86-64 build host, which records them; never copy one in by hand"
        )
    verify_entry(models_dir, ModelEntry(
        model_id=entry.model_id, file=entry.edgetpu_file, sha256=entry.edgetpu_sha256,
        role=entry.role, family=entry.family, variant=entry.variant,
        inputs=entry.inputs, outputs=entry.outputs))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_models_dir() -> Path:
    """``$EDGE_MODELS_DIR``, else the checkout's ``models/``, else the system folder."""
    env = os.environ.get("EDGE_MODELS_DIR")
    if env:
        return Path(env)
    repo_models = Path(__file__).resolve().parents[2] / "models"
    if (repo_models / MANIFEST_NAME).is_file():
        return repo_models
    return SYSTEM_MODELS_DIR


def load_manifest(models_dir: Path | str | None = None) -> Manifest:
    """Read and validate ``<models_dir>/manifest.json``."""
    folder = Path(models_dir) if models_dir is not None else default_models_dir()
    path = folder / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelMissingError(
            f"model manifest {path} is missing; set EDGE_MODELS_DIR or {_FIX}"
        ) from None
    except (OSError, ValueError) as e:
        raise ModelError(f"model manifest {path} is unreadable ({e}); {_FIX}") from e
    return parse_manifest(raw, folder)


def parse_manifest(raw: object, models_dir: Path) -> Manifest:
    where = models_dir / MANIFEST_NAME
    if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
        raise ModelError(f"{where}: expected an object with schema '{SCHEMA}'")
    models = raw.get("models")
    if not isinstance(models, dict):
        raise ModelError(f"{where}: 'models' must be an object")
    entries = {mid: _entry(mid, body, where) for mid, body in models.items()}
    cards = raw.get("model_cards", {})
    if not isinstance(cards, dict):
        raise ModelError(f"{where}: 'model_cards' must be an object")
    return Manifest(models_dir=models_dir, models=entries,
                    cards={k: v for k, v in cards.items() if isinstance(v, dict)})


_KNOWN = {
    "file", "sha256", "role", "family", "variant", "inputs", "outputs", "quantization",
    "preprocessing", "source", "licence", "build_command", "edgetpu_file", "cpu_preferred",
    "edgetpu_sha256",
}


def _entry(model_id: str, body: object, where: Path) -> ModelEntry:
    def bad(msg: str) -> ModelError:
        return ModelError(f"{where}: model '{model_id}': {msg}")

    if not isinstance(body, dict):
        raise bad("entry must be an object")
    for key in ("file", "sha256", "role", "family", "variant"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise bad(f"'{key}' must be a non-empty string")
    if body["role"] not in ROLES:
        raise bad(f"role '{body['role']}' is not one of {ROLES}")
    if body["variant"] not in VARIANTS:
        raise bad(f"variant '{body['variant']}' is not one of {VARIANTS}")
    sha = body["sha256"]
    if not _is_sha256(sha):
        raise bad("'sha256' must be 64 lowercase hex digits")
    tpu_sha = body.get("edgetpu_sha256")
    if tpu_sha is not None and not (isinstance(tpu_sha, str) and _is_sha256(tpu_sha)):
        raise bad("'edgetpu_sha256' must be 64 lowercase hex digits")
    if "/" in body["file"] or body["file"].startswith("."):
        raise bad("'file' must be a plain file name inside the models folder")
    edgetpu = body.get("edgetpu_file")
    if edgetpu is not None and not isinstance(edgetpu, str):
        raise bad("'edgetpu_file' must be a string")
    source = body.get("source", {})
    if not isinstance(source, dict):
        raise bad("'source' must be an object")
    preferred = body.get("cpu_preferred", False)
    if isinstance(preferred, bool):  # one choice for every architecture
        by_arch = dict.fromkeys(ARCHITECTURES, preferred)
    elif isinstance(preferred, dict) and all(
            k in ARCHITECTURES and isinstance(v, bool) for k, v in preferred.items()):
        by_arch = dict(preferred)
    else:
        raise bad(f"'cpu_preferred' must be a boolean or an object of booleans by {ARCHITECTURES}")
    return ModelEntry(
        model_id=model_id,
        file=body["file"],
        sha256=sha,
        role=body["role"],
        family=body["family"],
        variant=body["variant"],
        inputs=_tensors(body.get("inputs"), bad, "inputs"),
        outputs=_tensors(body.get("outputs"), bad, "outputs"),
        quantization=str(body.get("quantization", "")),
        preprocessing=str(body.get("preprocessing", "")),
        source=source,
        licence=str(body.get("licence", "")),
        build_command=str(body.get("build_command", "")),
        edgetpu_file=edgetpu,
        edgetpu_sha256=tpu_sha,
        cpu_preferred_by_arch=by_arch,
        cpu_preferred=by_arch.get(platform.machine(), False),
        extra={k: v for k, v in body.items() if k not in _KNOWN},
    )


def _is_sha256(s: str) -> bool:
    return len(s) == 64 and all(c in "0123456789abcdef" for c in s)


def _tensors(raw: object, bad: Any, key: str) -> tuple[TensorSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise bad(f"'{key}' must be a non-empty list")
    specs = []
    for t in raw:
        if not isinstance(t, dict) or not isinstance(t.get("shape"), list):
            raise bad(f"each of '{key}' needs 'name', 'shape' and 'dtype'")
        q = t.get("quantization")
        quant: tuple[float, int] | None = None
        if isinstance(q, dict) and q.get("scale") is not None:
            quant = (float(q["scale"]), int(q.get("zero_point", 0)))
        elif isinstance(q, list | tuple) and len(q) == 2:
            quant = (float(q[0]), int(q[1]))
        specs.append(
            TensorSpec(
                name=str(t.get("name", "")),
                shape=tuple(int(d) for d in t["shape"]),
                dtype=str(t.get("dtype", "")),
                quantization=quant,
            )
        )
    return tuple(specs)
