"""``edge run``: the scheduler: threads, timers, signals, the gate, pushed bundles and reviews.

Threads: capture (fills a small buffer, [source] queue, that drops the oldest), processing
(gate -> recognizer -> ``AlertEmitter`` -> outbox), the MQTT link (its own thread,
owns paho), and this main thread, which supervises: order gate, bundle
installs pushed over MQTT, status and stats, systemd watchdog pings, SIGTERM.
Restarting a dead process is systemd's job; this loop only stops pinging.
What is said about the device (status, stats, summary) is built in ``status``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import FrameType

from edge.audit import records as audit_records
from edge.config import Config
from edge.delivery.topics import READS, Topics
from edge.errors import CameraError, EdgeError
from edge.formats import canonical_json
from edge.fsutil import free_bytes
from edge.runtime.bundles import audit_loaded, drop_expired, install_pushed, purge_if_ended
from edge.runtime.emitter import AlertEmitter
from edge.runtime.notify import Notifier
from edge.runtime.status import Gate, RunStats, run_summary, stats_payload, status_line, status_payload
from edge.runtime.wiring import Device, audit_order, build_device, close_device

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


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
        self.topics = Topics.for_device(cfg.device.id, cfg.broker.topic_prefix)
        # Messages by leaf (bundle, review, order, revocations, resume), for the main thread.
        self._inbox: dict[str, queue.SimpleQueue[bytes]] = {
            leaf: queue.SimpleQueue() for leaf in READS}
        self.emitter: AlertEmitter | None = None
        self._error: BaseException | None = None
        self._source_done = threading.Event()

    # --- lifecycle -------------------------------------------------------------------

    def run(self) -> int:
        self._install_signals()
        dev = self._device or build_device(
            self.cfg, self.clock, on_message=self._on_message, on_ack=self._on_ack)
        self.dev = dev
        self.emitter = AlertEmitter(dev, self.cfg.alerts, self.clock, self.stats)
        # Gate and status first: the link publishes its queued status before it connects,
        # so the first retained status already says what the device is doing.
        self._refresh_gate()
        self._publish_status()
        dev.link.start()
        self.notifier.ready(status_line(self.gate, self.dev))
        log.info("ready: %s", status_line(self.gate, self.dev))
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
            self._apply_order_messages()
            self._apply_reviews()
            self._refresh_gate()
            if now >= next_status:
                self._account()
                self._publish_status()
                self.notifier.status(status_line(self.gate, self.dev))
                next_status = now + self.cfg.stats.status_interval_s
            if now >= next_housekeeping:
                next_housekeeping = now + 3600.0
                try:
                    purged = self.dev.ledger.housekeeping(self.clock())
                    if purged:
                        log.info("retention: %d evidence item(s) purged", purged)
                except EdgeError as e:  # e.g. a full disk: retried at the next round
                    log.error("housekeeping failed: %s", e)
            if now >= next_checkpoint:
                self._checkpoint()
                next_checkpoint = now + self.cfg.stats.checkpoint_interval_s
            if now >= next_stats:
                next_stats = now + self.cfg.stats.interval_s
                try:
                    self.dev.link.publish_stats(stats_payload(self.stats, self.dev, self.clock()))
                except EdgeError as e:  # telemetry only; the outbox could not take it
                    log.error("stats not queued: %s", e)
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
        # A suspension outlives a stop (and a restart).
        self.gate = Gate(False, "stopped", self.gate.suspended, stopped=True)
        # The retained public flag must not keep saying "active" once we are down.
        self.dev.link.set_retained("lfr", self.dev.ledger.lfr_payload(False, self.clock()))
        self._account()
        self._publish_status()
        self._checkpoint()
        drained = self.dev.link.close(drain_timeout=self.cfg.outbox.drain_timeout_s)
        depth = self.dev.outbox.depth()
        self._write_summary(drained, depth)
        close_device(self.dev, self.clock(), "source ended" if self._source_done.is_set() and not self._error
                       else f"error: {type(self._error).__name__}" if self._error else "stop requested")
        log.info("stopped; outbox %s (%d pending); counters %s; frames dropped %d; alerts %d",
                 "drained" if drained else "NOT drained", depth, self.dev.recognizer.counters.as_dict(),
                 self.dev.capture.dropped, self.stats.alerts)
        self.notifier.close()

    def _write_summary(self, drained: bool, depth: int) -> None:
        from edge.fsutil import atomic_write

        try:
            summary = run_summary(self.stats, self.dev, drained, depth)
            atomic_write(self.cfg.state.dir / "summary.json", json.dumps(summary, indent=1).encode(),
                         mode=0o644)
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
                if self.gate.running and self.emitter is not None:
                    for decision in dev.recognizer.process(frame):
                        self.emitter.emit(frame, decision)
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

    # --- MQTT callbacks (run on the link thread: hand off, never block) ----------------

    def _on_message(self, topic: str, payload: bytes) -> None:
        for leaf, q in self._inbox.items():
            if topic == self.topics.leaf(leaf):
                q.put(payload)
                return

    def _on_ack(self, outbox_id: int) -> None:
        if self.emitter is not None:
            self.emitter.acked(outbox_id)

    # --- main-thread duties ------------------------------------------------------------

    def _messages(self, leaf: str) -> Iterator[bytes]:
        q = self._inbox[leaf]
        while True:
            try:
                yield q.get_nowait()
            except queue.Empty:
                return

    def _handle(self, leaf: str, payload: bytes, apply: Callable[[bytes], str | None]) -> None:
        """Apply one message; whatever it raises is logged and counted, and the loop goes on
        (a retained message that kills the runner would kill every restart)."""
        try:
            done = apply(payload)
            if done:
                log.info("%s message: %s", leaf, done)
        except EdgeError as e:
            self.stats.message_refused(leaf, f"{type(e).__name__}: {e}")
            log.error("%s message refused: %s", leaf, self.stats.last_message_error)
        except Exception as e:  # a parser or handler bug must not take the device down
            self.stats.message_refused(leaf, f"{type(e).__name__}: {str(e)[:200]}")
            log.exception("%s message crashed its handler (dropped)", leaf)

    def _install_pushed_bundles(self) -> None:
        for data in self._messages("bundle"):
            self.stats.bundle_pushes += 1
            self._handle("bundle", data, self._install_bundle)
            self._publish_status()

    def _install_bundle(self, data: bytes) -> str | None:
        try:
            if not install_pushed(self.dev, data, self.clock()):
                return None  # the active bundle again (retained, on reconnect): nothing to do
        except EdgeError as e:
            self.stats.bundle_refusals += 1
            self.stats.last_bundle_error = f"{type(e).__name__}: {e}"
            raise
        self.stats.last_bundle_error = None
        return f"pushed bundle installed: {self.dev.watch.summary()}"

    def _apply_order_messages(self) -> None:
        for data in self._messages("order"):
            self._handle("order", data, self._install_order)
        for data in self._messages("revocations"):
            self._handle("revocations", data, self._install_revocations)
        for data in self._messages("resume"):
            self._handle("resume", data, self._apply_resume)

    def _install_order(self, data: bytes) -> str | None:
        try:
            order = self.dev.watch.install_order(data)
        except EdgeError as e:
            with contextlib.suppress(EdgeError):
                audit_records.order_refused(self.dev.audit, self.clock(),
                                            reason=f"{type(e).__name__}: {e}"[:250])
            raise
        if order is None:
            return None
        now = self.clock()
        audit_order(self.dev.audit, self.dev.watch, now)
        self.dev.ledger.begin(order, now)
        act = self.dev.watch.refresh_operating(now)  # the order's budget sets the threshold
        if act is not None:
            self.dev.recognizer.set_matcher(act.matcher)
            audit_loaded(self.dev, now)
        self._refresh_gate()
        return f"order {order.order_id} (order_seq {order.order_seq}) taken from the topic"

    def _install_revocations(self, data: bytes) -> str | None:
        rev, revoked = self.dev.watch.install_revocations(data)
        if revoked is None:
            return f"revocation list {rev.list_seq} kept; the running order is not on it"
        audit_records.order_refused(self.dev.audit, self.clock(), order_id=revoked.order_id,
                                    sha256=revoked.content_sha256,
                                    reason=f"revoked by revocation list {rev.list_seq}")
        self._refresh_gate()
        return f"order {revoked.order_id} revoked (list {rev.list_seq}): recognition stopped"

    def _apply_resume(self, data: bytes) -> str | None:
        resume = self.dev.watch.admit_resume(data)
        self.dev.ledger.resume(resume, self.clock())
        self._refresh_gate()
        return f"signed resume {resume.resume_seq} by {resume.decided_by} applied"

    def _refresh_gate(self) -> None:
        now = self.clock()
        purge_if_ended(self.dev, now)  # the gate below turns off and publishes the status
        try:
            drop_expired(self.dev, now)  # entries past expires_at leave the matcher
        except EdgeError as e:
            log.error("expired entries dropped, not audited: %s", e)
        active, reason = self.dev.watch.allowed(now)
        if active:
            active, reason = self._disk_allows(reason)
        suspended = self.dev.ledger.suspended
        changed = (active, reason, suspended) != (self.gate.active, self.gate.reason, self.gate.suspended)
        if changed:
            running = active and suspended is None
            log.info("recognition %s: %s", "ACTIVE" if running else "off", suspended or reason)
            with contextlib.suppress(EdgeError):
                audit_records.recognition(self.dev.audit, now, active=running, reason=suspended or reason)
            self.gate.active, self.gate.reason, self.gate.suspended = active, reason, suspended
            self.dev.ledger.tick(now, running)
            # The public flag follows what really runs, with the site's contact.
            self.dev.link.set_retained("lfr", self.dev.ledger.lfr_payload(running, now))
            self._publish_status()

    def _disk_allows(self, reason: str) -> tuple[bool, str]:
        """Recognition stops while the state disk is below its reserve (an alert must be recordable)."""
        reserve = int(self.cfg.state.reserve_mb * 1024 * 1024)
        free = free_bytes(self.cfg.state.dir)
        if free is not None and free < reserve:
            return False, (f"state disk below its reserve: {free / 2**20:.1f} MiB free,"
                           f" {self.cfg.state.reserve_mb:g} MiB kept")
        return True, reason

    def _account(self) -> None:
        """Feed the transparency counters and the false-alert monitor; publish the figures."""
        now = self.clock()
        c = self.dev.recognizer.counters
        self.dev.ledger.observe_totals(c.tracks, c.embeddings, now)
        self.dev.ledger.tick(now, self.gate.running)
        self.dev.link.set_retained("transparency", self.dev.ledger.public_payload(now))

    def _apply_reviews(self) -> None:
        for payload in self._messages("review"):
            self._handle("review", payload, self._apply_review)
            self._refresh_gate()  # a false alert may have tipped the monitor

    def _apply_review(self, payload: bytes) -> str:
        now = self.clock()
        applied = self.dev.ledger.review(payload, self.dev.watch.ctx.trust, now)
        self.stats.review_applied(applied, now)
        self._publish_status()
        return f"review applied: {applied}"

    def _checkpoint(self) -> None:
        key = self.dev.signing_key
        if key is None:
            return
        try:
            statement = self.dev.audit.checkpoint(key, self.clock())
            payload = canonical_json(statement)
            self.dev.outbox.put("checkpoint", self.dev.link.config.topics.checkpoint, payload, 1)
        except EdgeError as e:  # a full outbox too: the log keeps the checkpoint record
            self.stats.checkpoints_not_queued += 1
            log.error("audit checkpoint not queued: %s", e)
            return
        self.dev.link.wake()

    def _publish_status(self) -> None:
        self.dev.link.set_status(status_payload(self.gate, self.stats, self.dev, self.clock()))
