"""``edge alerts``: subscribe to ``<prefix>/+/alerts`` and show or check what arrives.

For installers (does my device alert?) and for the central side (is the stream
complete?). ``--check`` validates every alert against the contract, reports
redeliveries (de-duplicated on ``event_id``) and ``seq`` gaps per device, and
exits non-zero on any violation. The device is the one the topic names
(``<prefix>/<device>/alerts``, which the broker lets only that device publish); an
alert claiming another device id is invalid. No payload stops the command.
Exit codes: 0 fine, 1 contract violation or gap (with ``--check``), 3 ``--count``
not reached before ``--timeout``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from edge.config import DEFAULT_PATH
from edge.delivery.contract import AlertStream, device_from_topic, format_gaps, too_deep, validate_alert
from edge.delivery.topics import ROOT, fleet_filter
from edge.errors import BrokerError

EXIT_OK, EXIT_INVALID, EXIT_TIMEOUT = 0, 1, 3


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "alerts", help="subscribe to alerts and print or check them",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default 8883 with --ca, else 1883")
    p.add_argument("--ca", type=Path, help="CA certificate: enables TLS")
    p.add_argument("--cert", type=Path, help="client certificate (TLS)")
    p.add_argument("--key", type=Path, help="client key (TLS)")
    p.add_argument("--prefix", default=ROOT, help="topic root; subscribes <prefix>/+/alerts")
    p.add_argument("--topic", help="subscribe to this topic filter instead")
    p.add_argument("--client-id", default=None)
    p.add_argument("--session-expiry", type=int, default=0, metavar="S",
                   help="keep the session on the broker for S seconds (durable consumer)")
    p.add_argument("--json", action="store_true", help="print each alert as one JSON line")
    p.add_argument("--check", action="store_true",
                   help="validate against the alert contract; non-zero exit on violations")
    p.add_argument("--count", type=int, default=None, metavar="N",
                   help="exit after N distinct alerts")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="exit after S s")
    p.set_defaults(func=run)
    o = subparsers.add_parser("outbox", help="the device's outbox: quarantine a corrupt one")
    osub = o.add_subparsers(dest="outbox_command", metavar="ACTION", required=True)
    q = osub.add_parser("quarantine", help="move a corrupt outbox aside (kept) with an audit record;"
                                          " the device must be stopped")
    q.add_argument("--config", type=Path, default=DEFAULT_PATH)
    q.set_defaults(func=run_quarantine)


def run_quarantine(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from edge.audit import records
    from edge.audit.log import AuditLog
    from edge.config import load
    from edge.delivery.outbox import quarantine

    cfg = load(args.config)
    now = datetime.now(UTC)
    state = cfg.state.dir
    # The audit log first: a running device holds its lock, so this refuses while it runs.
    with AuditLog.open(state / "audit", cfg.device.id, now) as audit:
        q = quarantine(state / "outbox.sqlite3", now)
        records.outbox_quarantined(audit, now, file=q.file, quarantined_as=q.quarantined_as, sha256=q.sha256,
                                   size=q.size, reason=q.reason)
    print(f"outbox moved aside to {state / q.quarantined_as} ({q.reason}); its undelivered events"
          " are not published; `edge run` starts with an empty outbox", file=sys.stderr)
    return EXIT_OK


@dataclass
class Consumer:
    """What the command does with each payload; no MQTT inside, so tests can feed it."""

    check: bool
    as_json: bool
    out: TextIO
    err: TextIO
    stream: AlertStream = field(default_factory=AlertStream)
    invalid: int = 0

    def feed(self, topic: str, payload: bytes) -> None:
        device = device_from_topic(topic)
        try:
            event = json.loads(payload)
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            self.invalid += 1
            print(f"INVALID {topic}: not JSON ({type(e).__name__}: {str(e)[:200]})", file=self.err)
            return
        if too_deep(event):  # nothing below (repr, dumps, checks) has to walk it
            self.invalid += 1
            print(f"INVALID {topic}: nested deeper than the alert contract allows", file=self.err)
            return
        if self.check:
            problems = validate_alert(event, topic_device=device)
            if device is None:
                problems.append(f"topic: {topic!r} does not name a device (<prefix>/<device>/alerts)")
            if problems:
                self.invalid += 1
                ref = event.get("event_id", "?") if isinstance(event, dict) else "?"
                print(f"INVALID {topic} event {ref}: " + "; ".join(problems), file=self.err)
        if not isinstance(event, dict):
            return
        if not self.stream.add(event, device):
            print(f"duplicate {event.get('event_id')} (redelivery, ignored)", file=self.err)
            return
        if self.as_json:
            print(json.dumps(event, separators=(",", ":"), sort_keys=True), file=self.out)
        else:
            print(compact(event, device), file=self.out)
        self.out.flush()

    @property
    def distinct(self) -> int:
        return len(self.stream.seen)

    def summary(self) -> tuple[str, bool]:
        gaps = self.stream.gaps()
        text = (f"{self.distinct} alerts, {self.stream.duplicates} duplicates,"
                f" {self.invalid} invalid; seq gaps: {format_gaps(gaps) or 'none'}")
        return text, self.invalid == 0 and not gaps


def compact(e: dict[str, Any], device: str | None = None) -> str:
    """One line; ``device`` is the topic's device (a different claim in the payload is shown)."""
    bundle = e.get("bundle") if isinstance(e.get("bundle"), dict) else {}
    assert isinstance(bundle, dict)
    crop = " +crop" if e.get("crop_jpeg_b64") else ""

    def num(k: str) -> str:
        v = e.get(k)
        return f"{v:.3f}" if isinstance(v, int | float) else "?"

    claimed = e.get("device_id", "?")
    who = claimed if device is None or claimed == device else f"{device} (claims {claimed})"
    return (f"{e.get('captured_at', '?')} {who}/{e.get('camera_id', '?')}"
            f" seq={e.get('seq', '?')} POSSIBLE MATCH {e.get('subject_ref', '?')}"
            f" [{e.get('category', '?')}] score={num('score')} thr={num('threshold')}"
            f" margin={num('margin')} track={e.get('track_id', '?')}"
            f" bundle={bundle.get('id', '?')}@v{bundle.get('version', '?')}"
            f" event={e.get('event_id', '?')}{crop}")


