"""``make run``: the whole job on one machine, through the real tools.

It plays the authority (keys, trust, a watchlist bundle enrolled from real
photos, a deployment order), the installer (device keys and config) and the
operator (``edge alerts``), starts a private Mosquitto on a free loopback port,
generates a boulevard scene and runs ``edge run`` on it. Ctrl-C stops it all.

The demo broker listens on loopback without TLS so that it needs no PKI; the
device and the consumer use the same client code as with TLS (see deploy/).
``prepare`` is also what the end-to-end tests use to provision a device.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge.cli import main as edge_main
from edge.errors import BrokerError, EdgeError
from edge.formats import iso_utc
from edge.perception.manifest import load_manifest
from edge.scenario.broker import free_port, port_open, start_mosquitto, stop_mosquitto
from edge.scenario.render import watchlisted_passes
from edge.watchlist.model import embedder_floor, reliable_width

ROOT = Path(__file__).resolve().parents[2]  # the checkout: edge/scenario/demo.py
# A detected face box is within about 10% of the rendered face's width (measured on these
# scenes: 43.4 px rendered, 44 detected; a 48 px photo, 43 to 51), so listed faces are planned
# this much above the model card's reliable width, where every one of them is matched.
LISTED_MARGIN = 1.15

# Who is on the demo watchlist, and the photo each is enrolled from. The scene
# walks other photos of them where the test data has more than one.
ENROLMENT = (
    ("obama", "obama.jpg", "SUBJ-0001", "wanted", "WARRANT-2026-0042"),
    ("biden", "biden.jpg", "SUBJ-0002", "missing_or_vulnerable", "MISSING-2026-0107"),
    ("tom_hanks", "Tom_Hanks_54745.png", "SUBJ-0003", "risk_of_harm", "COURT-ORDER-2026-17"),
)


@dataclass(frozen=True)
class Deployment:
    work: Path
    config: Path
    scene: Path
    state: Path
    trust: Path
    signer: Path
    device_key: Path
    bundle: Path
    order: Path
    subjects: dict[str, str]  # scenario identity -> subject_ref


@contextlib.contextmanager
def local_broker(work: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 100000\n")
    with (work / "mosquitto.log").open("wb") as log:
        try:
            proc = start_mosquitto(conf, lambda: port_open("127.0.0.1", port), stderr=log,
                                   poll=0.05)
        except BrokerError as e:
            raise BrokerError(f"{e}; see {work / 'mosquitto.log'}") from e
    try:
        yield proc
    finally:
        stop_mosquitto(proc)


def edge_tool(*argv: str) -> None:
    """``edge ARGV`` in this process; a non-zero exit is an ``EdgeError``."""
    # The tools print JSON receipts for scripts; the demo shows only what matters.
    with contextlib.redirect_stdout(io.StringIO()):
        rc = edge_main(list(argv))
    if rc != 0:
        raise EdgeError(f"`edge {' '.join(argv)}` failed ({rc})")


def stop_child(proc: subprocess.Popen[bytes], sig: int, wait_s: float) -> None:
    """Signal a child the demo started, wait for it, and kill it if it does not stop in time."""
    if proc.poll() is None:
        proc.send_signal(sig)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(wait_s)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def run_device(config: Path, port: int, *, settle_s: float,
               then: Callable[[], None] = lambda: None) -> int:
    """``edge run`` on ``config`` beside ``edge alerts`` on the local broker at ``port``.

    When the run ends, waits ``settle_s`` for the last alerts to arrive, then calls
    ``then``; Ctrl-C stops the run. The exit status: 0 when the run ended by itself or
    by SIGTERM, else the run's.
    """
    edge = [sys.executable, "-m", "edge"]
    alerts = subprocess.Popen([*edge, "alerts", "--port", str(port), "--prefix", "edge"])
    run = subprocess.Popen([*edge, "run", "--config", str(config)])
    try:
        run.wait()
        time.sleep(settle_s)
        then()
    except KeyboardInterrupt:
        print("\ndemo: stopping", flush=True)
        run.send_signal(signal.SIGTERM)  # a no-op when the run has already ended
        run.wait(30)
    finally:
        stop_child(alerts, signal.SIGINT, 5)
    return 0 if run.returncode in (0, -signal.SIGTERM) else run.returncode


def prepare(work: Path, testdata: Path, *, port: int, device_id: str = "dev-demo",
            camera_id: str = "cam-1", site: str = "Demo Boulevard, north end",
            scenario: Sequence[str] = (), realtime: bool = True, threshold: float | None = None,
            order_window: tuple[timedelta, timedelta] = (timedelta(hours=-1), timedelta(days=1)),
            now: datetime | None = None, extra_config: str = "", video: bool = False,
            false_alert_budget: int | None = None, require_two_verifiers: bool = False) -> Deployment:
    """Provision a device in ``work`` as the authority and installer would.

    The bundle's threshold defaults to the default recogniser's floor from its model card;
    the device raises it to the deployment's operating point.
    """
    now = now or datetime.now(UTC)
    work.mkdir(parents=True, exist_ok=True)
    keys, central = work / "keys", work / "central"
    keys.mkdir(exist_ok=True)
    central.mkdir(exist_ok=True)
    signer, device_key = central / "authority.ed25519", keys / "device.x25519"
    if not signer.exists():
        edge_tool("keys", "generate", "--kind", "signer", "--name", "authority", "--out", str(signer))
    if not device_key.exists():
        edge_tool("keys", "generate", "--kind", "device", "--name", device_id, "--out", str(device_key))
    device_signer = keys / "device.ed25519"  # signs the audit checkpoints
    if not device_signer.exists():
        edge_tool("keys", "generate", "--kind", "signer", "--name", f"{device_id}-audit", "--out",
                  str(device_signer))
    trust = keys / "trust.json"
    edge_tool("trust", "init", "--key", f"{signer}.pub", "--role", "trust=authority",
              "--role", "watchlist=authority", "--role", "order=authority", "--out", str(trust))
    edge_tool("trust", "sign", "--key", str(signer), str(trust))

    enrol = central / "enrolment"
    enrol.mkdir(exist_ok=True)
    rows = []
    for _ident, photo, subject, category, authority in ENROLMENT:
        shutil.copyfile(testdata / photo, enrol / photo)
        rows.append({"image": photo, "subject_ref": subject, "category": category,
                     "authority_ref": authority, "offence_code": "",
                     "image_source": "custody-record" if category == "wanted" else "family",
                     "image_date": "2024-01-01", "expires_at": iso_utc(now + timedelta(days=30), "seconds")})
    with (central / "entries.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    bundle = central / "bundle.bin"
    manifest = load_manifest()  # the models `edge run` and `edge bundle build` find by default
    if threshold is None:
        threshold = embedder_floor(manifest)
    edge_tool("bundle", "build", "--images", str(enrol), "--csv", str(central / "entries.csv"),
              "--device", f"{device_id}={device_key}.pub", "--fleet", "demo-fleet", "--version",
              str(int(now.timestamp())), "--issuer", "Demo Authority", "--threshold", str(threshold),
              "--valid-days", "7", "--out", str(bundle),
              "--now", iso_utc(now - timedelta(minutes=5), "seconds"))
    edge_tool("bundle", "sign", "--key", str(signer), str(bundle))

    order_doc = {
        "order_id": "ORD-DEMO-1", "issuer": "Demo Authority",
        "issued_at": iso_utc(now - timedelta(minutes=5), "seconds"), "fleet_id": "demo-fleet",
        "device_id": device_id, "camera_ids": [camera_id], "site": site,
        "purpose": "Locate people on the signed watchlist (demonstration)",
        "valid_from": iso_utc(now + order_window[0], "seconds"),
        "valid_until": iso_utc(now + order_window[1], "seconds"),
        "authorising_ref": "AUTH-DEMO-1", "dpia_ref": "DPIA-DEMO-1",
        "equality_impact_ref": "EIA-DEMO-1", "rights_impact_ref": "HRIA-DEMO-1",
        "public_notice_ref": "NOTICE-DEMO-1", "order_seq": 1, "retention_days": 31,
        "public_contact": "lfr-enquiries@example.org", "require_two_verifiers": require_two_verifiers,
    }
    if false_alert_budget is not None:  # false alerts per 10,000 faces (edge.watchlist.operating)
        order_doc["false_alert_budget"] = false_alert_budget
    (central / "order.json").write_text(json.dumps(order_doc, indent=1))
    order = keys / "order.bin"
    edge_tool("order", "sign", "--key", str(signer), "--out", str(order), str(central / "order.json"))

    scene_dir = work / "scene"
    scene = scene_dir / "scene.json"
    # Listed people walk at or above the card's reliable width (``scenario`` may override it).
    listed_min = math.ceil(reliable_width(manifest) * LISTED_MARGIN)
    edge_tool("scenario", "--out", str(scene_dir), *(() if video else ("--no-video",)), "--faces",
              str(testdata), "--listed-min", str(listed_min), *scenario)
    # A video file is what a device's decoder sees; the scenario source re-renders
    # the frames in memory instead (faster to set up, no compression).
    kind, target = ("file", scene_dir / "scene.mp4") if video else ("scenario", scene)

    state = work / "state"
    config = work / "edge.toml"
    config.write_text(f"""# written by edge.scenario.demo
