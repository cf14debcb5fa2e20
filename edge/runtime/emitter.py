"""Decision -> alert: evidence to facts, the crop as JPEG bytes, queued durably with its seq.

Runs on the processing thread. The alert builder (``delivery.alert``) is the only
place the crop is base64-encoded; the evidence store keeps the raw JPEG.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from edge.config import AlertsConfig
from edge.delivery.alert import MatchFacts, Provenance, alert_bytes, build_alert, encode_crop, uuid7
from edge.errors import EdgeError, OutboxFullError
from edge.perception.types import Frame
from edge.pipeline.decision import Decision
from edge.pipeline.recognizer import Evidence
from edge.runtime import journal
from edge.runtime.journal import PendingAlert
from edge.runtime.status import RunStats
from edge.runtime.wiring import Device

log = logging.getLogger(__name__)


def provenance(dev: Device) -> Provenance:
    """What produces alerts now: fixed for as long as a bundle and the models are active."""
    active = dev.watch.active
    if active is None:
        raise EdgeError("no active bundle")  # the gate makes this unreachable
    h = active.bundle.header
    d = dev.cfg.device
    op = active.operating
    return Provenance(d.id, d.camera_id, d.site, h.bundle_id, h.version, dev.model.id,
                      dev.model.sha256, dev.detector_id, dev.backend, active.matcher.threshold,
                      None if op is None else op.to_json())


class AlertEmitter:
    def __init__(self, dev: Device, cfg: AlertsConfig, clock: Callable[[], datetime],
                 stats: RunStats) -> None:
        self.dev = dev
        self.cfg = cfg
        self.clock = clock
        self.stats = stats
        self._sent_at: dict[int, float] = {}  # outbox id -> capture monotonic time

    def emit(self, frame: Frame, decision: Decision[Evidence]) -> None:
        dev = self.dev
        ev = decision.best.evidence
        facts = MatchFacts(
            captured_at=ev.captured_at, subject_ref=decision.subject, category=ev.category,
            score=decision.best.score, margin=ev.margin, track_id=decision.track_id, box=ev.box,
            quality=ev.quality, detection_score=ev.detection_score,
            best_seen_at=ev.captured_at, hits=decision.hits, window=decision.window)
        jpeg = None
        if self.cfg.include_crop:
            h, w = ev.crop_source.shape[:2]
            jpeg = encode_crop(ev.crop_source, (0.0, 0.0, float(w), float(h)), self.cfg.crop_quality)
        prov = provenance(dev)
        event_id = uuid7(self.clock())

        def payload(seq: int) -> bytes:
            return alert_bytes(build_alert(prov, facts, seq, event_id, jpeg))

        def pending(seq: int) -> PendingAlert:
            return PendingAlert(str(event_id), seq, decision.subject, prov.bundle_id,
                                prov.bundle_version, ev.captured_at, jpeg)

        try:
            outbox_id, seq = dev.link.queue_alert(payload, lambda seq: pending(seq).encode())
        except OutboxFullError as e:
            self.stats.alerts_refused += 1
            log.critical("ALERT NOT QUEUED: event %s subject %s lost: %s", event_id, decision.subject, e)
            return
        except (EdgeError, OSError) as e:  # a disk fault: the alert in hand is lost, say so
            self.stats.alerts_refused += 1
            log.critical("ALERT NOT QUEUED: event %s subject %s lost: %s: %s", event_id,
                         decision.subject, type(e).__name__, e)
            return
        self._sent_at[outbox_id] = frame.received or time.monotonic()
        self.stats.alerts += 1
        try:
            journal.record(dev.outbox, dev.ledger, dev.audit, pending(seq), self.clock())
        except (EdgeError, OSError) as e:  # durable and delivered; its record waits for the next start
            self.stats.alerts_unrecorded += 1
            log.critical("alert %s seq=%d queued but not recorded (%s: %s); the next start records it",
                         event_id, seq, type(e).__name__, e)
        log.warning("possible match %s seq=%d subject=%s score=%.3f track=%d", event_id, seq,
                    decision.subject, decision.best.score, decision.track_id)

    def acked(self, outbox_id: int) -> None:
        """The broker acknowledged ``outbox_id`` (link thread): record the alert's latency."""
        t0 = self._sent_at.pop(outbox_id, None)
        if t0 is not None:
            self.stats.latencies_ms.append((time.monotonic() - t0) * 1000.0)
