"""Alert builder: UUIDv7 layout and ordering, complete provenance."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import numpy as np

from edge.delivery.alert import MatchFacts, Provenance, alert_bytes, build_alert, encode_crop, uuid7
from edge.delivery.contract import ALERT_SCHEMA


def test_uuid7_layout_and_time_order() -> None:
    t0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    a = uuid7(t0, b"\xff" * 10)
    b = uuid7(t0 + timedelta(milliseconds=1), b"\x00" * 10)
    assert a.version == 7 and b.version == 7
    assert a.variant == "specified in RFC 4122"
    assert int(a.hex[:12], 16) == int(t0.timestamp() * 1000)
    assert str(a) < str(b)  # lexical order follows time across random parts
    assert uuid7(t0) != uuid7(t0)


def test_alert_carries_provenance() -> None:
    t = datetime(2026, 11, 22, 12, 0, 0, 123000, tzinfo=UTC)
    prov = Provenance("dev-a", "cam-1", "Boulevard", "wl-1", 7, "dlib_resnet_v1", "ab" * 32,
                      "blazeface_full_range_fp32", "cpu", 0.8)
    facts = MatchFacts(t, "S-1", "wanted", 0.91, 0.2, 3, (1.0, 2.0, 3.0, 4.0), 0.8, 0.9, t, 3, 4)
    ev = build_alert(prov, facts, 5, uuid7(t), None)
    assert ev["captured_at"] == "2026-11-22T12:00:00.123Z"
    assert ev["bundle"] == {"id": "wl-1", "version": 7}
    assert ev["threshold"] == 0.8 and ev["seq"] == 5
    assert ev["possible_match"] is True and "crop_jpeg_b64" not in ev
    assert b'"event_id"' in alert_bytes(ev)
    assert ev["schema"] == ALERT_SCHEMA == "edge.alert/2"
    # The correlation block names what the numbers are: the evidence's time and the
    # decision window (3 of the subject's matches among 4 observations).
    assert ev["correlation"] == {"subject_ref": "S-1", "site": "Boulevard",
                                 "best_seen_at": "2026-11-22T12:00:00.123Z",
                                 "track_hits": 3, "decision_window": 4}


def test_only_the_builder_base64s_the_crop() -> None:
    t = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    prov = Provenance("dev-a", "cam-1", "Boulevard", "wl-1", 7, "m", "ab" * 32, "d", "cpu", 0.8)
    facts = MatchFacts(t, "S-1", "wanted", 0.91, 0.2, 3, (1.0, 2.0, 3.0, 4.0), 0.8, 0.9, t, 3, 4)
    image = np.zeros((40, 40, 3), np.uint8)
    jpeg = encode_crop(image, (10.0, 10.0, 30.0, 30.0))
    assert jpeg is not None and jpeg.startswith(b"\xff\xd8\xff")  # raw JPEG, not text
    ev = build_alert(prov, facts, 1, uuid7(t), jpeg)
    assert base64.b64decode(ev["crop_jpeg_b64"]) == jpeg
