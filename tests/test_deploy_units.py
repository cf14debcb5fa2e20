"""deploy/systemd/edge.service: verified by systemd itself, exposure rated, W^X checked."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "systemd" / "edge.service"
EXEC = "/opt/edge/venv/bin/edge"

needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="needs systemd-analyze (apt-get install systemd)")


def directives(text: str) -> dict[str, list[str]]:
    """Key -> values in order (systemd keys repeat, e.g. DeviceAllow=)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def resolvable_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with only ExecStart's binary moved to a stub that exists here."""
    stub = tmp_path / "bin" / "edge"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "edge.service"
    body = text if text is not None else UNIT.read_text()
    assert body.count(EXEC) == 1
    unit.write_text(body.replace(EXEC, str(stub)))
    return unit


def exposure(unit: Path) -> float:
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    return float(m.group(1))


@needs_systemd
def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    r = subprocess.run(["systemd-analyze", "verify", str(resolvable_copy(tmp_path))],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "edge.service" not in r.stderr, r.stderr


@needs_systemd
def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    # The control: a typo only warns (exit 0), which is why the pass above also
    # demands a silent stderr.
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=strictly")
    r = subprocess.run(["systemd-analyze", "verify", str(resolvable_copy(tmp_path, broken))],
                       capture_output=True, text=True, timeout=60)
    assert "edge.service:" in r.stderr and "strictly" in r.stderr


@needs_systemd
def test_exposure_is_at_most_3(tmp_path: Path) -> None:
    score = exposure(resolvable_copy(tmp_path))
    assert score <= 3.0, score
    bare = tmp_path / "bare.service"
    bare.write_text("[Service]\nExecStart=/bin/true\n")
    assert exposure(bare) > 9.0  # the parser reads the number systemd prints


def test_unit_contract() -> None:
    d = directives(UNIT.read_text())
    one = {k: v[-1] for k, v in d.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["ExecStart"] == f"{EXEC} run --config /etc/edge/edge.toml"
    assert one["WatchdogSec"] and one["Restart"] == "always"
    # Never give up after power cuts: no start limit; RestartSec paces retries.
    assert one["StartLimitIntervalSec"] == "0" and one["RestartSec"]
    assert one["StateDirectory"] == "edge" and one["ConfigurationDirectory"] == "edge"
    assert one["User"] == "edge" and "video" in one["SupplementaryGroups"]
    assert one["CapabilityBoundingSet"] == "" and one["NoNewPrivileges"] == "yes"
    assert one["ProtectSystem"] == "strict" and one["PrivateTmp"] == "yes"
    assert one["DevicePolicy"] == "closed"
    allowed = " ".join(d["DeviceAllow"])
    for dev in ("char-video4linux", "char-media", "char-dma_heap", "char-usb_device",
                "char-apex", "/dev/apex_0"):
        assert dev in allowed, dev
    assert one["MemoryDenyWriteExecute"] == "yes"
    assert one["SystemCallFilter"] and d["SystemCallFilter"][0] == "@system-service"
    assert one["UMask"] == "0077"
    assert set(one["RestrictAddressFamilies"].split()) == {
        "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    # Issue 11 item 20: IP to loopback only (install.sh's drop-in adds the broker), the
    # /proc of its own processes only, and a memory ceiling.
    assert d["IPAddressDeny"] == ["any"] and d["IPAddressAllow"] == ["localhost"]
    assert one["ProcSubset"] == "pid" and one["ProtectProc"] == "invisible"
    assert one["MemoryMax"].endswith("M") and 400 < int(one["MemoryMax"][:-1]) <= 1024


PROBE = textwrap.dedent("""
    import ctypes, mmap, sys
    import numpy as np
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        print("NO_MDWE"); sys.exit(0)
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        print("WX_ALLOWED"); sys.exit(1)
    except OSError:
        pass
    from edge.perception.manifest import load_manifest
    from edge.perception.runtime import open_model
    m = load_manifest(sys.argv[1])
    for family in ("blazeface_full_range", "dlib_resnet_v1"):
        for variant in ("float32", "int8"):
            model = open_model(m, family, variant=variant, num_threads=2)
            model.run(np.zeros((1, *model.input_shape[1:]), dtype=np.float32))
    import cv2, nacl.public, paho.mqtt.client, sqlite3, ssl
    cv2.GaussianBlur(np.zeros((64, 64, 3), np.uint8), (5, 5), 0)
    nacl.public.SealedBox(nacl.public.PrivateKey.generate().public_key).encrypt(b"x")
    print("OK")
""")


def test_memory_deny_write_execute_is_compatible_with_the_runtime() -> None:
    """The kernel's own W^X policy (prctl PR_SET_MDWE, what systemd uses on new kernels)
    applied to a process that runs every model on XNNPACK, OpenCV, PyNaCl and TLS."""
    if not (ROOT / "models" / "manifest.json").is_file():
        pytest.skip("models not built: run `make models`")
    r = subprocess.run([sys.executable, "-c", PROBE, str(ROOT / "models")], capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    if r.stdout.strip() == "NO_MDWE":
        pytest.skip("kernel without PR_SET_MDWE (Linux < 6.3)")
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr


def test_udev_rules_cover_both_usb_ids_and_pcie() -> None:
    rules = (ROOT / "deploy" / "udev" / "99-edge-coral.rules").read_text()
    lines = [x for x in rules.splitlines() if x and not x.startswith("#")]
    assert any('"1a6e"' in x and '"089a"' in x for x in lines)
    assert any('"18d1"' in x and '"9302"' in x for x in lines)
    assert any('SUBSYSTEM=="apex"' in x for x in lines)
    for x in lines:
        assert 'GROUP="plugdev"' in x and 'MODE="0660"' in x
        for part in x.split(", "):
            assert re.fullmatch(r'[A-Z_]+(\{\w+\})?(==|=|\+=)"[^"]*"', part), part
