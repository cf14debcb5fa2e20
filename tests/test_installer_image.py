"""install.sh --root on an image: the lock it carries, and the first boot that finishes it."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".cache" / "wheels" / "x86_64"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="owners are part of the install: root")


def lay(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(ROOT / "deploy" / "install.sh"), "--source", str(ROOT), "--root",
                        str(tree), *args], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_image_carries_the_lock_and_enables_first_boot(tmp_path: Path) -> None:
    tree = tmp_path / "img"
    r = lay(tree)
    lock = tree / "opt/edge/deploy/requirements-device.txt"
    assert lock.read_bytes() == (ROOT / "deploy/requirements-device.txt").read_bytes()
    assert (tree / "opt/edge/.first-boot").is_file()
    unit = tree / "lib/systemd/system/edge-firstboot.service"
    assert "ExecStart=/opt/edge/deploy/install.sh --first-boot" in unit.read_text()
    assert "Before=edge.service" in unit.read_text()
    wants = tree / "etc/systemd/system/multi-user.target.wants/edge-firstboot.service"
    assert wants.is_symlink()
    assert "edge-firstboot.service does it on first boot" in r.stdout
    # The venv has no pip: first boot bootstraps it offline (ensurepip), never the build host.
    assert not list((tree / "opt/edge/venv").glob("lib/python3*/site-packages/pip"))


def test_image_with_wheels_carries_exactly_the_locked_ones(tmp_path: Path) -> None:
    if not (WHEELS / ".complete").exists():
        pytest.fail("locked wheels missing: run `make wheels`")
    wheels = tmp_path / "wheels"
    shutil.copytree(WHEELS, wheels)
    (wheels / "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"not locked")
    tree = tmp_path / "img"
    r = lay(tree, "--wheels", str(wheels))
    carried = sorted(p.name for p in (tree / "opt/edge/wheels").glob("*.whl"))
    assert carried == sorted(p.name for p in WHEELS.glob("*.whl"))
    locked = set(re.findall(r"sha256:([0-9a-f]{64})",
                            (ROOT / "deploy/requirements-device.txt").read_text()))
    for name in carried:
        assert hashlib.sha256((tree / "opt/edge/wheels" / name).read_bytes()).hexdigest() in locked
    assert f"carried {len(carried)} locked wheels" in r.stdout


def test_wheels_without_a_locked_hash_are_refused(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"not locked")
    r = subprocess.run([str(ROOT / "deploy" / "install.sh"), "--source", str(ROOT), "--root",
                        str(tmp_path / "img"), "--wheels", str(wheels)],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode != 0 and "no wheel in" in r.stderr


def test_first_boot_refuses_to_run_on_an_image(tmp_path: Path) -> None:
    r = subprocess.run([str(ROOT / "deploy" / "install.sh"), "--root", str(tmp_path / "img"),
                        "--first-boot"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "runs on the device" in r.stderr


def test_installer_names_the_raspberry_pi_archive() -> None:
    text = (ROOT / "deploy" / "install.sh").read_text()
    assert "http://archive.raspberrypi.com/debian bookworm main" in text
    assert "--no-camera" in text
