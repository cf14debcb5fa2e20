"""The device's watchlist and deployment order as the running firmware holds them.

Verification is pure (``edge.watchlist``, through one ``VerificationContext``);
this class adds the few side effects around it: reading the order and the
provisioned bundle at start, installing pushed bundles through the store, building
the matcher (which fixes the effective threshold), and answering "may recognition
run now, and why not". A refused bundle never replaces the active one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.accountability.governance import check_threshold
from edge.config import Config
from edge.errors import SignedDocumentError, StateError
from edge.formats import iso_utc
from edge.perception.manifest import Manifest
from edge.pipeline.matcher import Matcher
from edge.watchlist.bundle import DeviceIdentity, VerifiedBundle
from edge.watchlist.context import VerificationContext, load_context, read_file
from edge.watchlist.order import DeploymentOrder
from edge.watchlist.state import BundleStore, purge_bundle

log = logging.getLogger(__name__)


def device_context(cfg: Config, manifest: Manifest) -> VerificationContext:
    """The device's verification context: what ``edge run`` and ``edge selftest`` verify with."""
    return load_context(trust_file=cfg.trust.trust_file, device_key=cfg.trust.device_key,
                        identity=DeviceIdentity(cfg.device.id, cfg.device.fleet_id),
                        manifest=manifest, family=cfg.models.embedder)


def from_config(cfg: Config, ctx: VerificationContext) -> ActiveWatchlist:
    t = cfg.trust
    return ActiveWatchlist(ctx, cfg.device.camera_id, cfg.state.dir, t.order_file, t.bundle_file,
                           cfg.matching.threshold)


@dataclass(frozen=True)
class Activation:
    bundle: VerifiedBundle
    matcher: Matcher  # carries the effective threshold (bundle's, raised by the config's)


class ActiveWatchlist:
    def __init__(self, ctx: VerificationContext, camera_id: str, state_dir: Path,
                 order_file: Path, bundle_file: Path | None = None,
                 threshold: float | None = None) -> None:
        """``threshold``: the config's ``matching.threshold`` (may only raise a bundle's)."""
        if threshold is not None:
            check_threshold(threshold, ctx.threshold_floor, "config matching.threshold")
        self.ctx = ctx
        self.camera_id = camera_id
        self.order_file = order_file
        self.bundle_file = bundle_file
        self.raise_to = threshold
        self.store = BundleStore(state_dir / "bundle")
        self.active: Activation | None = None
        self.order: DeploymentOrder | None = None
        self.order_error: str | None = None
        self.bundle_error: str | None = None
        self.file_deleted = False

    def _activate(self, verified: VerifiedBundle, now: datetime) -> Activation:
        self.active = Activation(verified, Matcher.from_bundle(verified, now, self.raise_to))
        return self.active

    # --- start-up --------------------------------------------------------------------

    def load(self, now: datetime) -> None:
        """Re-verify the active bundle (or install the provisioned one) and read the order."""
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
        self.reload_order()

    def reload_order(self) -> None:
        try:
            data = read_file(self.order_file, "deployment order", "install a signed order")
            self.order = self.ctx.verify_order(data)
            self.order_error = None
        except (SignedDocumentError, StateError) as e:
            self.order, self.order_error = None, f"{type(e).__name__}: {e}"
            log.error("no valid deployment order: %s", self.order_error)

    # --- running ---------------------------------------------------------------------

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
        if self.active is None:
            return False, f"no active watchlist bundle ({self.bundle_error})"
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
        return {"id": h.bundle_id, "version": h.version, "expires_at": iso_utc(h.expires_at),
                "entries": len(self.active.matcher), "threshold": self.active.matcher.threshold}

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

