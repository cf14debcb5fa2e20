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

from edge.demo import ROOT, free_port, local_broker, prepare
from edge.perception.detector import BlazeFaceDetector
from edge.perception.tiling import TiledDetector, TilingConfig
from edge.scenario.render import load_truth, scene_from_truth


def _testdata() -> Path:
    return Path(os.environ.get("EDGE_TESTDATA", ROOT / ".cache" / "testdata"))


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
    scene = scene_from_truth(load_truth(scene_json), _testdata())
    tiled = TiledDetector(BlazeFaceDetector.from_models_dir(), TilingConfig())
    images = [scene.render(i) for i in range(frames)]
    tiled.detect(images[0])
    t0 = time.perf_counter()
    for img in images:
        tiled.detect(img)
    return frames / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> None:
    seconds = 30
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        work = Path(tmp)
        port = free_port()
        with local_broker(work, port):
            dep = prepare(work / "fast", _testdata(), port=port, realtime=False, video=True,
                          scenario=("--seconds", str(seconds), "--seed", "21", "--fps", "15"))
            base_fps = _baseline(dep.scene, 60)
            summary, wall, rss = _run_firmware(dep.config, dep.work)
            live = prepare(work / "live", _testdata(), port=port, realtime=True, video=True,
                           scenario=("--seconds", str(seconds), "--seed", "21", "--fps", "30"))
            live_summary, _live_wall, live_rss = _run_firmware(live.config, live.work)
    fps = summary["throughput_fps"]
    lat = summary["alert_latency_ms"]
    counters = summary["counters"]
    live_c = live_summary["counters"]
    assert isinstance(fps, float) and isinstance(lat, dict) and isinstance(counters, dict)
    assert isinstance(live_c, dict)
    frames, live_frames = counters["frames"], live_c["frames"]
    dropped = int(str(live_summary["frames_dropped"]))
    print(f"scene: 1920x1080, {seconds} s, 3 watchlisted + 5 others; runtime on {os.cpu_count()} cores")
    print(f"{'measure':44s} {'value':>12s}")
    print(f"{'baseline: tiled detector alone, all tiles':44s} {base_fps:9.2f} fps")
    print(f"{'edge run, lossless replay: throughput':44s} {fps:9.2f} fps  "
          f"({fps / base_fps:.2f}x baseline)")
    print(f"{'  tiles run per frame (motion gate)':44s} {counters['tiles_run'] / max(1, frames):9.1f}")
    print(f"{'  alerts':44s} {summary['alerts']!s:>9s}")
    print(f"{'  alert latency capture->PUBACK p50':44s} {lat['p50']!s:>9s} ms")
    print(f"{'  alert latency capture->PUBACK p95':44s} {lat['p95']!s:>9s} ms")
    print(f"{'  peak RSS':44s} {rss:9.1f} MB")
    print(f"{'  wall time incl. model load':44s} {wall:9.1f} s")
    share = dropped / max(1, live_frames + dropped)
    print(f"{'edge run, live 30 fps: frames processed':44s} {live_frames:9d}")
    print(f"{'  frames dropped (could not keep up)':44s} {dropped:9d}  ({share:.0%})")
    print(f"{'  alerts':44s} {live_summary['alerts']!s:>9s}")
    print(f"{'  peak RSS':44s} {live_rss:9.1f} MB")


if __name__ == "__main__":
    run(argparse.Namespace())
