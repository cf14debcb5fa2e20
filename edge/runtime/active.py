"""The device's watchlist and deployment order as the running firmware holds them.

Verification is pure (``edge.watchlist``, through one ``VerificationContext``);
this class adds the few side effects around it: reading the order and the
provisioned bundle at start, installing pushed bundles through the store, working
out the deployment's operating point (``edge.watchlist.operating``: the card, the
bundle's size and the order's budget) whenever the bundle or the order changes,
building the matcher (which fixes the effective threshold), and answering "may
recognition run now, and why not". A refused bundle never replaces the active one;
a combination the card says cannot meet the order keeps recognition off, saying why.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.accountability.governance import check_threshold
from edge.accountability.monitor import DEFAULT_BUDGET
from edge.config import Config
from edge.errors import OperatingPointError, SignedDocumentError, StateError
from edge.formats import iso_utc
from edge.fsutil import atomic_write
from edge.perception.manifest import Manifest
from edge.pipeline.matcher import Matcher
from edge.watchlist.bundle import DeviceIdentity, VerifiedBundle
from edge.watchlist.context import VerificationContext, load_context, read_file
from edge.watchlist.model import Recogniser
from edge.watchlist.operating import OperatingPoint, operating_point
from edge.watchlist.order import DeploymentOrder, Resume, Revocations, verify_order
from edge.watchlist.orderstate import OrderStore
from edge.watchlist.state import BundleStore, TrustStore, purge_bundle
from edge.watchlist.trust import TrustRoot

log = logging.getLogger(__name__)


def device_context(cfg: Config, manifest: Manifest, trust: TrustRoot | None = None) -> VerificationContext:
    """The device's verification context: what ``edge run`` and ``edge selftest`` verify with.

    ``trust``: the root ``admit_trust`` kept (``edge run``); None reads the trust file as is.
    """
    return load_context(trust_file=cfg.trust.trust_file, device_key=cfg.trust.device_key,
                        identity=DeviceIdentity(cfg.device.id, cfg.device.fleet_id),
                        manifest=manifest, family=cfg.models.embedder, trust=trust)


@dataclass(frozen=True)
class TrustAdmission:
    root: TrustRoot
    refused: str | None = None  # why the trust file was not taken; the kept root is used


def admit_trust(cfg: Config) -> TrustAdmission:
    """The trust root to run with: the trust file if the kept root admits it (first root,
    or a rotation by its rules), else the kept root with the refusal (status and audit)."""
    data = read_file(cfg.trust.trust_file, "trust file", "provision it with `edge trust init`")
    store = TrustStore(cfg.state.dir / "trust")
    try:
        return TrustAdmission(store.admit(data))
    except SignedDocumentError as e:
        kept = store.current()
        if kept is None:
            raise
        reason = f"{type(e).__name__}: {e}"
        log.error("trust file refused, keeping the accepted root v%d: %s", kept.version, reason)
        return TrustAdmission(kept, reason)


def from_config(cfg: Config, ctx: VerificationContext, rec: Recogniser) -> ActiveWatchlist:
    t = cfg.trust
    return ActiveWatchlist(ctx, rec, cfg.device.camera_id, cfg.state.dir, t.order_file, t.bundle_file,
                           cfg.matching.threshold)


@dataclass(frozen=True)
class Activation:
    bundle: VerifiedBundle
    # Carries the effective threshold: the bundle's, raised by the operating point and the config.
    matcher: Matcher
    operating: OperatingPoint | None  # None: refused, see ``refusal``
    refusal: str | None = None

    @functools.cached_property
    def next_expiry(self) -> datetime | None:
        """The earliest ``expires_at`` among the entries the matcher holds."""
        return min((e.expires_at for e in self.matcher.entries), default=None)


class ActiveWatchlist:
    def __init__(self, ctx: VerificationContext, rec: Recogniser, camera_id: str, state_dir: Path,
                 order_file: Path, bundle_file: Path | None = None,
                 threshold: float | None = None) -> None:
        """``rec``: the running recogniser (card and provenance); ``threshold``: the config's
        ``matching.threshold`` (may only raise a bundle's)."""
        if threshold is not None:
            check_threshold(threshold, ctx.threshold_floor, "config matching.threshold")
        self.ctx = ctx
        self.recogniser = rec
        self.camera_id = camera_id
        self.order_file = order_file
        self.bundle_file = bundle_file
        self.raise_to = threshold
        self.store = BundleStore(state_dir / "bundle")
        self.orders = OrderStore(state_dir / "order")
        self.kept_order = state_dir / "order" / "order-topic.json"  # the last order taken by topic
        self.active: Activation | None = None
        self.order: DeploymentOrder | None = None
        self.order_error: str | None = None
        self.bundle_error: str | None = None
        self.file_deleted = False
        self.trust_refused: str | None = None  # the trust file was refused; the kept root runs

    def _activate(self, verified: VerifiedBundle, now: datetime) -> Activation:
        live = Matcher.from_bundle(verified, now)  # the entries still live, at the bundle's threshold
        op: OperatingPoint | None = None
        refusal: str | None = None
        try:
            op = self.operating_point(live)
        except OperatingPointError as e:
            refusal = str(e)
            log.error("recognition refused for this deployment: %s", refusal)
        matcher = live.raised(None if op is None else op.threshold, self.raise_to)
        self.active = Activation(verified, matcher, op, refusal)
        return self.active

    def operating_point(self, live: Matcher) -> OperatingPoint:
        """The operating point for the matcher's live entries under the current order."""
        order = self.order
        budget = order.false_alert_budget if order is not None else None
        return operating_point(
            self.recogniser.card, people=max(1, len(live)), templates=max(1, len(live.templates)),
            budget_per_10k=DEFAULT_BUDGET if budget is None else float(budget),
            min_found=None if order is None else order.min_found)

    def next_expiry(self) -> datetime | None:
        """When the first entry still matched expires (the matcher must be rebuilt then)."""
        return None if self.active is None else self.active.next_expiry

    def drop_expired(self, now: datetime) -> tuple[Activation, int] | None:
        """Rebuild the matcher without the entries expired at ``now``: the new activation
        and how many entries left it; None if none expired."""
        nxt = self.next_expiry()
        if self.active is None or nxt is None or now < nxt:
            return None
        before = len(self.active.matcher)
        act = self._activate(self.active.bundle, now)
        return act, before - len(act.matcher)

    # --- start-up --------------------------------------------------------------------

    def load(self, now: datetime) -> None:
        """Read the order, then re-verify the active bundle (or install the provisioned one)."""
        self.reload_order()
        try:
            verified = self.store.load_active(self.ctx, now)
            if verified is None and self.bundle_file is not None:
                data = read_file(self.bundle_file, "bundle", "fix trust.bundle_file")
                verified = self.store.install(data, self.ctx, now)
            if verified is not None:
                self._activate(verified, now)
        except (SignedDocumentError, StateError) as e:
            self.bundle_error = f"{type(e).__name__}: {e}"
            log.error("no usable watchlist bundle: %s", self.bundle_error)

    def reload_order(self, now: datetime | None = None) -> None:
        """Take the newest of the order file and the last order taken by topic (by
        ``order_seq``), checked against the kept order state (replay, revocation); with
        ``now``, work the active bundle's operating point out again for it."""
        try:
            data = read_file(self.order_file, "deployment order", "install a signed order")
            with contextlib.suppress(OSError, SignedDocumentError):
                kept = self.kept_order.read_bytes()
                fleet = self.ctx.identity.fleet_id
                if verify_order(kept, self.ctx.trust, fleet).order_seq > self._seq_or_zero(data):
                    data = kept
            self.order = self.orders.admit_order(data, self.ctx.trust, self.ctx.identity.fleet_id)
            self.order_error = None
        except (SignedDocumentError, StateError) as e:
            self.order, self.order_error = None, f"{type(e).__name__}: {e}"
            log.error("no valid deployment order: %s", self.order_error)
        if now is not None:
            self.refresh_operating(now)

    def refresh_operating(self, now: datetime) -> Activation | None:
        """Work the active bundle's operating point out again (the order changed)."""
        return None if self.active is None else self._activate(self.active.bundle, now)

    def _seq_or_zero(self, data: bytes) -> int:
        try:
            return verify_order(data, self.ctx.trust, self.ctx.identity.fleet_id).order_seq
        except SignedDocumentError:
            return 0

    def install_order(self, data: bytes) -> DeploymentOrder | None:
        """An order from the retained topic: admitted (replay, revocation) and kept for the
        next start. Returns the order when it replaces the running one, None if it is the same."""
        order = self.orders.admit_order(data, self.ctx.trust, self.ctx.identity.fleet_id)
        if self.order is not None and order.content_sha256 == self.order.content_sha256:
            return None
        try:
            self.kept_order.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.kept_order, data)
        except OSError as e:
            raise StateError(f"cannot keep the order taken by topic in {self.kept_order}: {e}") from e
        self.order, self.order_error = order, None
        return order

    def install_revocations(self, data: bytes) -> tuple[Revocations, DeploymentOrder | None]:
        """A signed revocation list; returns it and the running order it revoked (dropped), if any."""
        rev = self.orders.admit_revocations(data, self.ctx.trust, self.ctx.identity.fleet_id)
        order = self.order
        if order is None or order.order_id not in rev.order_ids:
            return rev, None
        self.order = None
        self.order_error = f"order {order.order_id} revoked by revocation list {rev.list_seq}"
        log.warning("deployment %s", self.order_error)
        return rev, order

    def admit_resume(self, data: bytes) -> Resume:
        return self.orders.admit_resume(data, self.ctx.trust, self.ctx.identity.device_id, self.order)

    # --- running ---------------------------------------------------------------------

    def is_active(self, data: bytes) -> bool:
        """``data`` is exactly the bundle already active (a retained copy on reconnect)."""
        if self.active is None:
            return False
        inst = self.store.installed()
        return inst is not None and inst.file_sha256 == hashlib.sha256(data).hexdigest()

    def install(self, data: bytes, now: datetime) -> Activation:
        """Verify and activate a pushed bundle; on any error the active one stays."""
        verified = self.store.install(data, self.ctx, now)
        self.bundle_error = None
        return self._activate(verified, now)

    def purge_if_ended(self, now: datetime) -> Activation | None:
        """At the end of the order window drop the templates and delete the bundle file.

        Returns what was purged (for the audit record), or None. The version record
        stays, so the same or an older bundle cannot be brought back.
        """
        if self.order is None or now < self.order.valid_until or self.active is None:
            return None
        purged, self.active = self.active, None
        self.file_deleted = purge_bundle(self.store)
        self.bundle_error = f"purged at the end of deployment order {self.order.order_id}"
        log.warning("watchlist %s", self.bundle_error)
        return purged

    def allowed(self, now: datetime) -> tuple[bool, str]:
        if self.order is None:
            return False, f"no valid deployment order ({self.order_error})"
        status = self.order.check(now, self.ctx.identity.device_id, self.camera_id)
        if not status.active:
            return False, f"outside the deployment order's window: {status.reason}"
        named, running = self.order.recogniser, self.recogniser
        if named is not None and named != running.family:
            return False, (f"order {self.order.order_id} names the recogniser {named}; this device "
                           f"runs {running.family} (set models.embedder and install a bundle built for it)")
        if named is None and not running.eligible_default:
            return False, (f"the recogniser {running.family} runs only where a signed deployment order "
                           f"names it: {running.verdict}")
        if self.active is None:
            return False, f"no active watchlist bundle ({self.bundle_error})"
        if self.active.refusal is not None:
            return False, f"refused by the model card: {self.active.refusal}"
        h = self.active.bundle.header
        if now >= h.expires_at:
            return False, f"watchlist bundle {h.bundle_id} v{h.version} expired at {iso_utc(h.expires_at)}"
        if now < h.not_before:
            return False, f"watchlist bundle {h.bundle_id} not valid before {iso_utc(h.not_before)}"
        return True, f"order {self.order.order_id} {status.reason}"

    def bundle_status(self) -> dict[str, Any] | None:
        if self.active is None:
            return None
        h = self.active.bundle.header
        op = self.active.operating
        return {"id": h.bundle_id, "version": h.version, "expires_at": iso_utc(h.expires_at),
                "entries": len(self.active.matcher), "threshold": self.active.matcher.threshold,
                "operating_point": None if op is None else op.to_json()}

    def trust_status(self) -> dict[str, Any]:
        t = self.ctx.trust
        return {"version": t.version, "sha256": t.content_sha256, "refused": self.trust_refused}

    def order_status(self) -> dict[str, Any] | None:
        if self.order is None:
            return {"valid": False, "error": self.order_error}
        o = self.order
        return {"valid": True, "id": o.order_id, "site": o.site, "purpose": o.purpose,
                "valid_from": iso_utc(o.valid_from), "valid_until": iso_utc(o.valid_until),
                "public_contact": o.public_contact, "require_two_verifiers": o.require_two_verifiers,
                "retention_days": o.retention_days}

    def summary(self) -> str:
        if self.active is None:
            return "no bundle"
        h = self.active.bundle.header
        return f"bundle {h.bundle_id} v{h.version} ({len(self.active.matcher)} subjects)"