def run(args: argparse.Namespace) -> int:
    from paho.mqtt import client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    tls = args.ca is not None
    port = args.port if args.port is not None else (8883 if tls else 1883)
    topic = args.topic or fleet_filter("alerts", args.prefix)
    consumer = Consumer(check=args.check, as_json=args.json, out=sys.stdout, err=sys.stderr)
    failure: list[str] = []

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=args.client_id or "",
                         protocol=mqtt.MQTTv5)

    def on_connect(c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            failure.append(f"broker refused the connection: {reason}")
            return
        c.subscribe(topic, qos=1)

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        consumer.feed(str(msg.topic), bytes(msg.payload))

    def on_subscribe(_c: Any, _u: Any, _mid: Any, reasons: Any, _p: Any) -> None:
        if any(r.is_failure for r in reasons):
            failure.append(f"subscription to {topic} refused: {reasons[0]}")
            return
        print(f"listening on {args.host}:{port} {topic}" + (" (checking)" if args.check else ""),
              file=sys.stderr, flush=True)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.suppress_exceptions = False
    try:
        if tls:
            client.tls_set(ca_certs=str(args.ca),
                           certfile=str(args.cert) if args.cert else None,
                           keyfile=str(args.key) if args.key else None)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = args.session_expiry
        client.connect(args.host, port, keepalive=30, clean_start=args.session_expiry == 0,
                       properties=props)
    except (OSError, ValueError) as e:
        raise BrokerError(f"cannot connect to {args.host}:{port}: {e}") from e

    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    timed_out = False
    try:
        while args.count is None or consumer.distinct < args.count:
            if failure:
                raise BrokerError(failure[0])
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = args.count is not None
                break
            rc = client.loop(timeout=0.2)
            if rc != 0:
                # Keep listening through broker restarts; the session (if any) resumes.
                time.sleep(0.5)
                with contextlib.suppress(OSError):
                    client.reconnect()
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()

    text, clean = consumer.summary()
    print(text, file=sys.stderr)
    if args.check and not clean:
        return EXIT_INVALID
    if timed_out:
        print(f"timed out with {consumer.distinct} of {args.count} alerts", file=sys.stderr)
        return EXIT_TIMEOUT
    return EXIT_OK
