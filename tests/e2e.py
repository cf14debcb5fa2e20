"""Helpers for end-to-end tests: provision a device, run ``edge run``, read what arrived."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from edge.demo import Deployment, prepare
from edge.scenario.render import watchlisted_passes
from tests.broker import Broker, Subscriber

ROOT = Path(__file__).resolve().parents[1]


def provision(tmp: Path, testdata: Path, broker: Broker, *, seconds: int = 20, seed: int = 3,
              watchlisted: str = "obama,biden,tom_hanks", n_others: int = 5,
              order_window: tuple[timedelta, timedelta] = (timedelta(hours=-1), timedelta(days=1)),
              extra_config: str = "", scenario_extra: tuple[str, ...] = ()) -> Deployment:
    scenario = ("--seconds", str(seconds), "--seed", str(seed), "--face-min", "40", "--face-max", "120",
                "--n-others", str(n_others), "--watchlisted", watchlisted,
                *scenario_extra)
    return prepare(tmp / "device", testdata, port=broker.port, scenario=scenario, realtime=False,
                   order_window=order_window, extra_config=extra_config)


def start_firmware(dep: Deployment, testdata: Path, log_name: str = "run.log") -> subprocess.Popen[bytes]:
    env = {**os.environ, "EDGE_TESTDATA": str(testdata), "PYTHONUNBUFFERED": "1"}
    log = (dep.work / log_name).open("ab")
    return subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(dep.config)],
                            stdout=log, stderr=log, env=env, cwd=ROOT)


def stop_firmware(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def alerts_of(sub: Subscriber) -> list[dict[str, Any]]:
    return [json.loads(p) for p in sub.payloads("/alerts")]


def dedup(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for a in alerts:
        seen.setdefault(a["event_id"], a)
    return sorted(seen.values(), key=lambda a: a["seq"])


def iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def assign_to_passes(dep: Deployment, alerts: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Ground-truth pass id -> event ids of the alerts that belong to it (by subject and box)."""
    truth = json.loads(dep.scene.read_text())
    by_subject = {v: k for k, v in dep.subjects.items()}
    out: dict[str, list[str]] = {f"{p['person']}#{p['pass_index']}": [] for p in watchlisted_passes(truth)}
    for a in alerts:
        ident = by_subject.get(a["subject_ref"])
        best, best_iou = None, 0.0
        for p in truth["passes"]:
            if p["identity"] != ident:
                continue
            for box in p["boxes"]:
                v = iou(a["box"], box[1:])
                if v > best_iou:
                    best, best_iou = f"{p['person']}#{p['pass_index']}", v
        out.setdefault(best if best_iou >= 0.3 else f"unmatched:{a['subject_ref']}", []).append(a["event_id"])
    return out


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if proc.poll() is None:
        stop_firmware(proc)
        raise TimeoutError("firmware did not finish the scene in time")
    return int(proc.returncode)
