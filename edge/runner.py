"""``edge run``: capture, inference and publishing on their own threads.

Threads: capture (fills a 2-frame buffer that drops the oldest), processing
(gate -> recognizer -> alerts into the outbox), the MQTT link (its own thread,
owns paho), and this main thread, which supervises: order gate, bundle
installs pushed over MQTT, status and stats, systemd watchdog pings, SIGTERM.
Restarting a dead process is systemd's job; this loop only stops pinging.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from edge.alert import MatchFacts, alert_bytes, build_alert, encode_crop, iso_utc, uuid7
from edge.config import Config
from edge.decision import Decision
from edge.errors import CameraError, EdgeError, OutboxFullError, SignedDocumentError
from edge.recognizer import Evidence
from edge.service import Notifier
from edge.sources.base import Frame, ThreadedCapture
from edge.wiring import Device, build_device

log = logging.getLogger(__name__)
APPLIED_SHOWN = 20


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Gate:
    """Whether recognition may run now, and why not; written by the main thread."""

    active: bool = False
    reason: str = "starting"
    suspended: str | None = None  # set by the false-alert monitor, never cleared silently


@dataclass
class RunStats:
    started: float = field(default_factory=time.monotonic)
    alerts: int = 0
    alerts_refused: int = 0
    bundle_pushes: int = 0
    bundle_refusals: int = 0
    last_bundle_error: str | None = None
    processed_at: float = 0.0  # monotonic time of the last processed frame
    first_frame_at: float = 0.0
    fps: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)


class Runner:
    def __init__(self, cfg: Config, *, clock: Callable[[], datetime] = utc_now,
                 notifier: Notifier | None = None, device: Device | None = None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.notifier = notifier or Notifier()
        self.stop = threading.Event()
        self.gate = Gate()
        self.stats = RunStats()
        self._device = device
        self._bundles: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._reviews: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        # The latest reviews applied, on the status topic so the station can show them applied.
        self._applied: collections.deque[dict[str, Any]] = collections.deque(maxlen=APPLIED_SHOWN)
        self._sent_at: dict[int, float] = {}  # outbox id -> capture monotonic time
        self._error: BaseException | None = None
        self._source_done = threading.Event()
        self._stopped = False

    # --- lifecycle -------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        dev = self._device or build_device(
            self.cfg, self.clock, on_message=self._on_message, on_ack=self._on_ack)
        self.dev = dev
        dev.link.start()
        self._refresh_gate()
        self._publish_status()
        self.notifier.ready(self._status_line())
        log.info("ready: %s", self._status_line())
        worker = threading.Thread(target=self._process, name="processing", daemon=True)
        worker.start()
        try:
            self._supervise(worker)
        finally:
            self._shutdown(worker)
        if isinstance(self._error, CameraError):
            log.error("source failed: %s", self._error)
            return 3
        return 0 if self._error is None else 1

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %d: stopping", signum)
            self.stop.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _supervise(self, worker: threading.Thread) -> None:
        wd = self.notifier.watchdog_interval()
        next_status = 0.0
        next_stats = time.monotonic() + self.cfg.stats.interval_s
        next_housekeeping = 0.0
        next_checkpoint = time.monotonic() + self.cfg.stats.checkpoint_interval_s
        while not self.stop.is_set() and not self._source_done.is_set():
            self.stop.wait(0.25 if wd is None else min(0.25, wd / 2))
            now = time.monotonic()
            self._install_pushed_bundles()
            self._apply_reviews()
            self._refresh_gate()
            if now >= next_status:
                self._account()
                self._publish_status()
                self.notifier.status(self._status_line())
                next_status = now + self.cfg.stats.status_interval_s
            if now >= next_housekeeping:
                purged = self.dev.ledger.housekeeping(self.clock())
                if purged:
                    log.info("retention: %d evidence item(s) purged", purged)
                next_housekeeping = now + 3600.0
            if now >= next_checkpoint:
                self._checkpoint()
                next_checkpoint = now + self.cfg.stats.checkpoint_interval_s
            if now >= next_stats:
                self.dev.link.publish_stats(self._stats_payload())
                next_stats = now + self.cfg.stats.interval_s
            # Ping only while frames flow and the MQTT thread turns: a wedged
            # pipeline must let systemd's WatchdogSec restart us.
            if worker.is_alive() and now - self.stats.processed_at < 10.0 and self.dev.link.alive():
                self.notifier.watchdog()

    def _shutdown(self, worker: threading.Thread) -> None:
        self.notifier.stopping("draining outbox")
        self.stop.set()
        self.dev.capture.stop()
        worker.join(10.0)
        self.dev.recognizer.finish()
        self._stopped = True
        self.gate = Gate(False, "stopped", self.gate.suspended)  # a suspension outlives a restart
        # The retained public flag must not keep saying "active" once we are down.
        self.dev.link.set_retained("lfr", self.dev.ledger.lfr_payload(False, self.clock()))
        self._account()
        self._publish_status()
        self._checkpoint()
        drained = self.dev.link.close(drain_timeout=self.cfg.outbox.drain_timeout_s)
        depth = self.dev.outbox.depth()
        self._write_summary(drained, depth)
        self.dev.close(self.clock(), "source ended" if self._source_done.is_set() and not self._error
                       else f"error: {type(self._error).__name__}" if self._error else "stop requested")
        log.info("stopped; outbox %s (%d pending); counters %s; frames dropped %d; alerts %d",
                 "drained" if drained else "NOT drained", depth, self.dev.recognizer.counters.as_dict(),
                 self.dev.capture.buffer.dropped, self.stats.alerts)
        self.notifier.close()

    def summary(self, drained: bool, depth: int) -> dict[str, Any]:
        """Aggregate, non-biometric figures of this run (also what ``make bench`` reads)."""
        lat = sorted(self.stats.latencies_ms)

        def pct(q: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))], 1) if lat else None

        busy = self.stats.processed_at - self.stats.first_frame_at if self.stats.first_frame_at else 0.0
        frames = self.dev.recognizer.counters.frames
        return {
            "schema": "edge.run-summary/1",
            "counters": self.dev.recognizer.counters.as_dict(),
            "frames_dropped": self.dev.capture.buffer.dropped,
            "alerts": self.stats.alerts,
            "alerts_refused": self.stats.alerts_refused,
            "bundle_refusals": self.stats.bundle_refusals,
            "throughput_fps": round((frames - 1) / busy, 2) if busy and frames > 1 else None,
            "alert_latency_ms": {"n": len(lat), "p50": pct(0.5), "p95": pct(0.95), "max": pct(1.0)},
            "outbox": {"drained": drained, "pending": depth},
            "peak_rss_mb": peak_rss_mb(),
        }

    def _write_summary(self, drained: bool, depth: int) -> None:
        from edge.fsutil import atomic_write

        try:
            atomic_write(self.cfg.state.dir / "summary.json",
                         json.dumps(self.summary(drained, depth), indent=1).encode(), mode=0o644)
        except OSError as e:
            log.warning("run summary not written: %s", e)

    # --- processing thread ------------------------------------------------------------

    def _process(self) -> None:
        dev = self.dev
        window: list[float] = []
        try:
            for frame in dev.capture.frames():
                if self.stop.is_set():
                    break
                if self.gate.active and self.gate.suspended is None:
                    for decision in dev.recognizer.process(frame):
                        self._emit(frame, decision)
                else:
                    dev.recognizer.idle(frame)
                now = time.monotonic()
                if not self.stats.first_frame_at:
                    self.stats.first_frame_at = now
                self.stats.processed_at = now
                window.append(now)
                if len(window) > 30:
                    del window[0]
                if len(window) > 1:
                    self.stats.fps = (len(window) - 1) / max(1e-6, window[-1] - window[0])
        except EdgeError as e:
            self._error = e
            log.error("processing stopped: %s", e)
        except Exception as e:  # a bug: stop pinging, let systemd restart us
            self._error = e
            log.exception("processing crashed")
        finally:
            self._source_done.set()

    def _emit(self, frame: Frame, decision: Decision[Evidence]) -> None:
        dev = self.dev
        ev = decision.best.evidence
        facts = MatchFacts(
            captured_at=ev.captured_at, subject_ref=decision.subject, category=ev.category,
            score=decision.best.score, margin=ev.margin, track_id=decision.track_id, box=ev.box,
            quality=ev.quality, detection_score=ev.detection_score,
            track_first_seen=ev.captured_at, hits=decision.hits, embeddings=decision.window)
        crop = None
        if self.cfg.alerts.include_crop:
            h, w = ev.crop_source.shape[:2]
            crop = encode_crop(ev.crop_source, (0.0, 0.0, float(w), float(h)), self.cfg.alerts.crop_quality)
        prov = dev.provenance()
        event_id = uuid7(self.clock())

        def payload(seq: int) -> bytes:
            return alert_bytes(build_alert(prov, facts, seq, event_id, crop))

        try:
            outbox_id, seq = dev.outbox.put_alert(dev.link.config.topic("alerts"), payload)
        except OutboxFullError as e:
            self.stats.alerts_refused += 1
            log.critical("ALERT NOT QUEUED: %s", e)
            return
        self._sent_at[outbox_id] = frame.received or time.monotonic()
        dev.link.wake()
        self.stats.alerts += 1
        jpeg = base64.b64decode(crop) if crop else None
        dev.ledger.alert(str(event_id), jpeg, ev.captured_at, self.clock())
        dev.audit_alert(str(event_id), seq, decision.subject)
        log.warning("possible match %s seq=%d subject=%s score=%.3f track=%d", event_id, seq,
                    decision.subject, decision.best.score, decision.track_id)

    # --- MQTT callbacks (run on the link thread: hand off, never block) ----------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic.endswith("/bundle"):
            self._bundles.put(payload)
        elif topic.endswith("/review"):
            self._reviews.put(payload)

    def _on_ack(self, outbox_id: int) -> None:
        t0 = self._sent_at.pop(outbox_id, None)
        if t0 is not None:
            self.stats.latencies_ms.append((time.monotonic() - t0) * 1000.0)

    # --- main-thread duties ------------------------------------------------------------

    def _install_pushed_bundles(self) -> None:
        while True:
            try:
                data = self._bundles.get_nowait()
            except queue.Empty:
                return
            self.stats.bundle_pushes += 1
            try:
                self.dev.install_bundle(data, self.clock())
                self.stats.last_bundle_error = None
                log.info("pushed bundle installed: %s", self.dev.bundle_summary())
            except SignedDocumentError as e:
                self.stats.bundle_refusals += 1
                self.stats.last_bundle_error = f"{type(e).__name__}: {e}"
                log.error("pushed bundle refused, keeping the active one: %s", self.stats.last_bundle_error)
            except EdgeError as e:
                self.stats.bundle_refusals += 1
                self.stats.last_bundle_error = f"{type(e).__name__}: {e}"
                log.error("pushed bundle not installed: %s", e)
            self._publish_status()

    def _refresh_gate(self) -> None:
        now = self.clock()
        self.dev.purge_if_ended(now)  # the gate below turns off and publishes the status
        active, reason = self.dev.recognition_allowed(now)
        suspended = self.dev.ledger.suspended
        changed = (active, reason, suspended) != (self.gate.active, self.gate.reason, self.gate.suspended)
        if changed:
            running = active and suspended is None
            log.info("recognition %s: %s", "ACTIVE" if running else "off", suspended or reason)
            self.dev.audit_gate(running, suspended or reason)
            self.gate.active, self.gate.reason, self.gate.suspended = active, reason, suspended
            self.dev.ledger.tick(now, running)
            # The public flag follows what really runs, with the site's contact.
            self.dev.link.set_retained("lfr", self.dev.ledger.lfr_payload(running, now))
            self._publish_status()

    def _account(self) -> None:
        """Feed the transparency counters and the false-alert monitor; publish the figures."""
        now = self.clock()
        c = self.dev.recognizer.counters
        self.dev.ledger.observe_totals(c.tracks, c.embeddings, now)
        self.dev.ledger.tick(now, self.gate.active and self.gate.suspended is None)
        self.dev.link.set_retained("transparency", self.dev.ledger.public_payload(now))

    def _apply_reviews(self) -> None:
        while True:
            try:
                payload = self._reviews.get_nowait()
            except queue.Empty:
                return
            try:
                now = self.clock()
                applied = self.dev.ledger.review(payload, self.dev.watch.trust, now)
                log.info("review applied: %s", applied)
                self._applied.append({"event_id": applied.event_id, "outcome": applied.outcome,
                                      "known": applied.known, "settled": applied.settled,
                                      "confirmations": list(applied.confirmations),
                                      "applied_at": iso_utc(now)})
                self._publish_status()
            except EdgeError as e:
                log.error("review message refused: %s", e)
            self._refresh_gate()  # a false alert may have tipped the monitor

    def _checkpoint(self) -> None:
        key = self.dev.signing_key
        if key is None:
            return
        try:
            statement = self.dev.audit.checkpoint(key, self.clock())
        except EdgeError as e:
            log.error("audit checkpoint failed: %s", e)
            return
        payload = json.dumps(statement, separators=(",", ":"), sort_keys=True).encode()
        self.dev.outbox.put("checkpoint", self.dev.link.config.topic("audit/checkpoint"), payload, 1)
        self.dev.link.wake()

    def _state(self) -> str:
        if self._stopped:
            return "stopped"
        if self.gate.suspended:
            return "suspended"
        return "recognising" if self.gate.active else "idle"

    def _status_line(self) -> str:
        return f"{self._state()}: {self.gate.reason}; {self.dev.bundle_summary()}; backend {self.dev.backend}"

    def status_payload(self) -> dict[str, Any]:
        dev = self.dev
        health = dev.link.health()
        return {
            "state": self._state(),
            "reason": self.gate.suspended or self.gate.reason,
            "recognition_active": self.gate.active and self.gate.suspended is None and not self._stopped,
            "suspended": self.gate.suspended,
            "bundle": dev.bundle_status(),
            "order": dev.order_status(),
            "model": dev.model_status(),
            "backend": dev.backend,
            "fps": round(self.stats.fps, 2),
            "frames_dropped": dev.capture.buffer.dropped,
            "outbox": {"depth": health.outbox.depth, "fill": round(health.outbox.fill_ratio, 3),
                       "warning": health.outbox.warning, "refused_alerts": health.outbox.refused_alerts},
            "delivery": {"refused": health.refused, "last_refusal": health.last_refusal},
            "last_bundle_error": self.stats.last_bundle_error,
            "reviews_applied": list(self._applied),
            "updated_at": iso_utc(self.clock()),
        }

    def _publish_status(self) -> None:
        self.dev.link.set_status(self.status_payload())

    def _stats_payload(self) -> dict[str, Any]:
        return {
            "schema": "edge.stats/1",
            "device_id": self.cfg.device.id,
            "camera_id": self.cfg.device.camera_id,
            "at": iso_utc(self.clock()),
            "counters": self.dev.recognizer.counters.as_dict(),
            "frames_dropped": self.dev.capture.buffer.dropped,
            "alerts": self.stats.alerts,
            "alerts_refused": self.stats.alerts_refused,
            "bundle_refusals": self.stats.bundle_refusals,
            "fps": round(self.stats.fps, 2),
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


def capture_for(source: Any, name: str, maxsize: int) -> ThreadedCapture:
    return ThreadedCapture(lambda: iter(source), name=name, maxsize=maxsize)
