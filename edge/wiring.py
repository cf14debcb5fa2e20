"""Composition root of ``edge run``: builds each component from its own config section.

Order matters and mirrors READY: models (hashes checked), watchlist and order,
outbox, then the MQTT link and the source. Every failure here is one of our
typed errors naming what to fix.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nacl.signing import SigningKey

from edge import __version__
from edge.accountability.governance import check_threshold
from edge.accountability.ledger import Ledger
from edge.alert import Provenance
from edge.audit import records as audit_records
from edge.audit.log import AuditLog
from edge.config import Config
from edge.decision import TrackDecider
from edge.delivery.mqtt import LinkConfig, MessageHandler, MqttLink
from edge.delivery.outbox import Outbox
from edge.errors import EdgeError
from edge.motion import MotionGate
from edge.perception.detector import BlazeFaceDetector, DetectorConfig
from edge.perception.embedder import ManifestEmbedder
from edge.perception.manifest import load_manifest
from edge.perception.quality import face_quality
from edge.perception.runtime import DelegateLoader, default_delegate_loader
from edge.perception.tiling import TiledDetector, TilingConfig
from edge.recognizer import Recognizer, RecognizerParts
from edge.sources import open_source
from edge.sources.base import ThreadedCapture
from edge.track import FaceSelector, IoUTracker
from edge.watch import Watchlist
from edge.watchlist.bundle import ModelRef
from edge.watchlist.keys import load_signer
from edge.watchlist.model import embedder_ref, threshold_floor

log = logging.getLogger(__name__)

def _variant(v: str) -> str | None:
    return None if v == "auto" else v


def _refusing_loader(library: str) -> Any:
    raise OSError(f"{library}: Edge TPU disabled in config (models.edgetpu = false)")


@dataclass
class Device:
    cfg: Config
    recognizer: Recognizer
    capture: ThreadedCapture
    outbox: Outbox
    link: MqttLink
    watch: Watchlist
    audit: AuditLog
    backend: str
    detector_id: str
    embedder_id: str
    model: ModelRef
    clock: Callable[[], datetime]
    ledger: Ledger
    signing_key: SigningKey | None = None  # signs audit checkpoints; None: not provisioned

    # --- what the runner asks ------------------------------------------------------------

    def provenance(self) -> Provenance:
        active = self.watch.active
        if active is None:
            raise EdgeError("no active bundle")  # the gate makes this unreachable
        h = active.bundle.header
        threshold = max(h.threshold, self.cfg.matching.threshold or h.threshold)
        d = self.cfg.device
        return Provenance(d.id, d.camera_id, d.site, h.bundle_id, h.version, self.model.id,
                          self.model.sha256, self.detector_id, self.backend, threshold)

    def recognition_allowed(self, now: datetime) -> tuple[bool, str]:
        return self.watch.allowed(now)

    def install_bundle(self, data: bytes, now: datetime) -> None:
        sha = hashlib.sha256(data).hexdigest()
        try:
            act = self.watch.install(data, now)
        except EdgeError as e:
            audit_records.bundle_refused(self.audit, now, sha256=sha, reason=type(e).__name__)
            raise
        self.recognizer.set_matcher(act.matcher, self.cfg.matching.threshold)
        self._audit_bundle(now, "pushed")
        self.ledger.set_watchlist_size(len(act.matcher))

    def _audit_bundle(self, now: datetime, how: str) -> None:
        act = self.watch.active
        if act is None:
            return
        h = act.bundle.header
        audit_records.bundle_loaded(
            self.audit, now, bundle_id=h.bundle_id, version=h.version,
            sha256=act.bundle.content_sha256,
            signer_key_ids=sorted(k.hex() for k in act.bundle.signer_keyids),
            entry_count=len(act.bundle.entries), threshold=h.threshold, model_id=self.model.id,
            expires_at=h.expires_at)

    def bundle_summary(self) -> str:
        return self.watch.summary()

    def bundle_status(self) -> dict[str, Any] | None:
        return self.watch.bundle_status()

    def order_status(self) -> dict[str, Any] | None:
        return self.watch.order_status()

    def model_status(self) -> dict[str, str]:
        return {"embedder": self.embedder_id, "detector": self.detector_id, "space": self.model.id,
                "sha256": self.model.sha256}

    def audit_alert(self, event_id: str, seq: int, subject_ref: str) -> None:
        with contextlib.suppress(EdgeError):  # the alert itself is already durable
            h = self.watch.active.bundle.header if self.watch.active else None
            audit_records.alert(self.audit, self.clock(), event_id=event_id, seq=seq,
                                subject_ref=subject_ref, bundle_id=h.bundle_id if h else "none",
                                bundle_version=h.version if h else 0)

    def audit_gate(self, active: bool, reason: str) -> None:
        with contextlib.suppress(EdgeError):
            audit_records.recognition(self.audit, self.clock(), active=active, reason=reason)

    def purge_if_ended(self, now: datetime) -> bool:
        """End of the order window: templates dropped, bundle file deleted, purge audited."""
        purged = self.watch.purge_if_ended(now)
        if purged is None:
            return False
        self.recognizer.set_matcher(None)
        h = purged.bundle.header
        audit_records.bundle_purged(
            self.audit, now, bundle_id=h.bundle_id, version=h.version, sha256=purged.bundle.content_sha256,
            reason="deployment order ended", entry_count=len(purged.bundle.entries),
            file_deleted=self.watch.file_deleted)
        self.ledger.set_watchlist_size(0)
        return True

    def close(self, now: datetime, reason: str) -> None:
        self.ledger.close(now)
        with contextlib.suppress(EdgeError):
            audit_records.stop(self.audit, now, reason=reason)
        self.outbox.close()
        self.audit.close()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:100] or "unnamed"


def _audit_order(audit: AuditLog, watch: Watchlist, now: datetime) -> None:
    o = watch.order
    if o is None:
        audit_records.order_refused(audit, now, reason=(watch.order_error or "missing")[:250])
        return
    audit_records.order_accepted(
        audit, now, order_id=o.order_id, sha256=o.content_sha256, site=_slug(o.site),
        camera_ids=list(o.camera_ids), not_before=o.valid_from, not_after=o.valid_until,
        purpose=o.purpose[:250], authority_ref=o.authorising_ref[:250],
        signer_key_ids=sorted(k.hex() for k in o.signer_keyids), retention_days=o.retention_days)


def build_device(cfg: Config, clock: Callable[[], datetime], *, on_message: MessageHandler,
                 on_ack: Callable[[int], None], delegate_loader: DelegateLoader | None = None) -> Device:
    now = clock()
    state_dir = cfg.state.dir
    state_dir.mkdir(parents=True, exist_ok=True)
    audit = AuditLog.open(state_dir / "audit", cfg.device.id, now)
    audit_records.start(audit, now, device_id=cfg.device.id, software_version=__version__)

    mc = cfg.models
    manifest = load_manifest(mc.dir)
    loader = delegate_loader or (default_delegate_loader if mc.edgetpu else _refusing_loader)
    dc = cfg.detection
    detector = BlazeFaceDetector.from_models_dir(
        manifest.models_dir, family=mc.detector, variant=_variant(mc.detector_variant),
        delegate_loader=loader, config=DetectorConfig(score_threshold=dc.score_threshold),
        num_threads=mc.threads)
    embedder = ManifestEmbedder.from_models_dir(
        manifest.models_dir, variant=_variant(mc.embedder_variant), family=mc.embedder,
        delegate_loader=loader, num_threads=mc.threads)
    model = embedder_ref(manifest, mc.embedder)
    floor = threshold_floor(manifest, mc.embedder)
    if cfg.matching.threshold is not None:
        check_threshold(cfg.matching.threshold, floor, "config matching.threshold")

    watch = Watchlist(cfg.device, cfg.trust, state_dir, model, floor)
    watch.load(now)
    _audit_order(audit, watch, now)
    ledger = Ledger(state_dir, audit, cfg.device.id, watch.order)
    if watch.order is not None:
        ledger.begin(watch.order, now)
    if watch.active is not None:
        ledger.set_watchlist_size(len(watch.active.matcher))
    signing_key = load_signer(cfg.trust.signing_key) if cfg.trust.signing_key else None

    finder = TiledDetector(detector, TilingConfig(roi=dc.roi, tile_size=dc.tile, overlap=dc.overlap))
    tc = cfg.tracking
    source = open_source(cfg.source.kind, cfg.source.target, fps=cfg.source.fps,
                         realtime=cfg.source.realtime)
    # A live camera drops the oldest frame when inference falls behind; a file or
    # scene replayed faster than real time waits instead (nothing to drop for).
    lossless = cfg.source.kind in ("file", "folder", "scenario") and not cfg.source.realtime
    capture = ThreadedCapture(lambda: iter(source), name="capture", maxsize=cfg.source.queue,
                              lossless=lossless)
    motion: Callable[[tuple[int, int]], MotionGate] | None = None
    if dc.motion:
        motion = functools.partial(MotionGate, min_active=dc.motion_threshold)
    parts = RecognizerParts(
        finder=finder, aligner=embedder.aligner(), embedder=embedder, quality=face_quality,
        tracker=IoUTracker(iou_threshold=tc.iou, max_misses=tc.max_missed),
        selector=FaceSelector(min_quality=tc.min_quality, min_gap=tc.embed_every,
                              max_per_track=tc.max_embeds),
        decider=TrackDecider(k=tc.k, n=tc.n, cooldown=tc.cooldown_s),
        motion_factory=motion,
    )
    recognizer = Recognizer(parts)
    if watch.active is not None:
        recognizer.set_matcher(watch.active.matcher, cfg.matching.threshold)

    outbox = Outbox(state_dir / "outbox.sqlite3", cfg.outbox.max_events, cfg.outbox.max_bytes)
    b = cfg.broker
    link = MqttLink(
        LinkConfig(device_id=cfg.device.id, host=b.host, port=b.port, tls=b.tls, ca=b.ca,
                   cert=b.cert, key=b.key, topic_prefix=cfg.topic_prefix, keepalive=b.keepalive,
                   client_id=b.client_id, stats_interval_s=cfg.stats.interval_s,
                   backoff_max_s=b.reconnect_max_s),
        outbox, on_message=on_message, on_ack=on_ack)
    dev = Device(cfg, recognizer, capture, outbox, link, watch, audit,
                 backend=f"detector:{detector.backend}/embedder:{embedder.backend}",
                 detector_id=detector.model_id, embedder_id=embedder.model_id, model=model,
                 clock=clock, ledger=ledger, signing_key=signing_key)
    dev._audit_bundle(now, "start")
    return dev

