"""Deployment orders: where, when and why a device may run recognition.

An order is a signed envelope (payload type ``ORDER_TYPE``, empty body) that
the ``order`` role of the trust root must sign. ``verify_order`` is pure; the
pipeline calls ``DeploymentOrder.check(now, device_id, camera_id)`` before every
frame batch and detects nothing while the answer is not active.

Replay: every order carries a signed ``order_seq``; the device keeps the highest it
accepted (``orderstate.OrderStore``) and refuses lower ones, and an equal one with
other content, even while an older order's window is still open. The same role signs
two more documents: a revocation list (``REVOCATION_TYPE``, its own monotonic
``list_seq``) naming order ids the device must refuse, and a resume
(``RESUME_TYPE``, monotonic ``resume_seq``) that lifts a false-alert suspension of
one order on one device; a new order id never lifts one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime

from edge.errors import MalformedError, OrderError, ReplayError, RollbackError, WrongDeviceError
from edge.watchlist import canonical
from edge.watchlist.envelope import ORDER_TYPE, RESUME_TYPE, REVOCATION_TYPE, Envelope, decode
from edge.watchlist.trust import TrustRoot

MAX_ORDER_HEADER = 64 * 1024
MAX_RETENTION_DAYS = 31


@dataclass(frozen=True)
class OrderStatus:
    active: bool
    reason: str  # why not, or "active until ..."


@dataclass(frozen=True)
class DeploymentOrder:
    order_id: str
    issuer: str
    issued_at: datetime
    fleet_id: str
    device_id: str
    camera_ids: tuple[str, ...]
    site: str
    purpose: str
    valid_from: datetime
    valid_until: datetime
    authorising_ref: str
    dpia_ref: str
    equality_impact_ref: str
    rights_impact_ref: str
    public_notice_ref: str
    order_seq: int = 1  # signed, monotonic per fleet: a lower one than the device accepted is a replay
    retention_days: int = MAX_RETENTION_DAYS
    public_contact: str | None = None
    false_alert_budget: int | None = None  # false alerts per 10,000 faces; above it matching stops
    # The least share of listed people the deployment must find (edge.watchlist.operating).
    min_found: float | None = None
    # The recogniser family the authority chose; None runs the device's default.
    recogniser: str | None = None
    require_two_verifiers: bool = False
    content_sha256: str = ""
    signer_keyids: frozenset[bytes] = field(default=frozenset(), compare=False)  # who signed, for the audit

    def check(self, now: datetime, device_id: str, camera_id: str) -> OrderStatus:
        if device_id != self.device_id:
            return OrderStatus(False, f"order {self.order_id} is for device {self.device_id}")
        if camera_id not in self.camera_ids:
            return OrderStatus(False, f"order {self.order_id} does not cover camera {camera_id}")
        if now < self.valid_from:
            return OrderStatus(
                False, f"order {self.order_id} valid from {canonical.format_time(self.valid_from)}"
            )
        if now >= self.valid_until:
            return OrderStatus(
                False, f"order {self.order_id} ended {canonical.format_time(self.valid_until)}"
            )
        return OrderStatus(True, f"active until {canonical.format_time(self.valid_until)}")

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "order_id": self.order_id,
            "issuer": self.issuer,
            "issued_at": canonical.format_time(self.issued_at),
            "fleet_id": self.fleet_id,
            "device_id": self.device_id,
            "camera_ids": list(self.camera_ids),
            "site": self.site,
            "purpose": self.purpose,
            "valid_from": canonical.format_time(self.valid_from),
            "valid_until": canonical.format_time(self.valid_until),
            "authorising_ref": self.authorising_ref,
            "dpia_ref": self.dpia_ref,
            "equality_impact_ref": self.equality_impact_ref,
            "rights_impact_ref": self.rights_impact_ref,
            "public_notice_ref": self.public_notice_ref,
            "order_seq": self.order_seq,
            "retention_days": self.retention_days,
            "require_two_verifiers": self.require_two_verifiers,
        }
        if self.public_contact is not None:
            out["public_contact"] = self.public_contact
        if self.false_alert_budget is not None:
            out["false_alert_budget"] = self.false_alert_budget
        if self.min_found is not None:
            out["min_found"] = self.min_found
        if self.recogniser is not None:
            out["recogniser"] = self.recogniser
        return out

    def envelope(self) -> Envelope:
        return Envelope(ORDER_TYPE, canonical.dumps(self.to_json()), b"")


def parse_order(header: bytes, content_sha256: str = "") -> DeploymentOrder:
    try:
        f = canonical.Fields(canonical.loads_object(header, "order"), "order", OrderError)
    except MalformedError as exc:
        raise OrderError(str(exc)) from exc
    order = DeploymentOrder(
        order_id=f.text("order_id", max_len=256),
        issuer=f.text("issuer", max_len=256),
        issued_at=f.time("issued_at"),
        fleet_id=f.text("fleet_id", max_len=256),
        device_id=f.text("device_id", max_len=256),
        camera_ids=f.strings("camera_ids", max_len=64),
        site=f.text("site", max_len=512),
        purpose=f.text("purpose", max_len=2048),
        valid_from=f.time("valid_from"),
        valid_until=f.time("valid_until"),
        authorising_ref=f.text("authorising_ref", max_len=512),
        dpia_ref=f.text("dpia_ref", max_len=512),
        equality_impact_ref=f.text("equality_impact_ref", max_len=512),
        rights_impact_ref=f.text("rights_impact_ref", max_len=512),
        public_notice_ref=f.text("public_notice_ref", max_len=512),
        order_seq=f.integer("order_seq", lo=1, hi=2**53),
        retention_days=(
            f.integer("retention_days", lo=0, hi=MAX_RETENTION_DAYS)
            if f.has("retention_days") else MAX_RETENTION_DAYS
        ),
        public_contact=f.opt_text("public_contact", max_len=512),
        false_alert_budget=(
            f.integer("false_alert_budget", hi=10**6) if f.has("false_alert_budget") else None
        ),
        require_two_verifiers=f.flag("require_two_verifiers", False),
        min_found=f.number("min_found", lo=0.0, hi=1.0) if f.has("min_found") else None,
        recogniser=f.opt_text("recogniser", max_len=128),
        content_sha256=content_sha256,
    )
    if not order.camera_ids:
        raise OrderError("order names no camera")
    if not order.valid_from < order.valid_until:
        raise OrderError("order valid_from must be earlier than valid_until")
    return order


def verify_order(data: bytes, trust: TrustRoot, fleet_id: str) -> DeploymentOrder:
    """Signature, type and structure. The time window is ``check``'s job, with ``now``."""
    env = decode(data, max_header=MAX_ORDER_HEADER, max_body=0, expect=ORDER_TYPE)
    signers = trust.verify(env, "order")
    order = parse_order(env.header, env.content_sha256())
    if order.fleet_id != fleet_id:
        raise OrderError(f"order is for fleet {order.fleet_id!r}, not {fleet_id!r}")
    return dataclasses.replace(order, signer_keyids=signers)


