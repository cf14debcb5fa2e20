"""The device's install never includes or needs the station: package, .deb, installer, imports."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]
STATION_LIBS = ("station", "starlette", "uvicorn", "jinja2", "sqlalchemy", "psycopg", "argon2",
                "itsdangerous", "multipart", "matplotlib", "selenium")


def test_the_firmware_distribution_packages_only_edge() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    found = find_packages(str(ROOT), **project["tool"]["setuptools"]["packages"]["find"])
    assert found and all(p == "edge" or p.startswith("edge.") for p in found), found
    deps = " ".join(project["project"]["dependencies"]).lower()
    assert not [lib for lib in STATION_LIBS if lib in deps]
    station = tomllib.loads((ROOT / "station" / "pyproject.toml").read_text())
    assert station["project"]["name"] == "edge-station" and "edge" in station["project"]["dependencies"]


def test_the_installer_and_device_requirements_do_not_mention_the_station() -> None:
    for path in (ROOT / "deploy" / "install.sh", ROOT / "deploy" / "requirements-device.txt",
                 ROOT / "deploy" / "deb" / "build-deb.sh"):
        text = path.read_text().lower()
        assert not [lib for lib in STATION_LIBS if lib in text], path


def test_no_firmware_module_imports_the_station_or_its_libraries() -> None:
    code = ("import importlib, pkgutil, sys, edge\n"
            "for m in pkgutil.walk_packages(edge.__path__, 'edge.'):\n"
            "    if m.name.split('.')[-1] in ('__main__', 'demo', 'bench') or '.bench.' in m.name:\n"
            "        continue\n"
            "    importlib.import_module(m.name)\n"
            "print(' '.join(sorted(sys.modules)))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    loaded = {m.split(".")[0] for m in r.stdout.split()}
    assert not loaded & set(STATION_LIBS)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_the_deb_built_from_a_checkout_with_the_station_holds_none_of_it(tmp_path: Path) -> None:
    if not (ROOT / "models" / "manifest.json").is_file():
        pytest.skip("models not built: run `make models`")
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("edge", "deploy", "models", "station"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("README.md", "pyproject.toml"):
        shutil.copy2(ROOT / name, src / name)
    r = subprocess.run([str(src / "deploy" / "deb" / "build-deb.sh"), str(tmp_path / "dist")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    deb = r.stdout.strip().splitlines()[-1]
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    assert "/opt/edge/app/edge/" in listing
    assert "station" not in listing
    control = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], capture_output=True, text=True,
                             check=True).stdout.lower()
    assert not [lib for lib in STATION_LIBS if lib in control]
