"""`make deb`'s package: dpkg-deb lists it, dpkg -x unpacks it into a scratch root."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb"),
              pytest.mark.slow]  # builds and unpacks the .deb


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frozen copy of the checkout: what is packed is what is compared."""
    if not (ROOT / "models" / "manifest.json").is_file():
        pytest.skip("models not built: run `make models`")
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("edge", "deploy", "models"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("README.md", "pyproject.toml"):
        shutil.copy2(ROOT / name, src / name)
    return src


@pytest.fixture(scope="module")
def deb(frozen: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([str(frozen / "deploy" / "deb" / "build-deb.sh"), str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.parent == out
    return path


@pytest.fixture(scope="module")
def unpacked(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scratch-root")
    subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True, timeout=120)
    subprocess.run(["dpkg-deb", "-e", str(deb), str(root / "DEBIAN")], check=True, timeout=60)
    return root


def test_listing_has_the_expected_files(deb: Path) -> None:
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout
    paths = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for want in ("/lib/systemd/system/edge.service", "/lib/udev/rules.d/99-edge-coral.rules",
                 "/etc/edge/edge.toml.example", "/usr/lib/sysusers.d/edge.conf",
                 "/opt/edge/app/edge/cli.py", "/opt/edge/app/edge/runtime/selftest.py",
                 "/opt/edge/deploy/install.sh", "/usr/share/edge/models/manifest.json"):
        assert want in paths, want
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in paths)
    for line in listing.splitlines():
        assert " root/root " in line, line  # --root-owner-group


def test_control_fields(deb: Path) -> None:
    def field(name: str) -> str:
        return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True,
                              text=True, check=True).stdout.strip()

    assert field("Package") == "edge-firmware"
    assert field("Version") == next(
        line.split('"')[1] for line in (ROOT / "pyproject.toml").read_text().splitlines()
        if line.startswith("version = "))
    depends = field("Depends")
    for dep in ("python3-venv", "python3-numpy", "python3-opencv", "python3-systemd"):
        assert dep in depends
    assert "libedgetpu1-std" in field("Recommends") and "python3-picamera2" in field("Recommends")


def test_unpacked_tree(unpacked: Path, frozen: Path) -> None:
    from edge.runtime.selftest import check_models

    src = frozen
    assert (unpacked / "lib/systemd/system/edge.service").read_bytes() == \
        (src / "deploy/systemd/edge.service").read_bytes()
    assert (unpacked / "etc/edge/edge.toml.example").read_bytes() == \
        (src / "deploy/config/edge.toml.example").read_bytes()
    # The same hashed lock as the checkout and install.sh (tests/test_lock.py).
    assert (unpacked / "opt/edge/deploy/requirements-device.txt").read_bytes() == \
        (src / "deploy/requirements-device.txt").read_bytes()
    shipped = {p.relative_to(unpacked / "opt/edge/app") for p in
               (unpacked / "opt/edge/app/edge").rglob("*.py")}
    assert shipped == {p.relative_to(src) for p in (src / "edge").rglob("*.py")}
    assert check_models(unpacked / "usr/share/edge/models").ok  # every hash as in the manifest
    assert os.access(unpacked / "opt/edge/deploy/install.sh", os.X_OK)
    assert (unpacked / "DEBIAN/conffiles").read_text().split() == ["/etc/edge/edge.toml.example"]
    assert "install.sh --source /opt/edge --no-apt" in (unpacked / "DEBIAN/postinst").read_text()


def test_shipped_firmware_runs_from_the_unpacked_tree(unpacked: Path, tmp_path: Path) -> None:
    """The package's own copy of edge/ (not the checkout) imports and lists its commands."""
    env = {**os.environ, "PYTHONPATH": str(unpacked / "opt/edge/app")}
    code = ("import edge, sys; print(edge.__file__); import edge.cli as c; "
            "c.main(['--help'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=tmp_path, timeout=120)
    assert str(unpacked) in r.stdout.splitlines()[0], r.stdout + r.stderr
    assert "selftest" in r.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="apt-get install shellcheck")
def test_maintainer_scripts_are_shellcheck_clean(unpacked: Path) -> None:
    scripts = [unpacked / "DEBIAN" / s for s in ("postinst", "prerm", "postrm")]
    r = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
