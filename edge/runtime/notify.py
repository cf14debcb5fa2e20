"""systemd integration: sd_notify READY/WATCHDOG/STATUS/STOPPING, journald logging.

Supervision is systemd's job (``Restart=``, ``WatchdogSec=``); this module only
speaks the notify protocol, by writing the datagram itself (which is the whole
protocol; python3-systemd is used only for journald logging, in
``setup_logging``). Without ``NOTIFY_SOCKET`` (not under systemd) every call is a
no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        self._watchdog_usec: int | None = None
        if usec and usec.isdigit() and (pid is None or pid == str(os.getpid())):
            self._watchdog_usec = int(usec)
        self._sock: socket.socket | None = None
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half the watchdog timeout, as sd_watchdog_enabled advises."""
        return None if self._watchdog_usec is None else self._watchdog_usec / 2e6

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        address = self._address
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), address)
        except OSError as e:
            # Losing a notification must not stop recognition; systemd's watchdog will
            # notice if pings keep failing, which is the right outcome.
            self.failures += 1
            log.warning("sd_notify failed: %s", e)

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def stopping(self, status: str = "stopping") -> None:
        self._send(f"STOPPING=1\nSTATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def setup_logging(verbose: int) -> None:
    """journald when running under systemd with python3-systemd, stderr otherwise."""
    level = logging.DEBUG if verbose > 1 else logging.INFO
    root = logging.getLogger()
    root.setLevel(level)
    for h in list(root.handlers):
        root.removeHandler(h)
    if os.environ.get("JOURNAL_STREAM"):
        try:
            from systemd.journal import JournalHandler  # device only

            root.addHandler(JournalHandler(SYSLOG_IDENTIFIER="edge"))
            return
        except ImportError:
            pass
        fmt = "%(levelname)s %(name)s: %(message)s"  # journald stamps time itself
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
