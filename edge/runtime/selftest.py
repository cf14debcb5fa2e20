"""``edge selftest``: the installer's one command that says whether this device works.

Each check is a small function that takes only what it needs and returns a
:class:`Check` (pass/fail, what it saw, and the fix). ``run_checks`` wires them
to the device configuration; the CLI prints one line per check (or JSON) and
exits non-zero on any failure. Hardware, broker and clock probes are imported
or opened only inside their check.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import ssl
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edge.config import BrokerConfig, Config, ModelsConfig, SourceConfig, load
from edge.delivery.topics import Topics
from edge.errors import EdgeError, StackError

CHECK_NAMES = ("config", "stack", "camera", "accelerator", "models", "keys", "trust", "bundle", "order",
               "broker", "clock", "disk")
MIN_FREE_BYTES = 512 * 1024 * 1024
BUNDLE_EXPIRY_WARN_S = 7 * 24 * 3600


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


# --- camera ----------------------------------------------------------------------------

def check_camera(src: SourceConfig) -> Check:
    """Open the configured source and take one frame from it."""
    from edge.sources import open_source

    fix = ("connect and enable the camera (`rpicam-hello --list-cameras`), stop other users "
           "of it, and check [source] in edge.toml")
    what = f"{src.kind} {src.target or '0'}"
    t0 = time.monotonic()
    try:
        source = open_source(src.kind, src.target, fps=src.fps)
        try:
            frame = next(iter(source))
        finally:
            source.close()
    except StopIteration:
        return failed("camera", f"{what} gave no frame", fix)
    except StackError as e:  # not the camera: the venv's numpy is not apt's
        from edge.stack import FIX

        return failed("camera", f"{what}: {e}", FIX)
    except (EdgeError, OSError, ValueError) as e:
        return failed("camera", f"{what}: {e}", fix)
    h, w = frame.image.shape[:2]
    return passed("camera", f"{what}: {w}x{h} frame in {time.monotonic() - t0:.1f} s")


# --- the Python stack ------------------------------------------------------------------


def check_stack() -> Check:
    """numpy and OpenCV as imported are the versions the device lock names (apt's)."""
    from edge.stack import FIX, verify_stack

    try:
        return passed("stack", verify_stack())
    except StackError as e:
        return failed("stack", str(e), FIX)


# --- models and accelerator -------------------------------------------------------------


def check_models(models_dir: Path | None) -> Check:
    """Every file in the manifest exists with the recorded sha256."""
    from edge.perception.manifest import load_manifest

    try:
        manifest = load_manifest(models_dir)
        manifest.verify_hashes()
    except EdgeError as e:
        return failed("models", str(e), "reinstall the firmware package or copy models/ from "
                      "a `make models` build to the models dir; never edit model files")
    return passed("models", f"{len(manifest.models)} files match {manifest.models_dir}/"
                            "manifest.json")


def _tpu_disabled(library: str) -> Any:
    raise OSError(f"{library}: Edge TPU disabled in config (models.edgetpu = false)")


def check_accelerator(models: ModelsConfig) -> Check:
    """Open detector and embedder on the backend the service will use; one inference each."""
    import numpy as np

    from edge.perception.manifest import load_manifest
    from edge.perception.runtime import default_delegate_loader, open_model

    # The same choice as edge.runtime.wiring.build_device: no delegate when the config says so.
    loader = default_delegate_loader if models.edgetpu else _tpu_disabled
    parts: list[str] = []
    backends: set[str] = set()
    try:
        manifest = load_manifest(models.dir)
        for family, variant in ((models.detector, models.detector_variant),
                                (models.embedder, models.embedder_variant)):
            model = open_model(manifest, family, variant=None if variant == "auto" else variant,
                               delegate_loader=loader, num_threads=models.threads, verify=False)
            t0 = time.monotonic()
            model.run(np.zeros((1, *model.input_shape[1:]), dtype=np.float32))
            ms = (time.monotonic() - t0) * 1000
            backends.add(model.backend)
            parts.append(f"{model.model_id} on {model.backend} ({model.reason}; {ms:.0f} ms)")
    except EdgeError as e:
        return failed("accelerator", str(e), "see the models check; a TFLite runtime must "
                      "import in /opt/edge/venv (deploy/requirements-device.txt)")
    detail = "; ".join(parts)
    if models.edgetpu and backends != {"edgetpu"}:
        return failed("accelerator", detail,
                      "plug the Coral into a USB3 port (or seat the M.2 card), `sudo apt install "
                      "libedgetpu1-std` (the version the README's Coral section pins), replug, and "
                      "install the *_edgetpu.tflite files that `make edgetpu` compiles on an "
                      "x86-64 build host; or set models.edgetpu = false to run on the CPU on purpose")
    return passed("accelerator", detail)


# --- keys, trust, bundle, order -----------------------------------------------------------


def check_key_files(paths: Sequence[Path], uid: int) -> Check:
    """Each key exists, is a regular file owned by ``uid`` and readable by nobody else."""
    problems: list[str] = []
    for p in paths:
        try:
            st = p.stat()
        except FileNotFoundError:
            problems.append(f"{p} missing")
            continue
        except PermissionError:
            problems.append(f"{p} not readable (run as the service user)")
            continue
        mode = stat.S_IMODE(st.st_mode)
        if not stat.S_ISREG(st.st_mode):
            problems.append(f"{p} is not a regular file")
        if mode & 0o077:
            problems.append(f"{p} has mode {mode:04o}, must be 0600")
        if st.st_uid != uid:
            problems.append(f"{p} owned by uid {st.st_uid}, the service runs as uid {uid}")
        if not os.access(p, os.R_OK):
            problems.append(f"{p} is not readable by uid {os.geteuid()}")
    if problems:
        return failed("keys", "; ".join(problems),
                      "provision with `sudo /opt/edge/deploy/install.sh --provision DIR` (sets "
                      "owner edge and mode 0600), or `chown edge: KEY && chmod 0600 KEY`")
    return passed("keys", f"{len(paths)} key files, mode 0600, owner uid {uid}")


def check_trust(trust_file: Path) -> Check:
    from edge.watchlist.trust import load_pinned

    try:
        root = load_pinned(trust_file.read_bytes())
    except OSError as e:
        return failed("trust", f"cannot read {trust_file}: {e.strerror}",
                      "copy the pinned trust file from the signing authority to trust.trust_file")
    except EdgeError as e:
        return failed("trust", f"{trust_file}: {e}", "re-provision the authority's pinned trust "
                      "file; never edit it by hand")
    roles = ", ".join(f"{r} {len(v.keyids)}/{v.threshold}" for r, v in sorted(root.roles.items()))
    return passed("trust", f"trust v{root.version}: {roles}")


def check_bundle(cfg: Config, now: datetime) -> Check:
    """The active bundle (or else trust.bundle_file) verifies for this device, now.

    Mirrors ``edge.runtime.active.ActiveWatchlist.load`` without installing anything.
    """
    from edge.accountability.governance import check_threshold
    from edge.perception.manifest import load_manifest
    from edge.runtime.active import device_context
    from edge.watchlist.state import BundleStore

    fix = (f"publish a bundle signed for {cfg.device.id} on {cfg.topics.bundle} "
           "(`edge bundle build|sign`), or set trust.bundle_file")
    where = "bundle"
    try:
        ctx = device_context(cfg, load_manifest(cfg.models.dir))
        if cfg.matching.threshold is not None:
            check_threshold(cfg.matching.threshold, ctx.threshold_floor, "config matching.threshold")
        store = BundleStore(cfg.state.dir / "bundle")
        data, where, last = store.active_bytes(), "active bundle", store.state()
        if data is None and cfg.trust.bundle_file is not None:
            data, where, last = cfg.trust.bundle_file.read_bytes(), str(cfg.trust.bundle_file), None
        if data is None:
            return failed("bundle", f"no bundle installed in {store.dir}", fix)
        b = ctx.verify_bundle(data, now, last)
    except OSError as e:
        return failed("bundle", f"cannot read {e.filename}: {e.strerror}", fix)
    except EdgeError as e:
        return failed("bundle", f"{where} refused: {e}", fix)
    h = b.header
    left = (h.expires_at - now).total_seconds()
    detail = (f"{h.bundle_id} v{h.version} ({where}), {h.entry_count} entries, expires "
              f"{h.expires_at.isoformat()}")
    if left < BUNDLE_EXPIRY_WARN_S:
        detail += f" (in {left / 3600:.0f} h: ask for a new bundle)"
    return passed("bundle", detail)


def check_order(cfg: Config, now: datetime) -> Check:
    from edge.perception.manifest import load_manifest
    from edge.runtime.active import device_context

    fix = ("install a deployment order signed for this device and camera at trust.order_file; "
           "outside a valid order the device detects nothing")
    try:
        ctx = device_context(cfg, load_manifest(cfg.models.dir))
        order = ctx.verify_order(cfg.trust.order_file.read_bytes())
    except OSError as e:
        return failed("order", f"cannot read {e.filename}: {e.strerror}", fix)
    except EdgeError as e:
        return failed("order", f"{cfg.trust.order_file}: {e}", fix)
    status = order.check(now, cfg.device.id, cfg.device.camera_id)
    if not status.active:
        return failed("order", status.reason, fix)
    return passed("order", f"{order.order_id} at {order.site}: {status.reason}")


# --- broker ---------------------------------------------------------------------------------


def check_broker(broker: BrokerConfig, device_id: str, topics: Topics, timeout: float = 10.0
                 ) -> Check:
    """TLS connect with the device identity, then publish and read back on <prefix>/selftest."""
    from paho.mqtt import client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    topic = topics.selftest
    nonce = uuid.uuid4().hex.encode()
    done = threading.Event()
    state: dict[str, Any] = {}
    fix = (f"check broker.host/port ({broker.host}:{broker.port}) and the firewall; the device "
           f"certificate must be issued by the broker's device CA with CN={device_id}, not "
           "revoked, and the clock must be right")

    def on_connect(c: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
        state["connack"] = rc
        if rc.is_failure:
            done.set()
        else:
            c.subscribe(topic, qos=1)

    def on_disconnect(_c: mqtt.Client, _u: object, _f: object, rc: Any, _p: object) -> None:
        # Closed before any CONNACK: with TLS 1.3 a refused client certificate (revoked,
        # wrong CA) shows only here; waiting on would only see paho reconnect and fail again.
        if "connack" not in state:
            state["closed"] = rc
            done.set()

    def on_subscribe(c: mqtt.Client, _u: object, _m: int, rcs: list[Any], _p: object) -> None:
        state["suback"] = rcs[0]
        state["t0"] = time.monotonic()
        c.publish(topic, nonce, qos=1)

    def on_publish(_c: mqtt.Client, _u: object, _m: int, rc: Any, _p: object) -> None:
        state["puback"] = rc
        if rc.is_failure:
            done.set()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload == nonce:
            state["rtt"] = time.monotonic() - state["t0"]
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2,
                         client_id=f"{device_id}-selftest-{nonce[:6].decode()}",
                         protocol=mqtt.MQTTv5)
    client.on_connect, client.on_subscribe = on_connect, on_subscribe
    client.on_disconnect = on_disconnect
    client.on_publish, client.on_message = on_publish, on_message
    if broker.tls:
        files = {"broker.ca": broker.ca, "broker.cert": broker.cert, "broker.key": broker.key}
        missing = [f"{k} = {v}" for k, v in files.items() if v is None or not Path(v).is_file()]
        if missing:
            return failed("broker", "missing: " + ", ".join(missing),
                          "copy the CA, device certificate and key from deploy/pki/pki.sh "
                          "(install.sh --provision DIR)")
    try:
        if broker.tls:
            ctx = ssl.create_default_context(cafile=str(broker.ca))
            ctx.load_cert_chain(str(broker.cert), str(broker.key))
            client.tls_set_context(ctx)
        client.connect(broker.host, broker.port, keepalive=10)
    except OSError as e:  # ssl.SSLError and socket errors included
        what = f"{e.filename}: {e.strerror}" if e.filename else str(e)
        return failed("broker", f"{broker.host}:{broker.port}: {what}", fix)
    except ValueError as e:
        return failed("broker", f"{broker.host}:{broker.port}: {e}", fix)
    client.loop_start()
    try:
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    scheme = "mqtts" if broker.tls else "mqtt (no TLS)"
    if "rtt" in state:
        return passed("broker", f"{scheme}://{broker.host}:{broker.port} as {device_id}: "
                                f"round trip on {topic} in {state['rtt'] * 1000:.1f} ms")
    if "closed" in state:
        return failed("broker", f"{broker.host}:{broker.port} closed the connection before CONNACK "
                                f"({state['closed']}): the TLS handshake or the client certificate "
                                "was refused", fix)
    if "connack" not in state:
        return failed("broker", f"no CONNACK from {broker.host}:{broker.port} within {timeout:.0f}"
                                " s (TLS handshake refused or network down)", fix)
    for key in ("connack", "puback"):
        rc = state.get(key)
        if rc is not None and rc.is_failure:
            return failed("broker", f"{key.upper()} {rc.value:#04x} {rc}", fix)
    return failed("broker", f"no round trip on {topic} within {timeout:.0f} s "
                            f"(SUBACK {state.get('suback')})",
                  f"the broker ACL must grant {topic} readwrite (deploy/broker/acl)")


# --- clock and disk --------------------------------------------------------------------------


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h>; only ``status`` is read.
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("_rest", ctypes.c_long * 32)]


