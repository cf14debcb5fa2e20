"""``edge selftest`` against real files, real models, real signatures and the shipped broker.

A device is provisioned in a temporary folder exactly as an installer would:
keys from ``edge.watchlist.keys`` (0600), a pinned trust root, a signed
deployment order and bundle, certificates from deploy/pki/pki.sh, and the
central broker config from deploy/broker. On this machine (no camera, no
Coral) the device config must fail exactly camera and accelerator (and clock
when the kernel says it is unsynchronised); the simulation config must pass.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge.delivery.topics import Topics
from edge.runtime import selftest
from edge.watchlist.keys import DEVICE, generate
from tests.broker import have_mosquitto
from tests.deploy_broker import DeployBroker, DeployPki, issue_pki
from tests.watchlist_world import FLEET, provision_documents

pytestmark = [pytest.mark.skipif(not have_mosquitto(), reason="needs mosquitto and openssl"),
              pytest.mark.slow]  # a deployed broker and `edge selftest` subprocesses

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
DEVICE_ID, CAMERA_ID = "dev-a", "cam-1"


def host_clock_synced() -> bool:
    """Independent of edge.runtime.selftest: the kernel's own verdict via ntp_adjtime's return."""
    buf = ctypes.create_string_buffer(512)  # larger than struct timex; modes = 0 reads only
    state = ctypes.CDLL(None, use_errno=True).adjtimex(buf)
    return int(state) not in (-1, 5)  # 5 = TIME_ERROR: clock not synchronised


@dataclass
class Provisioned:
    dir: Path
    broker: DeployBroker
    pki: DeployPki

    def config(self, *, source: str, models: str, extra: str = "") -> Path:
        path = self.dir / "edge.toml"
        path.write_text(f"""
[device]
id = "{DEVICE_ID}"
camera_id = "{CAMERA_ID}"
site = "boulevard-north"
fleet_id = "{FLEET}"

{source}

[models]
dir = "{MODELS}"
{models}

[trust]
trust_file = "trust.json"
device_key = "keys/device.x25519"
order_file = "order.json"
bundle_file = "bundle.bin"

[state]
dir = "state"

