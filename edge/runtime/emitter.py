"""Decision -> alert: evidence to facts, the crop as JPEG bytes, queued durably with its seq.

Runs on the processing thread. The alert builder (``delivery.alert``) is the only
place the crop is base64-encoded; the evidence store keeps the raw JPEG.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime

from edge.audit import records as audit_records
from edge.config import AlertsConfig
from edge.delivery.alert import MatchFacts, Provenance, alert_bytes, build_alert, encode_crop, uuid7
from edge.errors import EdgeError, OutboxFullError
from edge.perception.types import Frame
from edge.pipeline.decision import Decision
from edge.pipeline.recognizer import Evidence
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

        try:
            outbox_id, seq = dev.link.queue_alert(payload)
        except OutboxFullError as e:
            self.stats.alerts_refused += 1
            log.critical("ALERT NOT QUEUED: %s", e)
            return
        self._sent_at[outbox_id] = frame.received or time.monotonic()
        self.stats.alerts += 1
        dev.ledger.alert(str(event_id), jpeg, ev.captured_at, self.clock())
        with contextlib.suppress(EdgeError):  # the alert itself is already durable
            audit_records.alert(dev.audit, self.clock(), event_id=str(event_id), seq=seq,
                                subject_ref=decision.subject, bundle_id=prov.bundle_id,
                                bundle_version=prov.bundle_version)
        log.warning("possible match %s seq=%d subject=%s score=%.3f track=%d", event_id, seq,
                    decision.subject, decision.best.score, decision.track_id)

    def acked(self, outbox_id: int) -> None:
        """The broker acknowledged ``outbox_id`` (link thread): record the alert's latency."""
        t0 = self._sent_at.pop(outbox_id, None)
        if t0 is not None:
            self.stats.latencies_ms.append((time.monotonic() - t0) * 1000.0)
