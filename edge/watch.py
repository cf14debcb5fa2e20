"""The device's watchlist and deployment order as the running firmware holds them.

Verification is pure (``edge.watchlist``); this class adds the few side effects
around it: reading the trust, key and order files at start, installing pushed
bundles through the store, and answering "may recognition run now, and why not".
A refused bundle never replaces the active one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import nacl.public

from edge.alert import iso_utc
from edge.config import DeviceConfig, TrustConfig
from edge.errors import SignedDocumentError, StateError
from edge.matcher import Matcher
from edge.watchlist.bundle import DeviceIdentity, ModelRef, VerifiedBundle
from edge.watchlist.keys import load_device_key
from edge.watchlist.order import DeploymentOrder, verify_order
from edge.watchlist.state import BundleStore, purge_bundle
from edge.watchlist.trust import TrustRoot, load_pinned

log = logging.getLogger(__name__)


def _read(path: Path, what: str, fix: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise StateError(f"cannot read the {what} {path}: {e.strerror}; {fix}") from e


@dataclass(frozen=True)
class Activation:
    bundle: VerifiedBundle
    matcher: Matcher


class Watchlist:
    def __init__(self, device: DeviceConfig, trust_cfg: TrustConfig, state_dir: Path,
                 model: ModelRef, threshold_floor: float) -> None:
        self.identity = DeviceIdentity(device.id, device.fleet_id)
        self.camera_id = device.camera_id
        self.trust_cfg = trust_cfg
        self.model = model
        self.floor = threshold_floor
        self.store = BundleStore(state_dir / "bundle")
        self.trust: TrustRoot = load_pinned(
            _read(trust_cfg.trust_file, "trust file", "provision it with `edge trust init`"))
        self._key: nacl.public.PrivateKey = load_device_key(trust_cfg.device_key)
        self.active: Activation | None = None
        self.order: DeploymentOrder | None = None
        self.order_error: str | None = None
        self.bundle_error: str | None = None
        self.file_deleted = False

    # --- start-up --------------------------------------------------------------------

    def load(self, now: datetime) -> None:
        """Re-verify the active bundle (or install the provisioned one) and read the order."""
        try:
            verified = self.store.load_active(
                self.trust, self.identity, now, expected_model=self.model,
                threshold_floor=self.floor, device_key=self._key)
            if verified is None and self.trust_cfg.bundle_file is not None:
                data = _read(self.trust_cfg.bundle_file, "bundle", "fix trust.bundle_file")
                verified = self.store.install(
                    data, self.trust, self.identity, now, expected_model=self.model,
                    threshold_floor=self.floor, device_key=self._key)
            if verified is not None:
                self.active = Activation(verified, Matcher.from_bundle(verified, now))
        except (SignedDocumentError, StateError) as e:
            self.bundle_error = f"{type(e).__name__}: {e}"
            log.error("no usable watchlist bundle: %s", self.bundle_error)
        self.reload_order()

    def reload_order(self) -> None:
        try:
            data = _read(self.trust_cfg.order_file, "deployment order", "install a signed order")
            self.order = verify_order(data, self.trust, self.identity.fleet_id)
            self.order_error = None
        except (SignedDocumentError, StateError) as e:
            self.order, self.order_error = None, f"{type(e).__name__}: {e}"
            log.error("no valid deployment order: %s", self.order_error)

    # --- running ---------------------------------------------------------------------

    def install(self, data: bytes, now: datetime) -> Activation:
        """Verify and activate a pushed bundle; on any error the active one stays."""
        verified = self.store.install(
            data, self.trust, self.identity, now, expected_model=self.model,
            threshold_floor=self.floor, device_key=self._key)
        self.active = Activation(verified, Matcher.from_bundle(verified, now))
        self.bundle_error = None
        return self.active

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
        status = self.order.check(now, self.identity.device_id, self.camera_id)
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
                "entries": len(self.active.matcher), "threshold": h.threshold}

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

