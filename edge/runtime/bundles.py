"""A watchlist change across the device's parts: install, purge, and their audit records.

The active watchlist verifies and holds the bundle; these functions carry a change
to the recognizer's matcher, the ledger's public figures and the audit log.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING

from edge.audit import records as audit_records
from edge.errors import EdgeError

if TYPE_CHECKING:
    from edge.runtime.wiring import Device


def audit_loaded(dev: Device, now: datetime) -> None:
    """Record the active bundle (at start, or after a pushed install)."""
    act = dev.watch.active
    if act is None:
        return
    h = act.bundle.header
    op = act.operating
    audit_records.bundle_loaded(
        dev.audit, now, bundle_id=h.bundle_id, version=h.version,
        sha256=act.bundle.content_sha256,
        signer_key_ids=sorted(k.hex() for k in act.bundle.signer_keyids),
        entry_count=len(act.bundle.entries), threshold=act.matcher.threshold, model_id=dev.model.id,
        expires_at=h.expires_at,
        predicted_false_alerts_per_10k=None if op is None else op.predicted_fpir * 10_000,
        predicted_found=None if op is None else 1.0 - op.predicted_fnir,
        refused=None if act.refusal is None else act.refusal[:audit_records.MAX_REASON])


def install_pushed(dev: Device, data: bytes, now: datetime) -> bool:
    """Verify and activate a pushed bundle; a refusal is audited and raised, the old one stays.

    The bundle already active (the retained copy, again on every reconnect) is a no-op:
    returns False, nothing verified, written or audited.
    """
    if dev.watch.is_active(data):
        return False
    sha = hashlib.sha256(data).hexdigest()
    try:
        act = dev.watch.install(data, now)
    except EdgeError as e:
        audit_records.bundle_refused(dev.audit, now, sha256=sha, reason=type(e).__name__)
        raise
    dev.recognizer.set_matcher(act.matcher)
    audit_loaded(dev, now)
    dev.ledger.set_watchlist_size(len(act.matcher))
    return True


def drop_expired(dev: Device, now: datetime) -> int:
    """Entries past their ``expires_at``: matcher rebuilt without them, audited; returns how many."""
    dropped = dev.watch.drop_expired(now)
    if dropped is None:
        return 0
    act, expired = dropped
    dev.recognizer.set_matcher(act.matcher)
    h = act.bundle.header
    audit_records.entries_expired(dev.audit, now, bundle_id=h.bundle_id, version=h.version,
                                  expired=expired, remaining=len(act.matcher))
    dev.ledger.set_watchlist_size(len(act.matcher))
    return expired


def purge_if_ended(dev: Device, now: datetime) -> bool:
    """End of the order window: templates dropped, bundle file deleted, purge audited."""
    purged = dev.watch.purge_if_ended(now)
    if purged is None:
        return False
    dev.recognizer.set_matcher(None)
    h = purged.bundle.header
    audit_records.bundle_purged(
        dev.audit, now, bundle_id=h.bundle_id, version=h.version, sha256=purged.bundle.content_sha256,
        reason="deployment order ended", entry_count=len(purged.bundle.entries),
        file_deleted=dev.watch.file_deleted)
    dev.ledger.set_watchlist_size(0)
    return True
