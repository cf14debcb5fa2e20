"""Shared pieces of the accountability tests: a deployment order, a real face crop, an audit log."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import nacl.signing
import numpy as np

from edge.accountability.adjudication import Review
from edge.accountability.signed_review import sign_review
from edge.audit.log import AuditLog, iter_records
from edge.authority.build import trust_document
from edge.watchlist.order import DeploymentOrder
from edge.watchlist.trust import TrustRoot, load_pinned

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)

ORDER = DeploymentOrder(
    order_id="DO-2026-041", issuer="Chief Constable", issued_at=T0 - timedelta(days=1), fleet_id="fleet-1",
    device_id="cam-north", camera_ids=("cam0",), site="boulevard-north-gate",
    purpose="locate persons wanted on court warrants during the market",
    valid_from=T0, valid_until=T0 + timedelta(days=2),
    authorising_ref="AUTH/2026/77", dpia_ref="DPIA-19", equality_impact_ref="EIA-4",
    rights_impact_ref="HRA-8", public_notice_ref="https://example.org/notice/41",
    public_contact="lfr@example.org", false_alert_budget=3, require_two_verifiers=True,
    retention_days=14,
)


# The operators' own keys, listed under the trust root's ``review`` role by name.
AUTHORITY = nacl.signing.SigningKey(bytes([41]) * 32)
OFFICERS = {f"officer-{i}": nacl.signing.SigningKey(bytes([50 + i]) * 32) for i in range(1, 6)}


def review_trust(officers: Mapping[str, nacl.signing.SigningKey] = OFFICERS) -> TrustRoot:
    """A device trust root whose ``review`` role lists ``officers`` (name -> key)."""
    keys = {"authority": bytes(AUTHORITY.verify_key)}
    keys |= {name: bytes(k.verify_key) for name, k in officers.items()}
    roles = {r: (["authority"], 1) for r in ("trust", "watchlist", "order")}
    roles["review"] = (list(officers), 1)
    return load_pinned(trust_document(1, keys, roles, T0).sign(AUTHORITY).encode())


def signed(review: Review, device_id: str = "cam-north") -> bytes:
    """``review`` as its officer signs it on the station."""
    return sign_review(review, device_id, OFFICERS[review.verifier_id])


def face_crop_jpeg(testdata: Path, name: str = "obama.jpg") -> bytes:
    """A real JPEG crop around the face of a pinned test image (what an alert carries)."""
    img = cv2.imread(str(testdata / name), cv2.IMREAD_COLOR)
    assert img is not None
    h, w = img.shape[:2]
    crop = np.ascontiguousarray(img[h // 8: h // 2, w // 4: 3 * w // 4])
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return bytes(buf.tobytes())


def open_audit(tmp: Path, now: datetime = T0) -> AuditLog:
    return AuditLog.open(tmp / "audit", "cam-north", now)


def records_of(log: AuditLog, kind: str) -> list[dict[str, Any]]:
    return [r["data"] for r in iter_records(log.directory) if r["kind"] == kind]


_B64_RUN = re.compile(rb"[A-Za-z0-9+/=_-]{200,}")


def assert_no_image_bytes(blob: bytes, crops: list[bytes]) -> None:
    """No JPEG (raw or base64 of any 48-byte window of it) and no long encoded run in ``blob``."""
    assert b"\xff\xd8\xff" not in blob
    assert _B64_RUN.search(blob) is None
    for crop in crops:
        for off in range(0, len(crop) - 48, max(1, len(crop) // 16)):
            piece = crop[off: off + 48]
            assert piece not in blob
            assert base64.b64encode(piece)[8:56] not in blob
