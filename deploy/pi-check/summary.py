#!/usr/bin/env python3
"""The `make pi-check` summary: the device venv's stack, faces arm64 vs x86-64, tests.

Reads what deploy/pi-check/inside.sh wrote (copied to .cache/pi-check/) and the
host's ``edge embed --json`` of the same faces. Fails if the float pipeline does
not give the same faces with embeddings within ``FLOAT_COSINE_MIN`` of x86-64,
or if any test run inside the root failed. int8 differences are reported only:
int8 CPU kernels differ between ARM and x86 by design (see the README).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

FLOAT_COSINE_MIN = 0.9999  # measured 0.99999+ (README); float kernels differ in rounding only


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def site(module_file: str) -> Path:
    """The folder a module was imported from (a package's or a single extension's)."""
    p = Path(module_file)
    return p.parent.parent if p.name == "__init__.py" else p.parent


def centre(face: Any) -> Any:
    x0, y0, x1, y1 = face["box"]
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2])


def compare(arm: Any, x86: Any) -> tuple[list[str], float]:
    """Lines per image and face; the smallest embedding cosine over matched faces."""
    lines, worst = [], 1.0
    for a_img, x_img in zip(arm["images"], x86["images"], strict=True):
        name = Path(a_img["image"]).name
        af, xf = a_img["faces"], x_img["faces"]
        lines.append(f"  {name}: {len(af)} faces on arm64, {len(xf)} on x86-64")
        if len(af) != len(xf):
            worst = -1.0
        for a in af:  # boxes are x0, y0, x1, y1: match by the nearest centre
            best = min(xf, key=lambda x: float(np.linalg.norm(centre(x) - centre(a))), default=None)
            if best is None:
                continue
            cos = float(np.dot(a["embedding"], best["embedding"]))
            worst = min(worst, cos)
            lines.append(f"    box {[round(v) for v in a['box']]}: score {a['score']:.4f} arm64 / "
                         f"{best['score']:.4f} x86-64 (|d| {abs(a['score'] - best['score']):.4f}), "
                         f"embedding cosine {cos:.6f}")
    return lines, worst


def test_lines(out: Path) -> tuple[list[str], bool]:
    lines, ok = [], True
    for f in sorted(out.glob("tests-*.txt")):
        text = f.read_text().strip().splitlines()
        last = next((x for x in reversed(text) if re.search(r"\d+ (passed|failed|error)", x)), "no result")
        ok = ok and "failed" not in last and "error" not in last and "passed" in last
        lines.append(f"  {f.stem[6:]}: {last.strip('= ')}")
    return lines, ok and bool(lines)


def procsubset(out: Path) -> bool:
    """edge.service's ProcSubset=pid hides /proc/cpuinfo: the same faces without it?"""
    full, hidden = out / "embed-full-proc-aarch64", out / "embed-procsubset-aarch64"
    print("without /proc/cpuinfo (ProcSubset=pid), float32, arm64 against arm64 with it:")
    lines, worst = compare(load(hidden.with_suffix(".json")), load(full.with_suffix(".json")))
    print("\n".join(line.replace("x86-64", "with cpuinfo") for line in lines))
    secs = [float(p.with_suffix(".seconds").read_text()) for p in (hidden, full)]
    print(f"  edge embed took {secs[0]:.1f} s without /proc/cpuinfo, {secs[1]:.1f} s with it "
          f"(x{secs[0] / secs[1]:.2f}; emulated, so a ratio only)")
    noise = [x for x in hidden.with_suffix(".stderr").read_text().splitlines()
             if re.search(r"cpuinfo|xnnpack|error", x, re.I)]
    print("  stderr: " + ("; ".join(noise[:5]) if noise else "nothing about cpuinfo or XNNPACK"))
    return worst >= FLOAT_COSINE_MIN


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--seconds", type=int, required=True)
    ap.add_argument("--qemu-cpu", required=True)
    args = ap.parse_args(argv)
    out = args.out
    v = load(out / "versions.json")
    print(f"pi-check summary ({args.seconds} s; arm64 Debian 12 root under qemu-user, "
          f"QEMU_CPU={args.qemu_cpu}; full log {args.log})")
    print(f"device venv ({v['venv']}): python {v['python']} on {v['machine']}, "
          f"numpy {v['numpy']} from {site(v['numpy_file'])}, "
          f"cv2 {v['cv2']} from {site(v['cv2_file'])}, "
          f"ai-edge-litert {v['ai_edge_litert']}")
    pip_list = (out / "venv-packages.txt").read_text().split()
    print("pip-installed in the venv: " + ", ".join(
        f"{n}=={ver}" for n, ver in zip(pip_list[4::2], pip_list[5::2], strict=False)))
    selftest = (out / "selftest.txt").read_text().strip().splitlines()
    print("edge selftest (simulation): " + (selftest[-1] if selftest else "no output"))
    ok = bool(selftest) and "FAILED" not in selftest[-1]
    worst_float = 1.0
    for variant, arm_name, x86_name in (("float32", "embed-aarch64.json", "embed-x86_64.json"),
                                        ("int8", "embed-int8-aarch64.json",
                                         "embed-int8-x86_64.json")):
        arm, x86 = load(out / arm_name), load(out / x86_name)
        print(f"faces, {variant} ({arm['models']['detector']} + {arm['models']['embedder']}):")
        lines, worst = compare(arm, x86)
        print("\n".join(lines))
        if variant == "float32":
            worst_float = worst
    procsubset_ok = procsubset(out)
    tlines, tests_ok = test_lines(out)
    print("tests inside the root:")
    print("\n".join(tlines))
    float_ok = worst_float >= FLOAT_COSINE_MIN
    if not float_ok:
        print(f"FAIL: float embeddings differ (worst cosine {worst_float:.6f} < {FLOAT_COSINE_MIN})")
    verdict = ok and tests_ok and float_ok and procsubset_ok
    print("pi-check: " + ("PASSED" if verdict else "FAILED"))
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
