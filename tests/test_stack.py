"""The locked stack at run time: selftest's stack check and picamera2's numpy clash."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import SourceConfig
from edge.errors import CameraStackError, StackError
from edge.runtime import selftest
from edge.sources.picamera import PiCameraSource
from edge.stack import FIX, default_lock, system_packages, verify_stack

ROOT = Path(__file__).resolve().parents[1]


def test_the_lock_names_the_system_numpy_and_opencv() -> None:
    lock = default_lock()
    assert lock == ROOT / "deploy" / "requirements-device.txt"
    pkgs = {p.module: p for p in system_packages(lock.read_text())}
    assert set(pkgs) == {"numpy", "cv2"}
    assert f"numpy=={pkgs['numpy'].version} " in lock.read_text()  # pip's pin = apt's numpy
    assert pkgs["cv2"].apt == "python3-opencv"


def test_this_venv_is_the_locked_stack() -> None:
    """make install installs the dev lock: the same numpy and OpenCV as apt on a device."""
    detail = verify_stack()
    assert f"numpy {np.__version__}" in detail and f"cv2 {cv2.__version__}" in detail
    check = selftest.check_stack()
    assert check.ok and check.name == "stack"


def test_another_numpy_fails_with_the_fix(tmp_path: Path) -> None:
    lock = tmp_path / "requirements-device.txt"
    lock.write_text("# system-package: python3-numpy numpy 2.4.6\n"
                    "# system-package: python3-opencv cv2 4.6.0\n")
    with pytest.raises(StackError, match=rf"numpy {np.__version__} from .* the lock wants 2\.4\.6"):
        verify_stack(lock)


@pytest.fixture
def clashing_picamera2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """picamera2 as it imports over a second numpy: simplejpeg's ValueError (the hardware edge)."""
    pkg = tmp_path / "fakes" / "picamera2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        'raise ValueError("numpy.dtype size changed, may indicate binary incompatibility. '
        'Expected 96 from C header, got 88 from PyObject")\n')
    monkeypatch.syspath_prepend(str(pkg.parent))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)


@pytest.mark.usefixtures("clashing_picamera2")
def test_numpy_clash_is_not_reported_as_a_camera_problem() -> None:
    with pytest.raises(CameraStackError, match="not a camera problem"):
        PiCameraSource()
    check = selftest.check_camera(SourceConfig(kind="picamera", target="0"))
    assert not check.ok
    assert check.fix == FIX and "ribbon" not in check.fix and "rpicam" not in check.fix
    assert "numpy.dtype size changed" in check.detail