@dataclass(frozen=True)
class OrderRecord:
    """What the device keeps of the order it accepted last."""

    order_seq: int
    order_id: str
    content_sha256: str


def check_order_seq(order: DeploymentOrder, last: OrderRecord | None) -> bool:
    """True when ``order`` is newer than ``last``, False when it is ``last`` again; else refused."""
    if last is None or order.order_seq > last.order_seq:
        return True
    if order.order_seq < last.order_seq:
        raise RollbackError(f"order {order.order_id} has order_seq {order.order_seq}, below the"
                            f" accepted {last.order_seq} ({last.order_id}): an older order replayed")
    if order.content_sha256 != last.content_sha256:
        raise ReplayError(f"order {order.order_id} reuses order_seq {order.order_seq} of the accepted"
                          f" order {last.order_id} with other content")
    return False


@dataclass(frozen=True)
class Revocations:
    """A signed list of order ids the devices of a fleet must refuse."""

    fleet_id: str
    list_seq: int
    issued_at: datetime
    order_ids: frozenset[str]
    content_sha256: str


def verify_revocations(data: bytes, trust: TrustRoot, fleet_id: str) -> Revocations:
    """Signature by the ``order`` role, type, structure and fleet."""
    env = decode(data, max_header=MAX_ORDER_HEADER, max_body=0, expect=REVOCATION_TYPE)
    trust.verify(env, "order")
    try:
        f = canonical.Fields(canonical.loads_object(env.header, "order revocations"), "order revocations",
                             OrderError)
    except MalformedError as exc:
        raise OrderError(str(exc)) from exc
    rev = Revocations(fleet_id=f.text("fleet_id", max_len=256),
                      list_seq=f.integer("list_seq", lo=1, hi=2**53), issued_at=f.time("issued_at"),
                      order_ids=frozenset(f.strings("order_ids", max_len=4096)),
                      content_sha256=env.content_sha256())
    if rev.fleet_id != fleet_id:
        raise OrderError(f"order revocations are for fleet {rev.fleet_id!r}, not {fleet_id!r}")
    return rev


def revocations_document(fleet_id: str, list_seq: int, issued_at: datetime, order_ids: list[str]) -> Envelope:
    """An unsigned revocation list (the ``order`` role signs it)."""
    return Envelope(REVOCATION_TYPE, canonical.dumps({
        "fleet_id": fleet_id, "list_seq": list_seq, "issued_at": canonical.format_time(issued_at),
        "order_ids": sorted(order_ids)}), b"")


@dataclass(frozen=True)
class Resume:
    """A signed decision to lift the false-alert suspension of ``order_id`` on ``device_id``."""

    device_id: str
    order_id: str
    resume_seq: int
    issued_at: datetime
    decided_by: str
    reason: str
    content_sha256: str


def verify_resume(data: bytes, trust: TrustRoot, device_id: str) -> Resume:
    """Signature by the ``order`` role, type, structure and device."""
    env = decode(data, max_header=MAX_ORDER_HEADER, max_body=0, expect=RESUME_TYPE)
    trust.verify(env, "order")
    try:
        f = canonical.Fields(canonical.loads_object(env.header, "resume"), "resume", OrderError)
    except MalformedError as exc:
        raise OrderError(str(exc)) from exc
    resume = Resume(device_id=f.text("device_id", max_len=256), order_id=f.text("order_id", max_len=256),
                    resume_seq=f.integer("resume_seq", lo=1, hi=2**53), issued_at=f.time("issued_at"),
                    decided_by=f.text("decided_by", max_len=256), reason=f.text("reason", max_len=250),
                    content_sha256=env.content_sha256())
    if resume.device_id != device_id:
        raise WrongDeviceError(f"resume is for device {resume.device_id!r}, not {device_id!r}")
    return resume


def resume_document(device_id: str, order_id: str, resume_seq: int, issued_at: datetime,
                    decided_by: str, reason: str) -> Envelope:
    """An unsigned resume (the ``order`` role signs it)."""
    return Envelope(RESUME_TYPE, canonical.dumps({
        "device_id": device_id, "order_id": order_id, "resume_seq": resume_seq,
        "issued_at": canonical.format_time(issued_at), "decided_by": decided_by, "reason": reason}), b"")
