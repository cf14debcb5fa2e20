"""What the running device says about itself: the gate, the retained status, stats, run summary.

Pure builders over the runner's state (gate, counters, timings) and the device's
parts; the runner decides when they are published.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge.accountability.adjudication import Applied
from edge.delivery.mqtt import LinkHealth
from edge.formats import iso_utc
from edge.runtime.wiring import Device

APPLIED_SHOWN = 20  # reviews applied listed in the status


@dataclass
class Gate:
    """Whether recognition may run now, and why not; written by the main thread."""

    active: bool = False
    reason: str = "starting"
    suspended: str | None = None  # set by the false-alert monitor, never cleared silently
    stopped: bool = False

    @property
    def running(self) -> bool:
        return self.active and self.suspended is None and not self.stopped

    @property
    def state(self) -> str:
        if self.stopped:
            return "stopped"
        if self.suspended:
            return "suspended"
        return "recognising" if self.active else "idle"


@dataclass
class RunStats:
    started: float = field(default_factory=time.monotonic)
    alerts: int = 0
    alerts_refused: int = 0  # lost: not queued (outbox full, disk fault)
    alerts_unrecorded: int = 0  # queued, record deferred to the next start (disk fault)
    bundle_pushes: int = 0
    bundle_refusals: int = 0
    last_bundle_error: str | None = None
    processed_at: float = 0.0  # monotonic time of the last processed frame
    first_frame_at: float = 0.0
    fps: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    checkpoints_not_queued: int = 0
    messages_refused: dict[str, int] = field(default_factory=dict)  # by topic leaf
    last_message_error: str | None = None

    def message_refused(self, leaf: str, why: str) -> None:
        self.messages_refused[leaf] = self.messages_refused.get(leaf, 0) + 1
        self.last_message_error = f"{leaf}: {why}"[:300]
    # The latest reviews applied, on the status topic so the station can show them applied.
    reviews_applied: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=APPLIED_SHOWN))

    def review_applied(self, applied: Applied, now: datetime) -> None:
        self.reviews_applied.append({"event_id": applied.event_id, "outcome": applied.outcome,
                                     "known": applied.known, "settled": applied.settled,
                                     "confirmations": list(applied.confirmations),
                                     "applied_at": iso_utc(now)})


def _refused(stats: RunStats, health: LinkHealth) -> dict[str, int]:
    """Messages refused per topic leaf: by their handlers, and retained reviews at the link."""
    out = dict(stats.messages_refused)
    if health.retained_reviews_refused:
        out["review_retained"] = health.retained_reviews_refused
    return out


def status_line(gate: Gate, dev: Device) -> str:
    """systemd's STATUS= line."""
    return f"{gate.state}: {gate.reason}; {dev.watch.summary()}; backend {dev.backend}"


def status_payload(gate: Gate, stats: RunStats, dev: Device, now: datetime) -> dict[str, Any]:
    """The retained ``<prefix>/status`` document (the link adds availability and device id).

    ``backend`` is ``detector:<b>/embedder:<b>``, each ``<b>`` ``edgetpu`` or ``cpu``.
    """
    health = dev.link.health()
    return {
        "state": gate.state,
        "reason": gate.suspended or gate.reason,
        "recognition_active": gate.running,
        "suspended": gate.suspended,
        "bundle": dev.watch.bundle_status(),
        "order": dev.watch.order_status(),
        "trust": dev.watch.trust_status(),
        "model": {"embedder": dev.embedder_id, "detector": dev.detector_id, "space": dev.model.id,
                  "sha256": dev.model.sha256, "recogniser": dev.watch.recogniser.to_json()},
        "backend": dev.backend,
        "fps": round(stats.fps, 2),
        "frames_dropped": dev.capture.dropped,
        "outbox": {"depth": health.outbox.depth, "fill": round(health.outbox.fill_ratio, 3),
                   "warning": health.outbox.warning, "refused_alerts": health.outbox.refused_alerts},
        "delivery": {"refused": health.refused, "last_refusal": health.last_refusal},
        "last_bundle_error": stats.last_bundle_error,
        "messages": {"refused": _refused(stats, health), "last_error": stats.last_message_error},
        "reviews_applied": list(stats.reviews_applied),
        "updated_at": iso_utc(now),
    }


def stats_payload(stats: RunStats, dev: Device, now: datetime) -> dict[str, Any]:
    """The ``<prefix>/stats`` document: aggregate, non-biometric counters."""
    d = dev.cfg.device
    return {
        "schema": "edge.stats/1",
        "device_id": d.id,
        "camera_id": d.camera_id,
        "at": iso_utc(now),
        "counters": dev.recognizer.counters.as_dict(),
        "frames_dropped": dev.capture.dropped,
        "alerts": stats.alerts,
        "alerts_refused": stats.alerts_refused,
        "alerts_unrecorded": stats.alerts_unrecorded,
        "bundle_refusals": stats.bundle_refusals,
        "fps": round(stats.fps, 2),
    }


def run_summary(stats: RunStats, dev: Device, drained: bool, depth: int) -> dict[str, Any]:
    """Aggregate, non-biometric figures of this run (also what ``make bench`` reads)."""
    lat = sorted(stats.latencies_ms)

    def pct(q: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))], 1) if lat else None

    busy = stats.processed_at - stats.first_frame_at if stats.first_frame_at else 0.0
    frames = dev.recognizer.counters.frames
    return {
        "schema": "edge.run-summary/1",
        "counters": dev.recognizer.counters.as_dict(),
        "frames_dropped": dev.capture.dropped,
        "alerts": stats.alerts,
        "alerts_refused": stats.alerts_refused,
        "bundle_refusals": stats.bundle_refusals,
        "throughput_fps": round((frames - 1) / busy, 2) if busy and frames > 1 else None,
        "alert_latency_ms": {"n": len(lat), "p50": pct(0.5), "p95": pct(0.95), "max": pct(1.0)},
        "outbox": {"drained": drained, "pending": depth},
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float | None:
    """This process's peak resident set (VmHWM), which exec resets, unlike ru_maxrss."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    return None
