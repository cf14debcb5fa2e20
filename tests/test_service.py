"""sd_notify speaks the real datagram protocol to a socket the test binds."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from edge.runtime.notify import Notifier


def test_notify_messages_reach_the_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(path)
    srv.settimeout(2)
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())})
    assert n.watchdog_interval() == 5.0
    n.ready("models, bundle and outbox up")
    n.watchdog()
    n.stopping()
    got = [srv.recv(4096).decode() for _ in range(3)]
    assert got[0].startswith("READY=1\nSTATUS=models")
    assert got[1] == "WATCHDOG=1"
    assert got[2].startswith("STOPPING=1")
    n.close()
    srv.close()


def test_without_systemd_everything_is_a_noop() -> None:
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval() is None
    n.ready("x")
    n.watchdog()
    assert n.failures == 0
