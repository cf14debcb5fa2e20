"""Run ``edge-station serve`` as its own process, as it runs in the control room."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.broker import Broker, free_port


def write_config(folder: Path, database: str, broker: Broker, *, window_s: float = 300.0,
                 quiet_after_s: float = 60.0, bundles: tuple[Path, Path] | None = None) -> Path:
    """A station config; ``bundles``: (folder of signed bundles, the trust root that verifies them)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = folder / "station.toml"
    cfg.write_text(f"""[station]
database = "{database}"
state_dir = "{folder / 'state'}"
listen = "127.0.0.1:{port}"
secure_cookies = false
incident_window_s = {window_s}
quiet_after_s = {quiet_after_s}
bundles_dir = "{bundles[0] if bundles else ''}"
trust_file = "{bundles[1] if bundles else ''}"

[broker]
host = "{broker.host}"
port = {broker.port}
client_id = "station-{port}"
session_expiry_days = 7
""")
    return cfg


def url_of(cfg: Path) -> str:
    for line in cfg.read_text().splitlines():
        if line.startswith("listen"):
            return "http://" + line.split('"')[1]
    raise AssertionError("no listen line")


def add_user(cfg: Path, name: str, role: str, password: str) -> Path:
    r = subprocess.run([sys.executable, "-m", "station", "user", "add", "--config", str(cfg), "--name", name,
                        "--role", role], input=password + "\n", capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return cfg.parent / "state" / "operator-keys" / f"{name}.ed25519"


class Station:
    def __init__(self, cfg: Path, log: Path) -> None:
        self.cfg, self.log = cfg, log
        self.url = url_of(cfg)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Station:
        fh = self.log.open("ab")
        argv = [sys.executable, "-m", "station", "serve", "--config", str(self.cfg)]
        self.proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200 and b"connected to" in self.log.read_bytes():
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("station did not come up:\n" + self.log.read_text()[-3000:])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