def kernel_clock_synced() -> bool | None:
    """adjtimex(2) with no changes: False when the kernel flags the clock unsynchronised."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != 5 and not tx.status & 0x40  # TIME_ERROR, STA_UNSYNC


def timedatectl_synced() -> bool | None:
    try:
        out = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = out.stdout.strip()
    return {"yes": True, "no": False}.get(value) if out.returncode == 0 else None


def check_clock(probes: Sequence[tuple[str, Callable[[], bool | None]]] = (
        ("timedatectl", timedatectl_synced), ("adjtimex", kernel_clock_synced))) -> Check:
    for name, probe in probes:
        synced = probe()
        if synced is True:
            return passed("clock", f"synchronised ({name})")
        if synced is False:
            return failed("clock", f"not synchronised ({name})",
                          "enable NTP: `sudo timedatectl set-ntp true`, allow UDP 123 or set "
                          "an NTP server in /etc/systemd/timesyncd.conf; bundle and order "
                          "windows depend on the time")
    return failed("clock", "cannot tell (no timedatectl, adjtimex refused)",
                  "install systemd-timesyncd or chrony and check `timedatectl`")


def check_disk(state_dir: Path, min_free: int = MIN_FREE_BYTES) -> Check:
    fix = (f"free space on the filesystem of {state_dir} (journal: `journalctl --vacuum-size`), "
           "or move state.dir to a larger volume")
    try:
        usage = shutil.disk_usage(state_dir)
    except OSError as e:
        return failed("disk", f"{state_dir}: {e.strerror}", "run the installer (creates "
                      "/var/lib/edge) or fix state.dir")
    if not os.access(state_dir, os.W_OK):
        return failed("disk", f"{state_dir} is not writable by uid {os.geteuid()}",
                      f"`chown edge: {state_dir}`; run selftest as the service user")
    mb = usage.free // (1024 * 1024)
    if usage.free < min_free:
        return failed("disk", f"{mb} MiB free in {state_dir}, need {min_free // 2**20}", fix)
    return passed("disk", f"{mb} MiB free in {state_dir}")


# --- wiring ------------------------------------------------------------------------------------


def service_uid() -> int:
    """The uid keys must belong to: the ``edge`` user when it exists, else whoever runs us."""
    import pwd

    try:
        return pwd.getpwnam("edge").pw_uid
    except KeyError:
        return os.geteuid()


def run_checks(cfg: Config, *, now: datetime, skip: Sequence[str] = (),
               timeout: float = 10.0) -> list[Check]:
    keys = [cfg.trust.device_key]
    if cfg.trust.signing_key is not None:
        keys.append(cfg.trust.signing_key)
    if cfg.broker.tls and cfg.broker.key is not None:
        keys.append(cfg.broker.key)
    plan: list[tuple[str, Callable[[], Check]]] = [
        ("stack", check_stack),
        ("camera", lambda: check_camera(cfg.source)),
        ("accelerator", lambda: check_accelerator(cfg.models)),
        ("models", lambda: check_models(cfg.models.dir)),
        ("keys", lambda: check_key_files(keys, service_uid())),
        ("trust", lambda: check_trust(cfg.trust.trust_file)),
        ("bundle", lambda: check_bundle(cfg, now)),
        ("order", lambda: check_order(cfg, now)),
        ("broker", lambda: check_broker(cfg.broker, cfg.device.id, cfg.topics, timeout)),
        ("clock", check_clock),
        ("disk", lambda: check_disk(cfg.state.dir)),
    ]
    out = [passed("config", f"device {cfg.device.id}, camera {cfg.device.camera_id}, "
                            f"site {cfg.device.site}")]
    for name, fn in plan:
        if name in skip:
            out.append(Check(name, True, "skipped on request (--skip)", skipped=True))
            continue
        try:
            out.append(fn())
        except Exception as e:  # one broken probe must not hide the others
            out.append(failed(name, f"check crashed: {type(e).__name__}: {e}",
                              "report this with the output of `edge -vv selftest`"))
    return out


def render(checks: Sequence[Check]) -> str:
    lines = []
    width = max(len(c.name) for c in checks)
    for c in checks:
        word = "SKIP" if c.skipped else "PASS" if c.ok else "FAIL"
        lines.append(f"{word} {c.name:<{width}}  {c.detail}")
        if not c.ok:
            lines.append(f"     {'':<{width}}  fix: {c.fix}")
    bad = [c.name for c in checks if not c.ok]
    skipped = [c.name for c in checks if c.skipped]
    ran = len(checks) - len(skipped)
    lines.append(f"selftest: {ran - len(bad)}/{ran} passed"
                 + (f"; skipped: {', '.join(skipped)}" if skipped else "")
                 + (f"; FAILED: {', '.join(bad)}" if bad else ""))
    return "\n".join(lines)


def _cmd(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        cfg = load(Path(args.config))
    except EdgeError as e:
        checks = [failed("config", str(e), f"fix {args.config} (see "
                         "/etc/edge/edge.toml.example)")]
    else:
        checks = run_checks(cfg, now=now, skip=args.skip, timeout=args.timeout)
    if args.json:
        print(json.dumps({"ok": all(c.ok for c in checks), "at": now.isoformat(),
                          "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        print(render(checks))
    sys.stdout.flush()
    return 0 if all(c.ok for c in checks) else 1


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("selftest", help="check camera, accelerator, models, keys, bundle, "
                              "order, broker, clock and disk; non-zero exit on any failure")
    p.add_argument("--config", default="/etc/edge/edge.toml", help="device config (TOML)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--skip", action="append", default=[], choices=CHECK_NAMES[1:],
                   help="skip a check (reported as SKIP), e.g. clock in a simulation")
    p.add_argument("--timeout", type=float, default=10.0, help="broker round-trip timeout (s)")
    p.set_defaults(func=_cmd)
