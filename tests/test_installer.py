"""deploy/install.sh --root: the tree it lays out, with modes and owners, run twice."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "deploy" / "install.sh"

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="owners are part of the install: root"),
              pytest.mark.slow]  # runs the installer into a tree


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frozen copy of the checkout, so the runs compare like with like."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("edge", "deploy"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    (src / "models").mkdir()
    for f in (ROOT / "models").glob("*"):
        if f.name == "manifest.json" or f.suffix in (".tflite", ".npz"):
            shutil.copy2(f, src / "models" / f.name)
    shutil.copy2(ROOT / "README.md", src / "README.md")
    return src


SOURCE: list[Path] = []


@pytest.fixture(autouse=True)
def _frozen(source: Path) -> Iterator[None]:
    SOURCE.append(source)
    yield
    SOURCE.pop()


def run_install(tree: Path, *args: str, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    argv = [str(SOURCE[-1] / "deploy/install.sh"), "--source", str(SOURCE[-1])]
    argv += ["--root", str(tree)] if env is None else []
    r = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120,
                       env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def ids(tree: Path, name: str) -> tuple[int, int]:
    for line in (tree / "etc" / "passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == name:
            return int(f[2]), int(f[3])
    raise AssertionError(f"{name} not in {tree}/etc/passwd")


def group_members(tree: Path, group: str) -> list[str]:
    for line in (tree / "etc" / "group").read_text().splitlines():
        f = line.split(":")
        if f[0] == group:
            return f[3].split(",") if f[3] else []
    raise AssertionError(f"group {group} missing")


def snapshot(tree: Path) -> dict[str, tuple[int, int, int, str]]:
    """path -> (mode, uid, gid, content or link target) for the whole tree."""
    out = {}
    for p in sorted(tree.rglob("*")):
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            body = "-> " + os.readlink(p)
        elif stat.S_ISREG(st.st_mode):
            body = p.read_bytes().hex() if p.stat().st_size < 4096 else str(st.st_size)
        else:
            body = ""
        out[str(p.relative_to(tree))] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, body)
    return out


def expect(tree: Path, rel: str, mode: int, uid: int, gid: int) -> None:
    st = (tree / rel).lstat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, uid, gid), (
        f"{rel}: {stat.S_IMODE(st.st_mode):04o} {st.st_uid}:{st.st_gid}, "
        f"want {mode:04o} {uid}:{gid}")


@pytest.fixture
def provision(tmp_path: Path) -> Path:
    p = tmp_path / "provision"
    (p / "keys").mkdir(parents=True)
    for name in ("device.x25519", "device.key", "device.crt", "ca.crt"):
        (p / "keys" / name).write_text(name)
        (p / "keys" / name).chmod(0o644)  # loose on purpose: the installer must tighten
    (p / "trust.json").write_text("{}")
    (p / "order.json").write_text("{}")
    return p


def test_tree_modes_and_owners_and_idempotence(tmp_path: Path, provision: Path) -> None:
    tree = tmp_path / "root"
    first = run_install(tree, "--provision", str(provision))
    assert "skipped (--root): apt-get install" in first.stdout
    assert "libedgetpu1-std" in first.stdout and "python3-picamera2" in first.stdout
    assert "skipped (--root): Coral apt source" in first.stdout
    assert not (tree / "etc/apt").exists()  # no repository claimed that was never added
    uid, gid = ids(tree, "edge")
    assert uid != 0 and gid != 0
    assert "edge" in group_members(tree, "video") and "edge" in group_members(tree, "plugdev")

    expect(tree, "etc/edge", 0o750, 0, gid)
    expect(tree, "etc/edge/keys", 0o700, uid, gid)
    for key in ("device.x25519", "device.key", "device.crt", "ca.crt"):
        expect(tree, f"etc/edge/keys/{key}", 0o600, uid, gid)
    for conf in ("edge.toml", "edge.toml.example", "trust.json", "order.json"):
        expect(tree, f"etc/edge/{conf}", 0o640, 0, gid)
    expect(tree, "var/lib/edge", 0o750, uid, gid)
    expect(tree, "lib/systemd/system/edge.service", 0o644, 0, 0)
    expect(tree, "etc/udev/rules.d/99-edge-coral.rules", 0o644, 0, 0)
    expect(tree, "usr/lib/sysusers.d/edge.conf", 0o644, 0, 0)
    expect(tree, "opt/edge/venv/bin/edge", 0o755, 0, 0)
    expect(tree, "opt/edge/app/edge/cli.py", 0o644, 0, 0)
    expect(tree, "opt/edge/app/edge", 0o755, 0, 0)
    assert (tree / "lib/systemd/system/edge.service").read_bytes() == \
        (ROOT / "deploy/systemd/edge.service").read_bytes()
    wants = tree / "etc/systemd/system/multi-user.target.wants/edge.service"
    assert os.readlink(wants) == "/lib/systemd/system/edge.service"  # enabled
    cfg = (tree / "opt/edge/venv/pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg  # picamera2/python3-systemd from apt
    pth = list((tree / "opt/edge/venv/lib").glob("python3*/site-packages/edge-app.pth"))
    assert [p.read_text() for p in pth] == ["/opt/edge/app\n"]
    shim = (tree / "opt/edge/venv/bin/edge").read_text()
    assert shim.startswith("#!/opt/edge/venv/bin/python\n") and "from edge.cli import main" in shim
    if (ROOT / "models/manifest.json").is_file():
        from edge.runtime.selftest import check_models

        assert check_models(tree / "usr/share/edge/models").ok
    assert not list(tree.rglob("__pycache__"))

    # Someone edits the config and loosens a key; a second run keeps the edit, fixes the mode.
    (tree / "etc/edge/edge.toml").write_text("# edited\n")
    (tree / "etc/edge/keys/device.key").chmod(0o644)
    before = snapshot(tree)
    run_install(tree)
    after = snapshot(tree)
    assert (tree / "etc/edge/edge.toml").read_text() == "# edited\n"
    expect(tree, "etc/edge/keys/device.key", 0o600, uid, gid)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == {"etc/edge/keys/device.key"}, sorted(changed)[:20]
    # And a third run changes nothing at all.
    run_install(tree)
    assert snapshot(tree) == after


def test_destdir_is_the_same_as_root(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    run_install(a)
    run_install(b, env={**os.environ, "DESTDIR": str(b)})
    assert snapshot(a) == snapshot(b)
    # Nothing in the tree names the tree: it is laid out for the target's /.
    for p in b.rglob("*"):
        if p.is_file() and not p.is_symlink() and p.stat().st_size < 1 << 20:
            assert str(b).encode() not in p.read_bytes(), p


def test_host_is_untouched_in_root_mode(tmp_path: Path) -> None:
    watched = [Path(p) for p in ("/etc/passwd", "/etc/group", "/etc/edge", "/opt/edge",
                                 "/var/lib/edge", "/lib/systemd/system/edge.service",
                                 "/etc/udev/rules.d/99-edge-coral.rules",
                                 "/etc/apt/sources.list.d/coral-edgetpu.list")]

    def state() -> list[tuple[str, bool, bytes]]:
        return [(str(p), p.exists(), p.read_bytes() if p.is_file() else b"") for p in watched]

    before = state()
    run_install(tmp_path / "root")
    assert state() == before


def test_refuses_a_source_without_firmware(tmp_path: Path) -> None:
    r = subprocess.run([str(INSTALL), "--root", str(tmp_path / "r"), "--source", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "no firmware package" in r.stderr


def test_provision_refuses_symlinks_and_copies_nothing(tmp_path: Path, provision: Path) -> None:
    # Issue 11 item 20: run as root, install(1) follows a symlink and would copy what it
    # points at (here a secret outside the folder) into /etc/edge as a key.
    secret = tmp_path / "not-a-key"
    secret.write_text("root's secret")
    (provision / "keys" / "device.key").unlink()
    (provision / "keys" / "device.key").symlink_to(secret)
    tree = tmp_path / "root"
    argv = [str(SOURCE[-1] / "deploy/install.sh"), "--source", str(SOURCE[-1]),
            "--root", str(tree), "--provision", str(provision)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "refusing symlinks" in r.stderr, r.stdout + r.stderr
    assert "device.key" in r.stderr
    keys = tree / "etc/edge/keys"
    assert not keys.exists() or not list(keys.iterdir())
    assert not any(p.is_file() and p.read_bytes() == secret.read_bytes()
                   for p in tree.rglob("*") if not p.is_symlink())


DROPIN = "etc/systemd/system/edge.service.d/50-broker-address.conf"


def test_broker_allow_list_is_written_from_the_config_or_the_option(
        tmp_path: Path, provision: Path) -> None:
    # The unit allows loopback only (IPAddressDeny=any); the broker comes from a drop-in.
    (provision / "edge.toml").write_text('[broker]\nhost = "192.0.2.7"\n')
    tree = tmp_path / "root"
    first = run_install(tree, "--provision", str(provision))
    assert (tree / DROPIN).read_text().splitlines()[-2:] == ["[Service]", "IPAddressAllow=192.0.2.7/32"]
    assert "may reach: loopback 192.0.2.7/32" in first.stdout
    expect(tree, DROPIN, 0o644, 0, 0)
    # The option wins, and prefixes are normalised.
    run_install(tree, "--broker-allow", "198.51.100.9, 2001:db8::/48,10.1.2.3/8")
    assert (tree / DROPIN).read_text().splitlines()[-1] == \
        "IPAddressAllow=198.51.100.9/32 2001:db8::/48 10.0.0.0/8"
    # A host name cannot be resolved for an image (--root): the existing list stays.
    (tree / "etc/edge/edge.toml").write_text('[broker]\nhost = "broker.example.org"\n')
    run_install(tree)
    assert (tree / DROPIN).read_text().splitlines()[-1].startswith("IPAddressAllow=198.51.100.9/32")


def test_broker_allow_refuses_what_is_not_an_address(tmp_path: Path) -> None:
    argv = [str(SOURCE[-1] / "deploy/install.sh"), "--source", str(SOURCE[-1]),
            "--root", str(tmp_path / "root"), "--broker-allow", "broker.example.org"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "not IP addresses or prefixes" in r.stderr, r.stdout + r.stderr
    assert not (tmp_path / "root" / DROPIN).exists()


def test_without_a_broker_address_the_installer_says_the_service_reaches_loopback_only(
        tmp_path: Path) -> None:
    r = run_install(tmp_path / "root")  # the example config names a host, unresolvable for --root
    assert "loopback only" in r.stdout and "--broker-allow" in r.stdout
    assert not (tmp_path / "root" / DROPIN).exists()
