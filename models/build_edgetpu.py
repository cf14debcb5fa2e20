#!/usr/bin/env python3
"""``make edgetpu``: compile the int8 models for the Coral and record them in the manifest.

Coral's ``edgetpu_compiler`` is an x86-64 Linux program (Debian package
``edgetpu-compiler`` from Coral's apt repository, packages.cloud.google.com/apt,
suite coral-edgetpu-stable); it does not run on a Raspberry Pi. So Edge TPU files
are made here, on a build host, and shipped with the models: for each manifest
entry with an ``edgetpu_file``, its int8 source is first checked statically
(``edge.perception.edgetpu_ops``), then compiled; the compiled file's sha256 and
the compiler's per-op mapping report go into the manifest (``edgetpu_sha256``,
``edgetpu_compile``), which the device checks before it loads the file.

An op the compiler leaves on the CPU fails the build (``--allow-cpu-ops`` to
record it anyway): a partly mapped model is slower than the int8 model on the CPU.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from the checkout
    sys.path.insert(0, str(ROOT))

from edge.fsutil import atomic_write  # noqa: E402
from edge.perception.edgetpu_ops import check_model  # noqa: E402
from edge.perception.manifest import MANIFEST_NAME, load_manifest, sha256_file  # noqa: E402

COMPILER = "edgetpu_compiler"
ABSENT = (
    f"{COMPILER} not found. It is Coral's x86-64 build tool (Debian package edgetpu-compiler "
    "from Coral's apt repository: deb https://packages.cloud.google.com/apt coral-edgetpu-stable "
    "main); install it on an x86-64 build host and run `make edgetpu` there, then ship models/ "
    "with the *_edgetpu.tflite files and the updated manifest.json. It cannot run on the "
    "Raspberry Pi. Until then the device runs the int8/float models on the CPU."
)
_ROW = re.compile(r"^(?P<op>[A-Z][A-Z0-9_]+)\s+(?P<count>\d+)\s+(?P<status>\S.*?)\s*$")


class BuildError(Exception):
    pass


def compiler_version(compiler: str) -> str:
    r = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False)
    return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr) else "unknown"


def parse_log(text: str) -> dict[str, Any]:
    """The compiler's operation table and its mapped/CPU counts."""
    ops: list[dict[str, Any]] = []
    in_table = False
    for line in text.splitlines():
        if line.strip().startswith("Operator") and "Status" in line:
            in_table = True
            continue
        if in_table:
            m = _ROW.match(line.strip())
            if m:
                ops.append({"op": m["op"], "count": int(m["count"]), "status": m["status"]})
            elif line.strip() and not line.strip().startswith("-"):
                break  # the first table only (stdout and the .log repeat it)

    def number(label: str) -> int | None:
        m = re.search(rf"{label}:\s*(\d+)", text)
        return int(m[1]) if m else None

    def memory(label: str) -> str | None:
        m = re.search(rf"{label}:\s*(\S+)", text)
        return m[1] if m else None

    mapped = number("Number of operations that will run on Edge TPU")
    cpu = number("Number of operations that will run on CPU")
    if not ops or mapped is None or cpu is None:
        raise BuildError("the compiler's output has no operation table (was --show_operations given?)")
    return {"ops": ops, "mapped": mapped, "cpu": cpu,
            "on_chip_parameters": memory("On-chip memory used for caching model parameters"),
            "off_chip_parameters": memory("Off-chip memory used for streaming uncached model parameters")}


def compile_one(compiler: str, source: Path, out_dir: Path) -> tuple[Path, dict[str, Any]]:
    cmd = [compiler, "--show_operations", "--out_dir", str(out_dir), str(source)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    out = out_dir / f"{source.stem}_edgetpu.tflite"
    if not out.is_file():
        raise BuildError(f"{COMPILER} wrote no {out.name}")
    log = out_dir / f"{source.stem}_edgetpu.log"
    report = parse_log(r.stdout + "\n" + (log.read_text() if log.is_file() else ""))
    return out, report


def build(models_dir: Path, compiler: str, *, allow_cpu_ops: bool = False) -> list[str]:
    """Compile every entry with an ``edgetpu_file``; returns one line per file."""
    manifest = load_manifest(models_dir)
    manifest.verify_hashes()
    targets = [e for e in manifest.models.values() if e.edgetpu_file]
    if not targets:
        raise BuildError(f"no entry of {models_dir / MANIFEST_NAME} names an edgetpu_file")
    version = compiler_version(compiler)
    doc = json.loads((models_dir / MANIFEST_NAME).read_text())
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for entry in sorted(targets, key=lambda e: e.model_id):
            source = manifest.path(entry)
            static = check_model(source.read_bytes())
            if not static.ok:
                raise BuildError(f"{source.name} would not map fully to the Edge TPU: "
                                 + "; ".join(static.failures()[:5]))
            out, report = compile_one(compiler, source, Path(tmp))
            if report["cpu"] and not allow_cpu_ops:
                left = [f"{o['op']} x{o['count']}: {o['status']}" for o in report["ops"]
                        if "Mapped to Edge TPU" not in o["status"]]
                raise BuildError(f"{source.name}: {report['cpu']} ops stay on the CPU: "
                                 + "; ".join(left))
            assert entry.edgetpu_file is not None
            dest = models_dir / entry.edgetpu_file
            shutil.copyfile(out, dest)
            body = doc["models"][entry.model_id]
            body["edgetpu_sha256"] = sha256_file(dest)
            body["edgetpu_compile"] = {"compiler": version, "source_sha256": entry.sha256,
                                       **report}
            lines.append(f"{dest.name}: {report['mapped']} ops on the Edge TPU, "
                         f"{report['cpu']} on the CPU, sha256 {body['edgetpu_sha256'][:12]}")
    atomic_write(models_dir / MANIFEST_NAME, (json.dumps(doc, indent=2) + "\n").encode(), 0o644)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--compiler", default=COMPILER, help="edgetpu_compiler executable")
    ap.add_argument("--allow-cpu-ops", action="store_true",
                    help="record a model even if some ops stay on the CPU")
    args = ap.parse_args(argv)
    compiler = shutil.which(args.compiler)
    if compiler is None:
        print(f"make edgetpu: {ABSENT}", file=sys.stderr)
        return 2
    try:
        for line in build(args.models, compiler, allow_cpu_ops=args.allow_cpu_ops):
            print(line)
    except BuildError as e:
        print(f"make edgetpu: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
