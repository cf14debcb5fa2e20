"""Alerts as the firmware builds them (edge.delivery.alert), and a station wired to a real store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from edge.delivery.alert import MatchFacts, Provenance, alert_bytes, build_alert, uuid7
from station import db
from station.store import Store

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def crop_jpeg(testdata: Path, name: str = "obama.jpg") -> bytes:
    """A real JPEG crop around the face of a pinned test image (the alert builder base64s it)."""
    img = cv2.imread(str(testdata / name), cv2.IMREAD_COLOR)
    assert img is not None
    h, w = img.shape[:2]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[h // 8: h // 2, w // 4: 3 * w // 4]))
    assert ok
    return buf.tobytes()


def alert(device: str, seq: int, at: datetime, subject: str = "subj-obama", *, score: float = 0.71,
          crop: bytes | None = None, camera: str = "cam0") -> bytes:
    prov = Provenance(device, camera, "boulevard", "bundle-7", 7, "mfn-512", "ab" * 32, "blazeface",
                      "cpu", 0.52)
    facts = MatchFacts(at, subject, "wanted", score, 0.2, 3, (10.0, 10.0, 60.0, 70.0), 0.8,
                       0.9, at - timedelta(seconds=1), 4, 2)
    return alert_bytes(build_alert(prov, facts, seq, uuid7(at), crop))


def open_store(url: str, window_s: float = 300.0) -> Store:
    engine = db.connect(url)
    db.migrate(engine)
    return Store(engine, incident_window_s=window_s)
