"""Helpers for end-to-end tests: provision a device, run ``edge run``, read what arrived."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge.accountability.governance import threshold_floor
from edge.cli import main as edge_main
from edge.perception.manifest import load_manifest
from edge.scenario.demo import Deployment, prepare
from edge.scenario.render import watchlisted_passes
from tests.broker import Broker, Subscriber

ROOT = Path(__file__).resolve().parents[1]


def provision(tmp: Path, testdata: Path, broker: Broker, *, seconds: int = 20, seed: int = 3,
              watchlisted: str = "obama,biden,tom_hanks", n_others: int = 5,
              order_window: tuple[timedelta, timedelta] = (timedelta(hours=-1), timedelta(days=1)),
              extra_config: str = "", scenario_extra: tuple[str, ...] = (), realtime: bool = False,
              false_alert_budget: int | None = None, require_two_verifiers: bool = False) -> Deployment:
    scenario = ("--seconds", str(seconds), "--seed", str(seed), "--face-min", "40", "--face-max", "120",
                "--n-others", str(n_others), "--watchlisted", watchlisted,
                *scenario_extra)
    return prepare(tmp / "device", testdata, port=broker.port, scenario=scenario, realtime=realtime,
                   order_window=order_window, extra_config=extra_config,
                   false_alert_budget=false_alert_budget, require_two_verifiers=require_two_verifiers)


def operator_keys(folder: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """A new review signer key per operator name (as ``edge keys generate`` makes them)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {n: folder / f"{n}.ed25519" for n in names}
    for n, f in files.items():
        if not f.exists():
            _tool("keys", "generate", "--kind", "signer", "--name", n, "--out", str(f))
    return files


def add_reviewers(dep: Deployment, keys: Mapping[str, Path]) -> None:
    """Re-issue the device's trust root (before its first run) with a ``review`` role listing the
    operators' keys (name -> signer key file; its ``.pub`` is used), as the authority does."""
    operator_keys = (a for f in keys.values() for a in ("--key", f"{f}.pub"))
    _tool("trust", "init", "--key", f"{dep.signer}.pub", *operator_keys,
          "--role", "trust=authority", "--role", "watchlist=authority", "--role", "order=authority",
          "--role", f"review={','.join(keys)}", "--out", str(dep.trust))
    _tool("trust", "sign", "--key", str(dep.signer), str(dep.trust))


def edge_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``edge ARGS`` as a separate process, as an operator would type it."""
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def _tool(*argv: str) -> None:
    rc = edge_main(list(argv))
    if rc != 0:
        raise AssertionError(f"`edge {' '.join(argv)}` failed ({rc})")


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resign_order(dep: Deployment, **changes: Any) -> dict[str, Any]:
    """Re-issue the device's deployment order with ``changes`` (as the authority would), signed."""
    doc_path = dep.work / "central" / "order.json"
    doc: dict[str, Any] = {**json.loads(doc_path.read_text()), **changes}
    doc_path.write_text(json.dumps(doc, indent=1))
    _tool("order", "sign", "--key", str(dep.signer), "--out", str(dep.order), str(doc_path))
    return doc


def use_scene(dep: Deployment, testdata: Path, name: str, args: tuple[str, ...], *,
              realtime: bool) -> Path:
    """Generate another scene for the same device and point its config at it."""
    out = dep.work / name
    _tool("scenario", "--out", str(out), "--no-video", "--faces", str(testdata), *args)
    scene = out / "scene.json"
    text = re.sub(r'(?m)^target = ".*"$', f'target = "{scene}"', dep.config.read_text())
    text = re.sub(r"(?m)^realtime = \w+$", f"realtime = {'true' if realtime else 'false'}", text)
    dep.config.write_text(text)
    return scene


def low_floor_models(folder: Path, floor: float) -> Path:
    """The same model files under a manifest whose cards claim a lower floor (a tampered card):
    every measured false-match curve slid down so that its 1-in-1,000 point sits at ``floor``."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in (ROOT / "models").iterdir():
        if f.is_file() and f.name != "manifest.json":
            (folder / f.name).symlink_to(f)
    manifest = json.loads((ROOT / "models" / "manifest.json").read_text())
    real = load_manifest(ROOT / "models")
    for family, card in manifest["model_cards"].items():
        shift = threshold_floor(real, family) - floor
        for op in card["operating"].values():
            op["fmr"] = [[t - shift, f] for t, f in op["fmr"]]
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return folder


def build_bundle(dep: Deployment, out: Path, *, version: int, threshold: float,
                 models_dir: Path = ROOT / "models", device_id: str = "dev-demo"
                 ) -> subprocess.CompletedProcess[str]:
    """``edge bundle build`` of the device's enrolment at ``threshold`` (not signed)."""
    central = dep.work / "central"
    now = datetime.now(UTC) - timedelta(minutes=5)
    return edge_cli("bundle", "build", "--images", str(central / "enrolment"), "--csv",
                    str(central / "entries.csv"), "--device", f"{device_id}={dep.device_key}.pub",
                    "--fleet", "demo-fleet",
                    "--version", str(version), "--issuer", "Demo Authority", "--threshold", str(threshold),
                    "--valid-days", "7", "--out", str(out), "--now", iso(now),
                    "--models-dir", str(models_dir))


def sign_bundle(dep: Deployment, bundle: Path) -> None:
    _tool("bundle", "sign", "--key", str(dep.signer), str(bundle))


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
        key = best if best is not None and best_iou >= 0.3 else f"unmatched:{a['subject_ref']}"
        out.setdefault(key, []).append(a["event_id"])
    return out


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    if proc.poll() is None:
        stop_firmware(proc)
        raise TimeoutError("firmware did not finish the scene in time")
    return int(proc.returncode)
