"""Subprocess for the power-loss test: forks one installer per round and SIGKILLs it at an
injected kill point (no timing involved, so a busy machine changes nothing).

Run as ``python -m tests.power_loss_child STATE_DIR``. The kill points are the file-system
calls an install makes (``os.open``, ``os.write``, ``os.fsync``, ``os.close``,
``os.replace``, ``os.unlink``): the installer dies right after the ``k``-th of them, which
is what a power cut between two of them leaves behind. Protocol on stdin/stdout, one line each:

    -> ready <number of kill points in one install>
    <- go <k>            (k = 0: before the first call; k > number: never)
    -> round <old file sha256> <new file sha256> <killed|finished>
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.watchlist.state import BundleStore
from tests.watchlist_world import World

CALLS = ("open", "write", "fsync", "close", "replace", "unlink")


def count_calls(after: Callable[[int], None]) -> None:
    """Wrap the file-system calls; ``after(n)`` runs after the n-th call returns."""
    seen = [0]
    for name in CALLS:
        original = getattr(os, name)

        def wrapped(*args: Any, _original: Any = original, **kw: Any) -> Any:
            out = _original(*args, **kw)
            seen[0] += 1
            after(seen[0])
            return out

        setattr(os, name, wrapped)


def main() -> int:
    state_dir = Path(sys.argv[1])
    w = World()
    trust = w.trust()
    store = BundleStore(state_dir)

    def install(target: BundleStore, data: bytes, version: int) -> None:
        target.install(data, w.ctx(trust), w.now(version))

    if store.state() is None:
        install(store, w.bundle(1, n=2), 1)
    with tempfile.TemporaryDirectory() as scratch:  # a census: how many kill points one install has
        install(BundleStore(Path(scratch)), w.bundle(1, n=2), 1)
        data = w.bundle(2, n=2)
        pid = os.fork()
        if pid == 0:
            n = [0]
            count_calls(lambda k: n.__setitem__(0, k))
            install(BundleStore(Path(scratch)), data, 2)
            os._exit(min(n[0], 255))
        _, status = os.waitpid(pid, 0)
        points = os.waitstatus_to_exitcode(status)
    print(f"ready {points}", flush=True)

    for line in sys.stdin:
        kill_at = int(line.split()[1])
        state = store.state()
        assert state is not None
        version = state.version + 1
        old = store.active_bytes() or b""
        new = w.bundle(version, n=2)
        pid = os.fork()
        if pid == 0:  # the installer: dies at its kill point or exits without cleanup
            try:
                if kill_at == 0:
                    os.kill(os.getpid(), signal.SIGKILL)
                count_calls(lambda k, at=kill_at: os.kill(os.getpid(), signal.SIGKILL) if k == at else None)
                install(store, new, version)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        outcome = "killed" if os.WIFSIGNALED(status) else "finished"
        print(f"round {hashlib.sha256(old).hexdigest()} {hashlib.sha256(new).hexdigest()} "
              f"{outcome}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
