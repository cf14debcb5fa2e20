"""What the device keeps of deployment orders, so that an old signed document cannot be
played back: the accepted order's ``order_seq``, the newest revocation list, and the
``resume_seq`` of the last resume applied.

Layout (one file, replaced atomically, written only after a document verified)::

    order-state.json   {"order": {"order_seq", "order_id", "content_sha256"} | null,
                        "revocations": {"list_seq", "content_sha256", "order_ids"} | null,
                        "resume_seq": 0}

Verification is pure (``edge.watchlist.order``); this class checks each verified
document against the state, refuses (typed) or records it, and never changes the
state on a refusal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import MalformedError, OrderError, ReplayError, RollbackError, StateError
from edge.fsutil import atomic_write, read_optional
from edge.watchlist import canonical
from edge.watchlist.order import (
    DeploymentOrder,
    OrderRecord,
    Resume,
    Revocations,
    check_order_seq,
    verify_order,
    verify_resume,
    verify_revocations,
)
from edge.watchlist.trust import TrustRoot

ORDER_STATE_FILE = "order-state.json"


@dataclass(frozen=True)
class RevocationRecord:
    list_seq: int
    content_sha256: str
    order_ids: frozenset[str]


@dataclass(frozen=True)
class OrderState:
    order: OrderRecord | None = None
    revocations: RevocationRecord | None = None
    resume_seq: int = 0


class OrderStore:
    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)

    def state(self) -> OrderState:
        path = self.dir / ORDER_STATE_FILE
        raw = read_optional(path)
        if raw is None:
            return OrderState()
        try:
            f = canonical.Fields(canonical.loads_object(raw, "order state"), "order state")
            order = revocations = None
            if f.has("order"):
                o = f.sub("order")
                order = OrderRecord(o.integer("order_seq", lo=1), o.text("order_id", max_len=256),
                                    o.text("content_sha256", max_len=64))
            if f.has("revocations"):
                r = f.sub("revocations")
                revocations = RevocationRecord(r.integer("list_seq", lo=1),
                                               r.text("content_sha256", max_len=64),
                                               frozenset(r.strings("order_ids", max_len=4096)))
            return OrderState(order, revocations, f.integer("resume_seq"))
        except MalformedError as exc:
            raise StateError(f"{path} is corrupt: {exc}") from exc

    def _save(self, st: OrderState) -> None:
        obj: dict[str, Any] = {"order": None, "revocations": None, "resume_seq": st.resume_seq}
        if st.order is not None:
            obj["order"] = {"order_seq": st.order.order_seq, "order_id": st.order.order_id,
                            "content_sha256": st.order.content_sha256}
        if st.revocations is not None:
            obj["revocations"] = {"list_seq": st.revocations.list_seq,
                                  "content_sha256": st.revocations.content_sha256,
                                  "order_ids": sorted(st.revocations.order_ids)}
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.dir / ORDER_STATE_FILE, json.dumps(obj, indent=1).encode())
        except OSError as exc:
            raise StateError(f"cannot write {self.dir / ORDER_STATE_FILE}: {exc}") from exc

    def revoked(self, order_id: str) -> bool:
        rev = self.state().revocations
        return rev is not None and order_id in rev.order_ids

    def admit_order(self, data: bytes, trust: TrustRoot, fleet_id: str) -> DeploymentOrder:
        """Verify an order (file or retained topic) and check it against the state."""
        order = verify_order(data, trust, fleet_id)
        st = self.state()
        if st.revocations is not None and order.order_id in st.revocations.order_ids:
            raise OrderError(f"order {order.order_id} is revoked (revocation list {st.revocations.list_seq})")
        if check_order_seq(order, st.order):
            self._save(OrderState(OrderRecord(order.order_seq, order.order_id, order.content_sha256),
                                  st.revocations, st.resume_seq))
        return order

    def admit_revocations(self, data: bytes, trust: TrustRoot, fleet_id: str) -> Revocations:
        """Verify a revocation list; a newer one replaces the kept one, an older one is refused."""
        rev = verify_revocations(data, trust, fleet_id)
        st = self.state()
        last = st.revocations
        if last is not None and rev.list_seq <= last.list_seq:
            if rev.list_seq < last.list_seq:
                raise RollbackError(f"revocation list {rev.list_seq} is older than the kept {last.list_seq}")
            if rev.content_sha256 != last.content_sha256:
                raise ReplayError(f"revocation list {rev.list_seq} differs from the kept one of that number")
            return rev
        self._save(OrderState(st.order, RevocationRecord(rev.list_seq, rev.content_sha256, rev.order_ids),
                              st.resume_seq))
        return rev

    def admit_resume(self, data: bytes, trust: TrustRoot, device_id: str,
                     order: DeploymentOrder | None) -> Resume:
        """Verify a resume for the accepted ``order``; each resume_seq is used once."""
        resume = verify_resume(data, trust, device_id)
        if order is None or resume.order_id != order.order_id:
            raise OrderError(f"resume is for order {resume.order_id}, the device runs"
                             f" {'no order' if order is None else order.order_id}")
        st = self.state()
        if resume.resume_seq <= st.resume_seq:
            raise ReplayError(f"resume_seq {resume.resume_seq} was already used (last {st.resume_seq})")
        self._save(OrderState(st.order, st.revocations, resume.resume_seq))
        return resume
