"""The locked device stack: pins agree everywhere, and the device venv keeps apt's numpy.

The device venv sees apt's python3-numpy (and python3-opencv, picamera2) through
``--system-site-packages``; the lock must pin that same numpy so pip never adds a
second one. The install test uses this Debian 12 host's own ``/usr/bin/python3`` and
apt's ``python3-numpy`` (what a Pi has) and the lock's wheels from ``make wheels``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DEVICE_LOCK = DEPLOY / "requirements-device.txt"
DEV_LOCK = DEPLOY / "lock" / "requirements-dev.txt"
TEST_LOCK = DEPLOY / "lock" / "requirements-test.txt"
EVAL_LOCK = DEPLOY / "lock" / "requirements-eval.txt"
WHEELS = ROOT / ".cache" / "wheels" / "x86_64"
# Distributions that apt provides on the device (install.sh's APT_PACKAGES), not the lock.
APT_PROVIDED = {"pynacl": "python3-nacl"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(text: str) -> dict[str, str]:
    """name -> version of every ``name==version`` requirement line."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", line)
        if m:
            out[canonical(m[1])] = m[2]
    return out


def lock_entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a hashed lock."""
    text = path.read_text().replace("\\\n", " ")
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"^(\S+)==(\S+)", line)
        assert m, f"{path.name}: unpinned line {line!r}"
        out[canonical(m[1])] = (m[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    return out


def pyproject_pins(extra: str | None = None) -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return pins("\n".join(d.split(";")[0].strip() for d in deps))


def test_every_lock_line_is_pinned_and_hashed() -> None:
    for path in (DEVICE_LOCK, DEV_LOCK, TEST_LOCK, EVAL_LOCK):
        for name, (version, hashes) in lock_entries(path).items():
            assert hashes, f"{path.name}: {name}=={version} has no hash"


def test_pyproject_the_lock_inputs_and_the_locks_agree() -> None:
    device_in = pins((DEPLOY / "lock" / "device.in").read_text())
    device_lock = {n: v for n, (v, _) in lock_entries(DEVICE_LOCK).items()}
    dev_lock = {n: v for n, (v, _) in lock_entries(DEV_LOCK).items()}
    runtime = pyproject_pins()
    for name, version in runtime.items():
        if name in APT_PROVIDED:
            assert dev_lock[name] == version, name
            continue
        assert device_in[name] == version == device_lock[name], name
    assert set(device_in) <= set(runtime)
    for name, version in pyproject_pins("dev").items():
        assert dev_lock[name] == version, name
    # The dev/CI stack is the device stack plus tools: the same versions of all it shares.
    for name, version in device_lock.items():
        assert dev_lock[name] == version, name
    assert "opencv-python-headless" not in device_lock  # apt's python3-opencv on the device


def test_the_eval_lock_adds_to_the_dev_stack_without_changing_it() -> None:
    """`make eval` installs its lock over the dev venv with --no-deps: every distribution
    both locks name (numpy above all) must be the same version."""
    eval_lock = {n: v for n, (v, _) in lock_entries(EVAL_LOCK).items()}
    dev_lock = {n: v for n, (v, _) in lock_entries(DEV_LOCK).items()}
    assert eval_lock["numpy"] == dev_lock["numpy"]
    for name in set(eval_lock) & set(dev_lock):
        assert eval_lock[name] == dev_lock[name], name
    for name, version in pyproject_pins("eval").items():
        assert eval_lock[name] == version, name


def test_platform_wheels_are_hashed_for_both_targets() -> None:
    """numpy, ai-edge-litert and ml-dtypes ship per-architecture wheels: one hash each."""
    entries = lock_entries(DEVICE_LOCK)
    text = DEVICE_LOCK.read_text()
    for name in ("numpy", "ai-edge-litert", "ml-dtypes"):
        assert len(entries[name][1]) == 2, name
        for arch in ("aarch64", "x86_64"):
            assert re.search(rf"# .*{name.replace('-', '_')}-\S+_{arch}\.", text, re.I), (name, arch)


def test_installer_names_the_apt_packages_the_lock_leaves_out() -> None:
    install = (DEPLOY / "install.sh").read_text()
    for pkg in ("python3-numpy", "python3-opencv", *APT_PROVIDED.values()):
        assert pkg in install


def apt_numpy_version() -> str | None:
    """Upstream version of this host's apt python3-numpy, or None if not installed."""
    if shutil.which("dpkg-query") is None:
        return None
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Status} ${Version}", "python3-numpy"],
                       capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.startswith("install ok installed"):
        return None
    return re.sub(r"^\d+:", "", r.stdout.split()[-1]).split("-")[0]


def test_numpy_pin_is_bookworms_python3_numpy() -> None:
    apt = apt_numpy_version()
    if apt is None:
        pytest.skip("python3-numpy (Debian 12) not installed on this host")
    assert lock_entries(DEVICE_LOCK)["numpy"][0] == apt


@pytest.mark.slow
def test_device_venv_keeps_apts_numpy(tmp_path: Path, models_dir: Path) -> None:
    """install.sh's pip step in a --system-site-packages venv over apt's numpy 1.24."""
    apt = apt_numpy_version()
    if apt is None or not Path("/usr/bin/python3").exists():
        pytest.skip("needs Debian's /usr/bin/python3 with apt's python3-numpy")
    if not (WHEELS / ".complete").exists():
        pytest.fail("locked wheels missing: run `make wheels`")
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    py = str(venv / "bin" / "python")
    # The same pip command as install.sh's pip_install_locked, from the local wheels.
    r = subprocess.run([py, "-m", "pip", "install", "--quiet", "--require-hashes",
                        "--only-binary=:all:", "--no-deps", "--no-index", "--find-links",
                        str(WHEELS), "-r", str(DEVICE_LOCK)],
                       capture_output=True, text=True, timeout=300,
                       env={"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": "/dev/null"})
    assert r.returncode == 0, r.stdout + r.stderr
    probe = (
        "import numpy, ai_edge_litert.interpreter as t;"
        f"i = t.Interpreter(model_path={str(models_dir / 'blazeface_short_range_int8.tflite')!r});"
        "i.allocate_tensors(); i.invoke();"
        "print(numpy.__version__, numpy.__file__)"
    )
    out = subprocess.run([py, "-c", probe], capture_output=True, text=True, check=True)
    version, where = out.stdout.split()[-2:]
    assert version == apt
    assert where.startswith("/usr/lib/python3/dist-packages/"), where
    assert not list(venv.glob("lib/python3*/site-packages/numpy")), "pip added a second numpy"
    # pip check, less what apt's own packages declare (the venv sees them): Debian splits
    # packages, so e.g. apt's python3-gi "requires pycairo" where pip cannot see it.
    check = subprocess.run([py, "-m", "pip", "check"], capture_output=True, text=True)
    apt_site = "/usr/lib/python3/dist-packages"
    locate = ("import sys; from importlib.metadata import distribution as d; "
              "print(d(sys.argv[1]).locate_file(''))")
    broken = [line for line in check.stdout.splitlines()
              if line.strip() and not line.startswith("No broken")
              and not subprocess.run([py, "-c", locate, line.split()[0]], capture_output=True,
                                     text=True, check=True).stdout.startswith(apt_site)]
    assert not broken, check.stdout
