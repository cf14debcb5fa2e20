"""Is the Python stack this process imports the locked device stack?

On the device numpy and OpenCV come from apt (python3-numpy 1.24, python3-opencv
4.6; picamera2's simplejpeg is built against the same numpy), and the venv sees
them through ``--system-site-packages``. A second numpy in the venv (``pip install``
without the lock) breaks apt's cv2 ("compiled using NumPy 1.x") and picamera2
("numpy.dtype size changed"). The lock (``deploy/requirements-device.txt``) names
the versions apt must provide in ``# system-package:`` lines; :func:`verify_stack`
compares what is imported against them.
"""

from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from edge.errors import StackError

LOCK_NAME = "requirements-device.txt"
SYSTEM_PACKAGE = "# system-package: "
FIX = ("keep the venv to the lock: `sudo /opt/edge/venv/bin/pip uninstall -y numpy "
       "opencv-python opencv-python-headless`, then `sudo /opt/edge/deploy/install.sh --no-apt` "
       "(pip --require-hashes -r /opt/edge/deploy/requirements-device.txt); and "
       "`sudo apt install --reinstall python3-numpy python3-opencv` from Bookworm")
# Messages numpy's C-API checks give when an extension meets another numpy ABI.
NUMPY_ABI = re.compile(r"numpy\.dtype size changed|compiled using NumPy|_ARRAY_API|"
                       r"numpy\.core\.multiarray failed to import|numpy\._core", re.I)


@dataclass(frozen=True)
class SystemPackage:
    apt: str
    module: str
    version: str


def default_lock() -> Path | None:
    """The lock beside the firmware: deploy/ in a checkout, /opt/edge/deploy on a device."""
    here = Path(__file__).resolve().parent
    for base in (here.parent, here.parent.parent):
        if (base / "deploy" / LOCK_NAME).is_file():
            return base / "deploy" / LOCK_NAME
    return None


def system_packages(lock_text: str) -> list[SystemPackage]:
    out = []
    for line in lock_text.splitlines():
        if line.startswith(SYSTEM_PACKAGE):
            apt, module, version = line[len(SYSTEM_PACKAGE):].split()
            out.append(SystemPackage(apt, module, version))
    return out


def verify_stack(lock: Path | None = None) -> str:
    """One line naming what was imported from where; ``StackError`` naming the fix if wrong."""
    path = lock or default_lock()
    if path is None:
        raise StackError(f"no {LOCK_NAME} beside the firmware; reinstall it (install.sh)")
    wanted = system_packages(path.read_text(encoding="utf-8"))
    if not wanted:
        raise StackError(f"{path} names no system packages; regenerate it with `make lock`")
    seen, problems = [], []
    for pkg in wanted:
        try:
            module = importlib.import_module(pkg.module)
        except Exception as e:  # an ABI clash raises ImportError, AttributeError, ...
            problems.append(f"{pkg.module} does not import ({type(e).__name__}: {e})")
            continue
        version = str(getattr(module, "__version__", "?"))
        where = str(getattr(module, "__file__", "?"))
        seen.append(f"{pkg.module} {version} ({where})")
        if not _same_release(version, pkg.version):
            problems.append(f"{pkg.module} {version} from {where}, the lock wants {pkg.version} "
                            f"({pkg.apt})")
    if problems:
        raise StackError("; ".join(problems) + f"; python {sys.prefix}")
    return "; ".join(seen)


def _same_release(have: str, want: str) -> bool:
    """The exact version, a local suffix (``+dfsg``) aside."""
    return have.split("+")[0] == want


def is_numpy_abi_error(e: BaseException) -> bool:
    return bool(NUMPY_ABI.search(str(e)))
