"""Subprocess for the power-loss test: forks one installer per round and SIGKILLs it.

Run as ``python -m tests.power_loss_child STATE_DIR``. Importing numpy, nacl and
the firmware once here and forking per round keeps 200+ rounds to seconds.
Protocol on stdin/stdout, one line each:

    -> ready <mean install seconds>
    <- go <delay seconds>
    -> round <old file sha256> <new file sha256> <killed|finished>
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from edge.watchlist.state import BundleStore
from tests.watchlist_world import World


def main() -> int:
    state_dir = Path(sys.argv[1])
    w = World()
    trust = w.trust()
    store = BundleStore(state_dir)

    def install(target: BundleStore, data: bytes, version: int) -> None:
        target.install(data, w.ctx(trust), w.now(version))

    if store.state() is None:
        install(store, w.bundle(1, n=2), 1)
    with tempfile.TemporaryDirectory() as scratch:
        spent = []
        for v in range(1, 8):
            data = w.bundle(v, n=2)
            t = time.perf_counter()
            install(BundleStore(Path(scratch)), data, v)
            spent.append(time.perf_counter() - t)
    print(f"ready {sum(spent[2:]) / len(spent[2:]):.6f}", flush=True)

    for line in sys.stdin:
        delay = float(line.split()[1])
        state = store.state()
        assert state is not None
        version = state.version + 1
        old = store.active_bytes() or b""
        new = w.bundle(version, n=2)
        pid = os.fork()
        if pid == 0:  # the installer: dies by SIGKILL or exits without cleanup
            try:
                install(store, new, version)
            finally:
                os._exit(0)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        outcome = "killed" if os.WIFSIGNALED(status) else "finished"
        print(f"round {hashlib.sha256(old).hexdigest()} {hashlib.sha256(new).hexdigest()} "
              f"{outcome}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
