"""Composition root of ``edge run``: builds each component from its own config section.

Order matters and mirrors READY: models (hashes checked), watchlist and order,
outbox, then the MQTT link and the source. Every failure here is one of our
typed errors naming what to fix.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nacl.signing import SigningKey

from edge import __version__
from edge.accountability.ledger import Ledger
from edge.audit import records as audit_records
from edge.audit.log import AuditLog
from edge.config import Config
from edge.delivery.mqtt import LinkConfig, MessageHandler, MqttLink
from edge.delivery.outbox import Outbox
from edge.errors import EdgeError
from edge.perception.detector import BlazeFaceDetector, DetectorConfig
from edge.perception.embedder import ManifestEmbedder
from edge.perception.manifest import load_manifest
from edge.perception.quality import face_quality
from edge.perception.runtime import DelegateLoader, available_cpus, default_delegate_loader
from edge.perception.tiling import TiledDetector, TilingConfig
from edge.pipeline.decision import TrackDecider
from edge.pipeline.motion import MotionGate
from edge.pipeline.recognizer import Recognizer, RecognizerParts
from edge.pipeline.track import FaceSelector, IoUTracker
from edge.runtime import journal
from edge.runtime.active import ActiveWatchlist, admit_trust, device_context
from edge.runtime.active import from_config as active_from_config
from edge.runtime.bundles import audit_loaded
from edge.sources import open_source
from edge.sources.base import ThreadedCapture
from edge.watchlist.bundle import ModelRef
from edge.watchlist.keys import load_signer
from edge.watchlist.model import recogniser

log = logging.getLogger(__name__)

def _variant(v: str) -> str | None:
    return None if v == "auto" else v


def _refusing_loader(library: str) -> Any:
    raise OSError(f"{library}: Edge TPU disabled in config (models.edgetpu = false)")


@dataclass
class Device:
    """The parts of a running device, each built from its own config section.

    A plain set of parts: what happens across them lives with the code that does it
    (``runner`` the gate, ``emitter`` alerts, ``bundles`` installs and purges,
    ``status`` what is said about the device).
    """

    cfg: Config
    recognizer: Recognizer
    finder: TiledDetector  # the recognizer's detector; its tile threads stop with the device
    capture: ThreadedCapture
    outbox: Outbox
    link: MqttLink
    watch: ActiveWatchlist
    audit: AuditLog
    backend: str
    detector_id: str
    embedder_id: str
    model: ModelRef
    clock: Callable[[], datetime]
    ledger: Ledger
    signing_key: SigningKey | None = None  # signs audit checkpoints; None: not provisioned


def close_device(dev: Device, now: datetime, reason: str) -> None:
    """The last step of a run: ledger closed, stop audited, outbox and audit log closed."""
    try:
        dev.ledger.close(now)
    except EdgeError as e:  # e.g. a full disk; the counters are derived again at start
        log.error("ledger not saved at stop: %s", e)
    with contextlib.suppress(EdgeError):
        audit_records.stop(dev.audit, now, reason=reason)
    dev.finder.close()
    dev.outbox.close()
    dev.audit.close()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:100] or "unnamed"


def audit_order(audit: AuditLog, watch: ActiveWatchlist, now: datetime) -> None:
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
    # Everything that can refuse the start comes before the `start` record, so a refused
    # restart (every RestartSec=) does not fill the audit log: the models, the checkpoint
    # key, the trust root and the config threshold, then the outbox (``edge outbox
    # quarantine`` moves a corrupt one aside).
    mc = cfg.models
    manifest = load_manifest(mc.dir)
    loader = delegate_loader or (default_delegate_loader if mc.edgetpu else _refusing_loader)
    dc = cfg.detection

    def open_detector() -> BlazeFaceDetector:
        return BlazeFaceDetector.from_models_dir(
            manifest.models_dir, family=mc.detector, variant=_variant(mc.detector_variant),
            delegate_loader=loader, config=DetectorConfig(score_threshold=dc.score_threshold),
            num_threads=mc.threads)

    detectors = [open_detector()]
    workers = dc.tile_workers(available_cpus(), detectors[0].backend)
    layout = dc.tile_layout(detectors[0].backend)
    # Strips resize the model: one that cannot be resized refuses the start, not the first frame.
    stride = detectors[0].input_multiple if layout == "strips" else None
    detectors += [open_detector() for _ in range(workers - 1)]
    log.info("detection: %s%s, %d worker(s), %d thread(s) each", layout,
             f" (model stride {stride})" if stride else "", workers, mc.threads)
    embedder = ManifestEmbedder.from_models_dir(
        manifest.models_dir, variant=_variant(mc.embedder_variant), family=mc.embedder,
        delegate_loader=loader, num_threads=mc.threads)
    signing_key = load_signer(cfg.trust.signing_key) if cfg.trust.signing_key else None
    trust = admit_trust(cfg)
    ctx = device_context(cfg, manifest, trust.root)
    rec = recogniser(manifest, mc.embedder, embedder.variant)
    watch = active_from_config(cfg, ctx, rec)  # refuses a config threshold below the floor
    watch.trust_refused = trust.refused

    now = clock()
    state_dir = cfg.state.dir
    state_dir.mkdir(parents=True, exist_ok=True)
    outbox = Outbox(state_dir / "outbox.sqlite3", cfg.outbox.max_events, cfg.outbox.max_bytes)
    try:
        audit = AuditLog.open(state_dir / "audit", cfg.device.id, now)
        audit_records.start(audit, now, device_id=cfg.device.id, software_version=__version__)
    except BaseException:
        outbox.close()
        raise

    if trust.refused is not None:
        audit_records.trust_refused(audit, now, reason=trust.refused[:250], kept_version=trust.root.version,
                                    kept_sha256=trust.root.content_sha256)
    watch.load(now)
    audit_order(audit, watch, now)
    ledger = Ledger(state_dir, audit, cfg.device.id, watch.order)
    if watch.order is not None:
        ledger.begin(watch.order, now)
    replayed = journal.reconcile(outbox, ledger, audit, now)  # after a power cut mid-alert
    if replayed:
        log.warning("%d alert(s) recorded at start that a power cut had left unrecorded", replayed)
    if watch.active is not None:
        ledger.set_watchlist_size(len(watch.active.matcher))

    finder = TiledDetector(detectors, TilingConfig(roi=dc.roi, tile_size=dc.tile, overlap=dc.overlap,
                                                   layout=layout))
    tc = cfg.tracking
    # One capture thread (below) for every kind: a live source does not start its own.
    source = open_source(cfg.source.kind, cfg.source.target, fps=cfg.source.fps,
                         realtime=cfg.source.realtime, threaded=False)
    # A live camera drops the oldest frame when inference falls behind; a file or
    # scene replayed faster than real time waits instead (nothing to drop for).
    lossless = cfg.source.kind in ("file", "folder", "scenario") and not cfg.source.realtime
    capture = ThreadedCapture(lambda: iter(source), name="capture", maxsize=cfg.source.queue,
                              lossless=lossless, upstream_dropped=lambda: source.dropped)
    motion: Callable[[tuple[int, int]], MotionGate] | None = None
    if dc.motion:
        # The threshold is a share of a square tile, for strips too (see MotionMap.window).
        motion = functools.partial(MotionGate, min_active=dc.motion_threshold,
                                   window=float(dc.tile * dc.tile))
    parts = RecognizerParts(
        finder=finder, aligner=embedder.aligner(), embedder=embedder, quality=face_quality,
        tracker=IoUTracker(iou=tc.iou, max_missed=tc.max_missed),
        selector=FaceSelector(min_quality=tc.min_quality, embed_every=tc.embed_every,
                              max_embeds=tc.max_embeds),
        decider=TrackDecider(k=tc.k, n=tc.n, cooldown_s=tc.cooldown_s),
        motion_factory=motion,
        min_width=rec.card.reliable_width_px,
    )
    recognizer = Recognizer(parts)
    if watch.active is not None:
        recognizer.set_matcher(watch.active.matcher)

    b = cfg.broker
    link = MqttLink(
        LinkConfig(device_id=cfg.device.id, host=b.host, port=b.port, tls=b.tls, ca=b.ca,
                   cert=b.cert, key=b.key, topic_prefix=b.topic_prefix, keepalive=b.keepalive,
                   client_id=b.client_id, session_expiry_s=b.session_expiry_s,
                   reconnect_max_s=b.reconnect_max_s,
                   stats_interval_s=cfg.stats.interval_s),
        outbox, on_message=on_message, on_ack=on_ack)
    dev = Device(cfg, recognizer, finder, capture, outbox, link, watch, audit,
                 backend=f"detector:{finder.backend}/embedder:{embedder.backend}",
                 detector_id=finder.model_id, embedder_id=embedder.model_id, model=ctx.model,
                 clock=clock, ledger=ledger, signing_key=signing_key)
    audit_loaded(dev, now)
    return dev