[device]
id = "{device_id}"
camera_id = "{camera_id}"
site = "{site}"
fleet_id = "demo-fleet"

[source]
kind = "{kind}"
target = "{target}"
realtime = {"true" if realtime else "false"}

[trust]
trust_file = "{trust}"
device_key = "{device_key}"
signing_key = "{device_signer}"
order_file = "{order}"
bundle_file = "{bundle}"

[state]
dir = "{state}"

[broker]
host = "127.0.0.1"
port = {port}
tls = false
{extra_config}""")
    subjects = {ident: subject for ident, _p, subject, _c, _a in ENROLMENT}
    return Deployment(work, config, scene, state, trust, signer, device_key, bundle, order, subjects)


def add_demo_arguments(ap: argparse.ArgumentParser) -> None:
    """The demos' ``--work`` folder, ``--testdata`` faces and scene ``--seconds``."""
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "run")
    ap.add_argument("--testdata", type=Path,
                    default=Path(os.environ.get("EDGE_TESTDATA", ROOT / ".cache" / "testdata")))
    ap.add_argument("--seconds", type=int, default=40)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edge.scenario.demo", description=__doc__)
    add_demo_arguments(ap)
    args = ap.parse_args(argv)
    if args.work.exists():
        shutil.rmtree(args.work)
    port = free_port()
    print(f"demo: provisioning in {args.work} (broker on 127.0.0.1:{port})", flush=True)
    dep = prepare(args.work, args.testdata, port=port,
                  scenario=("--seconds", str(args.seconds), "--seed", "7"))
    expected = len(watchlisted_passes(json.loads(dep.scene.read_text())))
    print(f"demo: scene of {args.seconds} s; {expected} watchlisted passes should alert", flush=True)
    with local_broker(args.work, port):
        rc = run_device(dep.config, port, settle_s=1.0)
    print(f"demo: done; audit log: .venv/bin/edge audit verify --dir {dep.state / 'audit'}")
    return rc


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
