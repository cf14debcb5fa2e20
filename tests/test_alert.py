"""Alert builder: UUIDv7 layout and ordering, complete provenance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge.delivery.alert import MatchFacts, Provenance, alert_bytes, build_alert, uuid7


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
