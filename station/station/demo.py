"""``make run``: the firmware demo (edge.scenario.demo) with the operators' station beside it.

It provisions the demo device as edge.scenario.demo does, creates a station with one
demo supervisor account whose review key the device's trust root lists,
starts a private Mosquitto, the station (http://127.0.0.1:<port>/) and the
device on a generated scene, and prints where to log in. The demo's alerts
appear in the station's review queue as they arrive. On a terminal the
station stays up after the scene until Ctrl-C, so the alerts can be reviewed;
otherwise it stops once the scene is done and says what it received.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from edge.scenario.broker import free_port
from edge.scenario.demo import (
    add_demo_arguments,
    edge_tool,
    local_broker,
    prepare,
    run_device,
    stop_child,
)
from edge.scenario.render import watchlisted_passes
from station.cli import add_user, open_store
from station.config import load

DEMO_USER, DEMO_PASSWORD = "demo", "demo-password"


def _station_config(work: Path, broker_port: int, http_port: int) -> Path:
    cfg = work / "station.toml"
    cfg.write_text(f"""# written by station.demo
[station]
database = "sqlite:///{work / 'station.db'}"
state_dir = "{work / 'state'}"
listen = "127.0.0.1:{http_port}"
secure_cookies = false  # plain HTTP on loopback for the demo only

[broker]
host = "127.0.0.1"
port = {broker_port}
client_id = "station-demo"
""")
    return cfg


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1):
            return
        time.sleep(0.2)
    raise SystemExit(f"demo: the station did not start (see {url})")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="station.demo", description=__doc__)
    add_demo_arguments(ap)
    ap.add_argument("--keep", action=argparse.BooleanOptionalAction, default=sys.stdin.isatty(),
                    help="keep the station up after the scene until Ctrl-C (default: on a terminal)")
    args = ap.parse_args(argv)
    if args.work.exists():
        shutil.rmtree(args.work)
    port, http_port = free_port(), free_port()
    print(f"demo: provisioning in {args.work} (broker on 127.0.0.1:{port})", flush=True)
    dep = prepare(args.work / "device", args.testdata, port=port,
                  scenario=("--seconds", str(args.seconds), "--seed", "7"))
    station_dir = args.work / "station"
    station_dir.mkdir(parents=True)
    cfg_path = _station_config(station_dir, port, http_port)
    cfg = load(cfg_path)
    key = add_user(cfg, DEMO_USER, "supervisor", DEMO_PASSWORD)
    # The authority lists the operator's review key in the device's trust root.
    edge_tool("trust", "init", "--key", f"{dep.signer}.pub", "--key", f"{key}.pub",
              "--role", "trust=authority", "--role", "watchlist=authority", "--role", "order=authority",
              "--role", f"review={DEMO_USER}", "--out", str(dep.trust))
    edge_tool("trust", "sign", "--key", str(dep.signer), str(dep.trust))
    expected = len(watchlisted_passes(json.loads(dep.scene.read_text())))
    print(f"demo: scene of {args.seconds} s; {expected} watchlisted passes should alert", flush=True)
    py = sys.executable
    with local_broker(args.work, port):
        log = (station_dir / "station.log").open("wb")
        station = subprocess.Popen([py, "-m", "station", "serve", "--config", str(cfg_path)],
                                   stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{http_port}"
        _wait_http(url + "/healthz", station)
        print(f"demo: station at {url}/  (log in as {DEMO_USER} / {DEMO_PASSWORD})", flush=True)

        def review() -> None:
            store = open_store(cfg)
            queue = store.queue(limit=1000)
            n = sum(len(i["sightings"]) for i in queue)
            print(f"demo: the station holds {n} alert(s) in {len(queue)} incident(s) awaiting review",
                  flush=True)
            if args.keep:
                print(f"demo: review them at {url}/ ; Ctrl-C stops the station", flush=True)
                station.wait()

        try:
            return run_device(dep.config, port, settle_s=2.0, then=review)
        finally:
            stop_child(station, signal.SIGTERM, 10)


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
