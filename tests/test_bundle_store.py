"""BundleStore: atomic activation, restart, corruption, and power loss during install."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from edge.errors import ClockUntrustedError, StateError
from edge.watchlist.envelope import decode
from edge.watchlist.state import STATE_FILE, BundleStore
from tests.watchlist_world import World

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 3  # each kill point this many times


def _install(store: BundleStore, w: World, version: int) -> bytes:
    data = w.bundle(version)
    store.install(data, w.ctx(), w.now(version))
    return data


def _check_consistent(store: BundleStore, w: World) -> int:
    """The recorded state names an intact file that is exactly the bundle it describes."""
    state = store.state()
    data = store.active_bytes()  # raises StateError if the file is missing or altered
    assert state is not None and data is not None
    env = decode(data, max_header=1 << 20, max_body=1 << 26)
    assert env.content_sha256() == state.content_sha256
    vb = store.load_active(w.ctx(), w.now(state.version))
    assert vb is not None and vb.header.version == state.version
    assert vb.header.issued_at == state.issued_at
    return state.version


def test_install_then_restart_reloads_the_same_bundle(tmp_path: Path) -> None:
    w = World()
    _install(BundleStore(tmp_path), w, 1)
    data = _install(BundleStore(tmp_path), w, 2)
    reopened = BundleStore(tmp_path)
    assert reopened.active_bytes() == data
    assert _check_consistent(reopened, w) == 2
    # superseded files are gone, no temp files are left
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [STATE_FILE, f"bundle-{hashlib.sha256(data).hexdigest()}.bin"])


def test_untrusted_clock_keeps_the_current_bundle_and_refuses_new_ones(tmp_path: Path) -> None:
    w = World()
    store = BundleStore(tmp_path)
    _install(store, w, 3)
    early = w.now(1)  # earlier than bundle 3's issued_at
    vb = store.load_active(w.ctx(), early)
    assert vb is not None and vb.header.version == 3 and not vb.clock_trusted
    with pytest.raises(ClockUntrustedError):
        store.install(w.bundle(4), w.ctx(), early)
    assert store.state() is not None and store.state().version == 3  # type: ignore[union-attr]


def test_corrupt_state_or_active_file_is_a_state_error(tmp_path: Path) -> None:
    w = World()
    store = BundleStore(tmp_path)
    data = _install(store, w, 1)
    active = tmp_path / f"bundle-{hashlib.sha256(data).hexdigest()}.bin"
    active.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(StateError):
        store.active_bytes()
    (tmp_path / STATE_FILE).write_text('{"version": "one"}')
    with pytest.raises(StateError):
        store.state()


@pytest.mark.slow
def test_sigkill_during_install_leaves_old_or_new_and_a_matching_counter(tmp_path: Path) -> None:
    """A SIGKILL after every file-system call of an install (kill points injected by the
    child, so the outcome does not depend on how busy the machine is)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.power_loss_child", str(tmp_path)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    w = World()
    store = BundleStore(tmp_path)
    outcomes = {"old": 0, "new": 0}
    try:
        ready = proc.stdout.readline().split()
        assert ready and ready[0] == "ready", ready
        points = int(ready[1])
        assert points >= 10, points  # staging, read-back, swap, clean-up: each is a kill point
        before = _check_consistent(store, w)
        # Kill after the 0th, 1st, ... call until an install runs to its end (an install after
        # a killed one has more calls: it removes the leftovers), ROUNDS times over.
        for _ in range(ROUNDS):
            how, kill_at = "killed", -1
            while how == "killed":
                kill_at += 1
                assert kill_at < 4 * points, "an install that never finishes"
                proc.stdin.write(f"go {kill_at}\n")
                proc.stdin.flush()
                _, old_sha, new_sha, how = proc.stdout.readline().split()
                active = store.active_bytes()
                assert active is not None
                got = hashlib.sha256(active).hexdigest()
                assert got in (old_sha, new_sha)
                version = _check_consistent(store, w)
                if got == new_sha:
                    outcomes["new"] += 1
                    assert version == before + 1
                else:
                    outcomes["old"] += 1
                    assert version == before
                before = version
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    # both sides of the swap were hit at every repetition, so the kills landed inside the install
    assert outcomes["old"] >= 5 * ROUNDS and outcomes["new"] >= 2 * ROUNDS, outcomes
