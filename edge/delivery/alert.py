"""Match events (alerts) as published on ``<prefix>/alerts``: pure builders.

An alert is a *possible* match for a human to adjudicate, never a decision.
Every alert names the bundle, model and threshold that produced it, so the
authority can later show why it fired.
"""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from edge.delivery.contract import ALERT_SCHEMA
from edge.formats import canonical_json, iso_utc
from edge.perception.types import RGBImage


def uuid7(now: datetime, rand: bytes | None = None) -> uuid.UUID:
    """RFC 9562 UUIDv7: 48-bit Unix milliseconds, version 7, 74 random bits."""
    ms = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    r = int.from_bytes(rand if rand is not None else os.urandom(10), "big")
    rand_a = (r >> 62) & 0xFFF
    rand_b = r & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)


@dataclass(frozen=True)
class Provenance:
    """What produced an alert: fixed for as long as a bundle and models are active."""

    device_id: str
    camera_id: str
    site: str
    bundle_id: str
    bundle_version: int
    model_id: str
    model_sha256: str
    detector_id: str
    backend: str
    threshold: float
    # What the model card predicts at this threshold for this list and order
    # (``edge.watchlist.operating.OperatingPoint.to_json``).
    operating_point: dict[str, object] | None = None


@dataclass(frozen=True)
class MatchFacts:
    captured_at: datetime
    subject_ref: str
    category: str
    score: float
    margin: float
    track_id: int
    box: tuple[float, float, float, float]
    quality: float
    detection_score: float
    best_seen_at: datetime  # when the observation that carries the evidence was captured
    hits: int  # matches of the subject in the track's decision window
    window: int  # observations in the decision window (k-of-n: this is the n seen so far)


def encode_crop(image: RGBImage, box: tuple[float, float, float, float], quality: int = 85
                ) -> bytes | None:
    """JPEG bytes of the face box with a margin (None if OpenCV cannot encode it).

    Only ever called for a match; the alert builder alone turns it into base64.
    """
    import cv2  # local: keeps this module importable for pure tests without OpenCV's cost

    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = 0.4 * (x1 - x0), 0.4 * (y1 - y0)
    xa, ya = max(0, int(x0 - mx)), max(0, int(y0 - my))
    xb, yb = min(w, int(x1 + mx)), min(h, int(y1 + my))
    crop = np.ascontiguousarray(image[ya:yb, xa:xb, ::-1])
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return None
    jpeg: bytes = buf.tobytes()
    return jpeg


def build_alert(
    prov: Provenance, facts: MatchFacts, seq: int, event_id: uuid.UUID, crop_jpeg: bytes | None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "schema": ALERT_SCHEMA,
        "event_id": str(event_id),
        "seq": seq,
        "device_id": prov.device_id,
        "camera_id": prov.camera_id,
        "site": prov.site,
        "captured_at": iso_utc(facts.captured_at),
        "subject_ref": facts.subject_ref,
        "category": facts.category,
        "score": round(facts.score, 4),
        "threshold": round(prov.threshold, 4),
        "margin": round(facts.margin, 4),
        "track_id": facts.track_id,
        "box": [round(v, 1) for v in facts.box],
        "quality": round(facts.quality, 3),
        "detection_score": round(facts.detection_score, 3),
        "bundle": {"id": prov.bundle_id, "version": prov.bundle_version},
        "model": {"id": prov.model_id, "sha256": prov.model_sha256, "detector": prov.detector_id,
                  "backend": prov.backend},
        "operating_point": prov.operating_point,
        "possible_match": True,
        "requires_human_review": True,
        # What a central de-duplicator across cameras needs: the same subject at the
        # same site within a short window is one encounter.
        "correlation": {
            "subject_ref": facts.subject_ref,
            "site": prov.site,
            "best_seen_at": iso_utc(facts.best_seen_at),
            "track_hits": facts.hits,
            "decision_window": facts.window,
        },
    }
    if crop_jpeg:
        event["crop_jpeg_b64"] = base64.b64encode(crop_jpeg).decode("ascii")
    return event


def alert_bytes(event: dict[str, Any]) -> bytes:
    return canonical_json(event)
