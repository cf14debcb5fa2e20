"""Deployment orders: signature by the order role, fields, and the pipeline's gate."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from edge.errors import (
    OrderError,
    PayloadTypeError,
    SignatureError,
    UntrustedKeyError,
)
from edge.watchlist import canonical
from edge.watchlist.envelope import ORDER_TYPE, Envelope
from edge.watchlist.order import DeploymentOrder, verify_order
from tests.watchlist_world import FLEET, T0, World

ORDER = DeploymentOrder(
    order_id="DO-2026-041", issuer="Chief Constable", issued_at=T0, fleet_id=FLEET,
    device_id="cam-north", camera_ids=("cam0",), site="Boulevard north gate",
    purpose="locate persons wanted on court warrants during the market",
    valid_from=T0 + timedelta(days=1), valid_until=T0 + timedelta(days=3),
    authorising_ref="AUTH/2026/77", dpia_ref="DPIA-19", equality_impact_ref="EIA-4",
    rights_impact_ref="HRA-8", public_notice_ref="https://example.org/notice/41",
    public_contact="lfr@example.org", false_alert_budget=3, require_two_verifiers=True,
    min_found=0.75, recogniser="dlib_resnet_v1",
)


def test_signed_order_verifies_and_gates_by_window_device_and_camera() -> None:
    w = World()
    order = verify_order(ORDER.envelope().sign(w.order).encode(), w.trust(), FLEET)
    assert replace(order, content_sha256="") == ORDER
    assert order.retention_days == 31
    inside = T0 + timedelta(days=2)
    assert order.check(inside, "cam-north", "cam0").active
    for now, dev, cam in ((T0, "cam-north", "cam0"),
                          (T0 + timedelta(days=3), "cam-north", "cam0"),
                          (inside, "cam-south", "cam0"),
                          (inside, "cam-north", "cam1")):
        status = order.check(now, dev, cam)
        assert not status.active and status.reason


def test_order_refusals() -> None:
    w = World()
    with pytest.raises(UntrustedKeyError):  # the watchlist signer may not authorise deployment
        verify_order(ORDER.envelope().sign(w.watch).encode(), w.trust(), FLEET)
    with pytest.raises(PayloadTypeError):
        verify_order(w.bundle(), w.trust(), FLEET)
    with pytest.raises(OrderError):
        verify_order(ORDER.envelope().sign(w.order).encode(), w.trust(), "harbour")
    data = bytearray(ORDER.envelope().sign(w.order).encode())
    data[8 + 2 + len(ORDER_TYPE) + 4 + 10] ^= 1  # inside the header
    with pytest.raises(SignatureError):
        verify_order(bytes(data), w.trust(), FLEET)
    changes: tuple[dict[str, object], ...] = (
        {"dpia_ref": None}, {"retention_days": 90}, {"camera_ids": []},
        {"valid_until": canonical.format_time(T0)}, {"min_found": 1.5}, {"min_found": "most"},
        {"recogniser": ""},
    )
    for change in changes:
        doc = ORDER.to_json() | change
        doc = {k: v for k, v in doc.items() if v is not None}
        env = Envelope(ORDER_TYPE, canonical.dumps(doc), b"").sign(w.order)
        with pytest.raises(OrderError):
            verify_order(env.encode(), w.trust(), FLEET)
