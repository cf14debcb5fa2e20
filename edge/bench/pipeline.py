"""End-to-end figures on a generated 1080p boulevard scene with a private broker.

1. Baseline, in this process: the tiled detector alone on every frame of the
   scene, every tile run (no motion gate, no tracking, no embedding).
2. ``edge run`` as its own process on the scene's video file, replayed as fast as it
   can go (no frame dropped): throughput, alert latency from capture to PUBACK
   (p50/p95) and the process's peak RSS (from wait4).
3. The same firmware on the scene paced as a live 30 fps camera: the share of
   frames it had to drop, i.e. whether it keeps up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.bench.timing import testdata_dir
from edge.perception.detector import BlazeFaceDetector
from edge.perception.tiling import TiledDetector, TilingConfig
from edge.scenario.broker import free_port
from edge.scenario.demo import ROOT, local_broker, prepare
from edge.scenario.render import load_truth, scene_from_truth


def _run_firmware(config: Path, work: Path) -> tuple[dict[str, object], float, float]:
    """Run ``edge run`` to the end of the scene; (summary, wall seconds, peak RSS MB).

    The peak RSS is the firmware's own VmHWM: wait4's ru_maxrss would also count
    the pages the child shared with this process between fork and exec.
    """
    with (work / "bench-run.log").open("wb") as log:
        t0 = time.monotonic()
        rc = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config)],
                            stdout=log, stderr=log, cwd=ROOT, check=False).returncode
        wall = time.monotonic() - t0
    if rc != 0:
        raise SystemExit(f"edge run failed ({rc}); see {work / 'bench-run.log'}")
    summary = json.loads((work / "state" / "summary.json").read_text())
    rss = summary.get("peak_rss_mb")
    return summary, wall, float(rss) if isinstance(rss, int | float) else float("nan")


def _baseline(scene_json: Path, frames: int) -> float:
    """Frames/s of the bare tiled detector (every tile) on the scene's first frames."""
    scene = scene_from_truth(load_truth(scene_json), testdata_dir())
    tiled = TiledDetector(BlazeFaceDetector.from_models_dir(), TilingConfig())
    images = [scene.render(i) for i in range(frames)]
    tiled.detect(images[0])
    t0 = time.perf_counter()
    for img in images:
        tiled.detect(img)
    return frames / (time.perf_counter() - t0)


ROI = "\n[detection]\nroi = [0, 380, 1920, 920]  # the walkway, as an installer would set it\n"


def _report(name: str, summary: dict[str, object], rss: float, wall: float, base_fps: float) -> None:
    fps = summary["throughput_fps"]
    lat = summary["alert_latency_ms"]
    c = summary["counters"]
    assert isinstance(fps, float) and isinstance(lat, dict) and isinstance(c, dict)
    print(f"{name}")
    print(f"{'  throughput':44s} {fps:9.2f} fps  ({fps / base_fps:.2f}x baseline)")
    per_frame = c["tiles_run"] / max(1, c["frames"])
    print(f"{'  tiles or strips run per frame (motion gate)':44s} {per_frame:9.1f}")
    print(f"{'  frames processed / dropped':44s} {c['frames']:9d} / {summary['frames_dropped']}")
    print(f"{'  alerts':44s} {summary['alerts']!s:>9s}")
    print(f"{'  alert latency capture->PUBACK p50 / p95':44s} {lat['p50']!s:>9s} / {lat['p95']} ms"
          f" (n={lat['n']})")
    print(f"{'  peak RSS (VmHWM)':44s} {rss:9.1f} MB")
    print(f"{'  wall time incl. model load':44s} {wall:9.1f} s")


def run(args: argparse.Namespace) -> None:
    seconds = 60
    scene = ("--seconds", str(seconds), "--seed", "21")
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        work = Path(tmp)
        port = free_port()
        with local_broker(work, port):
            full = prepare(work / "full", testdata_dir(), port=port, realtime=False, video=True,
                           scenario=(*scene, "--fps", "15"))
            base_fps = _baseline(full.scene, 60)
            runs = [("edge run, whole frame, lossless replay", full)]
            runs.append(("edge run, walkway ROI, lossless replay",
                         prepare(work / "roi", testdata_dir(), port=port, realtime=False, video=True,
                                 scenario=(*scene, "--fps", "15"), extra_config=ROI)))
            runs.append(("edge run, walkway ROI, live 30 fps camera (paced)",
                         prepare(work / "live", testdata_dir(), port=port, realtime=True, video=True,
                                 scenario=(*scene, "--fps", "30"), extra_config=ROI)))
            print(f"scene: 1920x1080 video, {seconds} s, 3 watchlisted + 5 others; "
                  f"{os.cpu_count()} cores")
            print(f"{'baseline: tiled detector alone, whole frame, all tiles':44s} {base_fps:9.2f} fps")
            for name, dep in runs:
                summary, wall, rss = _run_firmware(dep.config, dep.work)
                _report(name, summary, rss, wall, base_fps)