[broker]
host = "{self.broker.host}"
port = {self.broker.port}
ca = "keys/ca.crt"
cert = "keys/device.crt"
key = "keys/device.key"
{extra}
""")
        return path


def _write(path: Path, data: bytes, mode: int) -> None:
    path.write_bytes(data)
    path.chmod(mode)


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioned]:
    if not (MODELS / "manifest.json").is_file():
        pytest.skip("models not built: run `make models`")

    base = tmp_path_factory.mktemp("device")
    pki = issue_pki(tmp_path_factory.mktemp("pki"))
    broker = DeployBroker(tmp_path_factory.mktemp("broker"), pki).start()
    keys = base / "keys"
    keys.mkdir(mode=0o700)
    dkey = generate(DEVICE, DEVICE_ID, keys / "device.x25519")
    (keys / "device.x25519.pub").unlink()  # public half goes to the bundle builder, not here
    ident = pki.ids[DEVICE_ID]
    _write(keys / "ca.crt", ident.ca.read_bytes(), 0o600)
    _write(keys / "device.crt", ident.cert.read_bytes(), 0o600)
    _write(keys / "device.key", ident.key.read_bytes(), 0o600)
    # As install.sh --provision: the keys belong to the service user where it exists
    # (an installed device, e.g. make pi-check's root), else to whoever runs the tests.
    if os.geteuid() == 0:
        for k in keys.iterdir():
            os.chown(k, selftest.service_uid(), -1)
    (base / "state").mkdir(mode=0o750)

    now = datetime.now(UTC)
    provision_documents(base, DEVICE_ID, CAMERA_ID, "boulevard-north", now, dkey.public_key, MODELS)
    yield Provisioned(base, broker, pki)
    broker.stop()


def run_cli(config: Path, *extra: str) -> tuple[int, dict[str, object], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    js = subprocess.run([sys.executable, "-m", "edge", "selftest", "--config", str(config),
                         "--json", *extra], capture_output=True, text=True, env=env, timeout=120)
    text = subprocess.run([sys.executable, "-m", "edge", "selftest", "--config", str(config),
                           *extra], capture_output=True, text=True, env=env, timeout=120)
    assert js.returncode == text.returncode
    return js.returncode, json.loads(js.stdout), text.stdout


def test_on_this_machine_exactly_camera_and_accelerator_fail(device: Provisioned) -> None:
    cfg = device.config(source='[source]\nkind = "picamera"\ntarget = "0"',
                        models="edgetpu = true")
    rc, report, text = run_cli(cfg)
    print(text)  # shown with -s: what an installer sees
    checks = {c["name"]: c for c in report["checks"]}  # type: ignore[attr-defined]
    assert list(checks) == list(selftest.CHECK_NAMES)
    failing = {n for n, c in checks.items() if not c["ok"]}
    expected = {"camera", "accelerator"} | (set() if host_clock_synced() else {"clock"})
    assert failing == expected, {n: checks[n]["detail"] for n in failing}
    assert rc == 1 and report["ok"] is False
    for name in failing:
        assert checks[name]["fix"], name
        assert f"FAIL {name}" in text
    assert "picamera2" in checks["camera"]["detail"]
    assert "on cpu" in checks["accelerator"]["detail"]
    assert "Coral" in checks["accelerator"]["fix"]
    fix_lines = [x for x in text.splitlines() if x.lstrip().startswith("fix: ")]
    assert len(fix_lines) == len(failing)


def test_simulation_config_passes(device: Provisioned, tmp_path: Path) -> None:
    scene = tmp_path / "scene"
    subprocess.run([sys.executable, "-m", "edge", "scenario", "--out", str(scene), "--no-video",
                    "--seconds", "10", "--size", "640x360", "--face-min", "30",
                    "--face-max", "60", "--n-others", "0"], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    cfg = device.config(source=f'[source]\nkind = "scenario"\ntarget = "{scene}/scene.json"',
                        models="edgetpu = false")
    skip = () if host_clock_synced() else ("--skip", "clock")
    rc, report, text = run_cli(cfg, *skip)
    print(text)
    bad = {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}  # type: ignore[attr-defined]
    assert rc == 0 and report["ok"] is True, bad
    assert "FAIL" not in text
    details = {c["name"]: c["detail"] for c in report["checks"]}  # type: ignore[attr-defined]
    assert "640x360" in details["camera"]
    assert "round trip" in details["broker"]
    assert "order-1" in details["order"]
    assert "bundle-1 v1" in details["bundle"]


def test_revoked_device_certificate_fails_the_broker_check(device: Provisioned) -> None:
    from edge.config import BrokerConfig

    rev = device.pki.revoked
    cfg = BrokerConfig(host=device.broker.host, port=device.broker.port, ca=rev.ca,
                       cert=rev.cert, key=rev.key)
    c = selftest.check_broker(cfg, "dev-revoked", Topics.for_device("dev-revoked"), timeout=60)
    assert not c.ok and "CN=dev-revoked" in c.fix
    assert "closed the connection before CONNACK" in c.detail, c  # at once, not after the timeout


def test_another_devices_identity_gets_no_round_trip(device: Provisioned) -> None:
    from edge.config import BrokerConfig

    b = device.pki.ids["dev-b"]
    cfg = BrokerConfig(host=device.broker.host, port=device.broker.port, ca=b.ca, cert=b.cert,
                       key=b.key)
    # dev-b's certificate, dev-a's topics: the ACL refuses the publish (PUBACK 0x87).
    c = selftest.check_broker(cfg, "dev-b", Topics.for_device("dev-a"), timeout=30)
    assert not c.ok and "0x87" in c.detail, c
    assert selftest.check_broker(cfg, "dev-b", Topics.for_device("dev-b"), timeout=30).ok


# --- the small checks on their own -------------------------------------------------------


def test_key_modes_and_owner(tmp_path: Path) -> None:
    good, loose = tmp_path / "good.key", tmp_path / "loose.key"
    _write(good, b"k", 0o600)
    _write(loose, b"k", 0o644)
    assert selftest.check_key_files([good], os.geteuid()).ok
    bad = selftest.check_key_files([good, loose, tmp_path / "missing.key"], os.geteuid())
    assert not bad.ok
    assert "loose.key has mode 0644" in bad.detail and "missing.key missing" in bad.detail
    assert "good.key" not in bad.detail
    other = selftest.check_key_files([good], os.geteuid() + 1)
    assert not other.ok and "owned by uid" in other.detail


def test_disk_threshold(tmp_path: Path) -> None:
    assert selftest.check_disk(tmp_path, min_free=1).ok
    c = selftest.check_disk(tmp_path, min_free=1 << 62)
    assert not c.ok and "MiB free" in c.detail and c.fix
    assert not selftest.check_disk(tmp_path / "absent").ok


def test_clock_uses_the_first_probe_that_knows() -> None:
    assert selftest.check_clock([("a", lambda: None), ("b", lambda: True)]).detail == \
        "synchronised (b)"
    c = selftest.check_clock([("a", lambda: False), ("b", lambda: True)])
    assert not c.ok and "set-ntp" in c.fix
    assert not selftest.check_clock([("a", lambda: None)]).ok


def test_order_outside_its_window_fails(device: Provisioned) -> None:
    from edge.config import load

    cfg = load(device.config(source='[source]\nkind = "picamera"', models=""))
    assert selftest.check_order(cfg, datetime.now(UTC)).ok
    late = selftest.check_order(cfg, datetime.now(UTC) + timedelta(days=60))
    assert not late.ok and "ended" in late.detail
    expired = selftest.check_bundle(cfg, datetime.now(UTC) + timedelta(days=60))
    assert not expired.ok and "expire" in expired.detail.lower(), expired


def test_tampered_model_fails_the_models_check(tmp_path: Path) -> None:
    if not (MODELS / "manifest.json").is_file():
        pytest.skip("models not built: run `make models`")
    copy = tmp_path / "models"
    copy.mkdir()
    for f in MODELS.iterdir():
        if f.suffix in (".json", ".tflite", ".npz"):
            (copy / f.name).write_bytes(f.read_bytes())
    assert selftest.check_models(copy).ok
    victim = next(copy.glob("blazeface_short_range_fp16.tflite"))
    data = bytearray(victim.read_bytes())
    data[-1] ^= 1
    victim.write_bytes(bytes(data))
    c = selftest.check_models(copy)
    assert not c.ok and "blazeface_short_range_fp16" in c.detail


def test_unreadable_config_is_the_one_failing_check(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "edge", "selftest", "--json", "--config",
                        str(tmp_path / "absent.toml")], capture_output=True, text=True, env=env,
                       timeout=60)
    report = json.loads(r.stdout)
    assert r.returncode == 1 and [c["name"] for c in report["checks"]] == ["config"]
    assert "absent.toml" in report["checks"][0]["detail"] and report["checks"][0]["fix"]
