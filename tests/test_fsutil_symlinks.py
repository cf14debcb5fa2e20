"""Temporary and staging files never follow a planted symlink (issue 11, item 20)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge import fsutil
from edge.fsutil import atomic_write, create_new


def test_temp_names_are_unpredictable_and_new(tmp_path: Path) -> None:
    fds = [create_new(tmp_path, "state.json") for _ in range(3)]
    for fd, _ in fds:
        os.close(fd)
    names = {p.name for _, p in fds}
    assert len(names) == 3 and all(n.startswith(".state.json.") for n in names)


def test_a_planted_symlink_at_the_temp_name_is_not_followed(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Even an attacker who guesses the name gets a refusal, and the link's target is untouched."""
    victim = tmp_path / "elsewhere" / "passwd"
    victim.parent.mkdir()
    victim.write_bytes(b"root:x:0:0\n")
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setattr(fsutil.secrets, "token_hex", lambda _n: "guessed")
    (state / ".state.json.guessed.tmp").symlink_to(victim)
    with pytest.raises(FileExistsError):
        atomic_write(state / "state.json", b"{}")
    assert victim.read_bytes() == b"root:x:0:0\n"
    assert not (state / "state.json").exists()


def test_atomic_write_leaves_no_temp_file_behind(tmp_path: Path) -> None:
    atomic_write(tmp_path / "a.json", b"1")
    atomic_write(tmp_path / "a.json", b"2")
    assert (tmp_path / "a.json").read_bytes() == b"2"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
