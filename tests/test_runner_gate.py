"""The runner's gate and status transitions, fast: a fake device behind the runner's port.

The subprocess end-to-end tests show the same transitions through a broker; these
pin the rules themselves: recognition runs only while the order allows it and no
suspension holds, every change is audited once and flips the public LFR flag, and a
stop keeps the suspension in the last status.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from edge import config
from edge.delivery.mqtt import LinkHealth
from edge.delivery.outbox import OutboxStats
from edge.perception.types import Frame
from edge.runtime.emitter import AlertEmitter
from edge.runtime.notify import Notifier
from edge.runtime.runner import Runner
from edge.runtime.status import status_payload
from edge.watchlist.bundle import ModelRef

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@dataclass
class FakeLink:
    retained: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)

    def set_retained(self, leaf: str, doc: dict[str, Any]) -> None:
        self.retained.append((leaf, doc))

    def set_status(self, status: dict[str, Any]) -> None:
        self.statuses.append(status)

    def health(self) -> LinkHealth:
        return LinkHealth("connected", True, 1, 0, 0, None, None, 0,
                          OutboxStats(0, 0, 0, 0.0, False, 0, 0, 0))


@dataclass
class FakeLedger:
    suspended: str | None = None
    ticks: list[bool] = field(default_factory=list)

    def tick(self, _now: datetime, active: bool) -> None:
        self.ticks.append(active)

    def lfr_payload(self, active: bool, _now: datetime) -> dict[str, Any]:
        return {"live_facial_recognition": active}


@dataclass
class FakeRecognizer:
    processed: list[int] = field(default_factory=list)
    idled: list[int] = field(default_factory=list)

    def process(self, frame: Frame) -> list[Any]:
        self.processed.append(frame.index)
        return []

    def idle(self, frame: Frame) -> None:
        self.idled.append(frame.index)


@dataclass
class FakeCapture:
    frames_to_give: list[Frame]
    before_each: Any = None
    dropped: int = 0

    def frames(self) -> Iterator[Frame]:
        for f in self.frames_to_give:
            if self.before_each is not None:
                self.before_each(f)
            yield f


class FakeRecogniser:
    def to_json(self) -> dict[str, object]:
        return {"family": "dlib_resnet_v1", "eligible_default": True}


@dataclass
class FakeWatch:
    """The active watchlist as the runner asks it; the order's verdict is set by the test."""

    verdict: tuple[bool, str] = (False, "no valid deployment order (missing)")
    recogniser: FakeRecogniser = field(default_factory=FakeRecogniser)

    def purge_if_ended(self, _now: datetime) -> None:
        return None

    def drop_expired(self, _now: datetime) -> None:
        return None

    def allowed(self, _now: datetime) -> tuple[bool, str]:
        return self.verdict

    def summary(self) -> str:
        return "bundle b1 v1 (3 subjects)"

    def bundle_status(self) -> dict[str, Any]:
        return {"id": "b1", "version": 1, "threshold": 0.95}

    def order_status(self) -> dict[str, Any]:
        return {"valid": self.verdict[0]}

    def trust_status(self) -> dict[str, Any]:
        return {"version": 1, "refused": None}


@dataclass
class FakeAudit:
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def append(self, kind: str, data: dict[str, Any], _now: datetime) -> dict[str, Any]:
        self.records.append((kind, data))
        return data

    def gate(self) -> list[tuple[bool, str]]:
        return [(d["active"], d["reason"]) for k, d in self.records if k == "recognition"]


@dataclass
class FakeDevice:
    """The device's parts the runner touches for the gate and the status."""

    watch: FakeWatch = field(default_factory=FakeWatch)
    link: FakeLink = field(default_factory=FakeLink)
    ledger: FakeLedger = field(default_factory=FakeLedger)
    recognizer: FakeRecognizer = field(default_factory=FakeRecognizer)
    capture: Any = field(default_factory=lambda: FakeCapture([]))
    audit: FakeAudit = field(default_factory=FakeAudit)
    model: ModelRef = field(default_factory=lambda: ModelRef("dlib_resnet_v1", "ab" * 32, 128))
    detector_id: str = "blazeface"
    embedder_id: str = "dlib"
    backend: str = "detector:cpu/embedder:cpu"


def runner(dev: FakeDevice) -> Runner:
    cfg = config.parse({"device": {"id": "dev-a", "camera_id": "cam-1", "site": "s"}})
    r = Runner(cfg, clock=lambda: NOW, notifier=Notifier(env={}), device=dev)  # type: ignore[arg-type]
    r.dev = dev  # type: ignore[assignment]  # what run() does after building the device
    r.emitter = AlertEmitter(dev, cfg.alerts, r.clock, r.stats)  # type: ignore[arg-type]
    return r


def status(r: Runner) -> dict[str, Any]:
    return status_payload(r.gate, r.stats, r.dev, NOW)


def test_gate_follows_the_order_and_a_suspension_and_audits_each_change_once() -> None:
    dev = FakeDevice()
    r = runner(dev)
    r._refresh_gate()
    assert status(r)["state"] == "idle" and not status(r)["recognition_active"]
    r._refresh_gate()  # nothing changed: nothing audited again
    assert dev.audit.gate() == [(False, "no valid deployment order (missing)")]

    dev.watch.verdict = (True, "order o1 active until 18:00")
    r._refresh_gate()
    s = status(r)
    assert (s["state"], s["reason"], s["recognition_active"]) == ("recognising", dev.watch.verdict[1], True)
    assert dev.audit.gate()[-1] == (True, dev.watch.verdict[1])
    assert dev.link.retained[-1] == ("lfr", {"live_facial_recognition": True})

    dev.ledger.suspended = "false-alert budget exceeded"
    r._refresh_gate()
    s = status(r)
    assert (s["state"], s["reason"], s["suspended"], s["recognition_active"]) == (
        "suspended", "false-alert budget exceeded", "false-alert budget exceeded", False)
    assert dev.audit.gate()[-1] == (False, "false-alert budget exceeded")
    assert dev.link.retained[-1] == ("lfr", {"live_facial_recognition": False})
    assert len(dev.audit.gate()) == 3
    # Every change published a status; the last one says what the public sees.
    assert dev.link.statuses[-1]["state"] == "suspended"


def test_frames_are_processed_only_while_the_gate_is_open() -> None:
    dev = FakeDevice(FakeWatch((True, "order o1 active")))
    r = runner(dev)
    frames = [Frame(i, NOW, i / 15, np.zeros((4, 4, 3), np.uint8)) for i in range(9)]

    def flip(f: Frame) -> None:  # the main thread's gate decisions, interleaved with frames
        if f.index == 3:
            dev.ledger.suspended = "false-alert budget exceeded"
            r._refresh_gate()
        if f.index == 6:
            dev.ledger.suspended = None
            dev.watch.verdict = (False, "outside the deployment order's window")
            r._refresh_gate()

    dev.capture = FakeCapture(frames, before_each=flip)
    r._refresh_gate()
    r._process()
    assert dev.recognizer.processed == [0, 1, 2]
    assert dev.recognizer.idled == [3, 4, 5, 6, 7, 8]
    assert r.stats.first_frame_at > 0 and r._source_done.is_set() and r._error is None
