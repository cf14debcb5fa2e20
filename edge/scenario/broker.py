"""A local Mosquitto on a free loopback port: the demo's broker, also the tests' and the bench's.

Only the launcher lives here (find the binary, pick a port that is never the system
broker's, start, wait until ready); what goes into ``mosquitto.conf`` is each user's
business. The appliance itself never starts a broker.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from edge.errors import BrokerError

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")
SYSTEM_PORTS = (1883, 8883)  # a real broker's; never handed to a local one


def find_mosquitto() -> Path | None:
    """``$EDGE_MOSQUITTO``, else the Debian paths, else ``PATH``; None if there is none."""
    env = os.environ.get("EDGE_MOSQUITTO")
    if env:
        return Path(env)
    for p in MOSQUITTO_PATHS:
        if os.access(p, os.X_OK):
            return Path(p)
    found = shutil.which("mosquitto")
    return Path(found) if found else None


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel has free on ``host`` now, never one of :data:`SYSTEM_PORTS`."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port not in SYSTEM_PORTS:
            return port


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def start_mosquitto(config: Path, ready: Callable[[], bool], *, stderr: IO[bytes] | int | None,
                    timeout: float = 10.0, poll: float = 0.02) -> subprocess.Popen[bytes]:
    """Run ``mosquitto -c config`` until ``ready()``; the process is stopped again on failure."""
    binary = find_mosquitto()
    if binary is None:
        raise BrokerError("mosquitto not found; install it: apt-get install mosquitto")
    proc = subprocess.Popen([str(binary), "-c", str(config)], stdout=subprocess.DEVNULL,
                            stderr=stderr)
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise BrokerError(f"mosquitto exited with {proc.returncode} (config {config})")
        if time.monotonic() > deadline:
            stop_mosquitto(proc)
            raise BrokerError(f"mosquitto not ready within {timeout:.0f} s (config {config})")
        time.sleep(poll)
    return proc


def stop_mosquitto(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
