"""Typed helpers, one per record kind: the only way the firmware should write the log.

Each helper takes ids, hashes, counts, short reasons and times, and nothing
that could hold a template, an embedding or an image: there is simply no
parameter for one. ``AuditLog.append`` runs the biometric guard on top, so a
caller who passes the wrong variable into a string field is still refused.
Hashes are checked to be 64 hex characters and names to be short tokens, so the
log stays machine-readable for whoever audits it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, Protocol

from edge.audit.chain import is_hex64, iso_ts
from edge.errors import AuditError

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}")
MAX_REASON: Final = 300
# Adjudication outcomes the centre may publish; the pipeline maps its schema onto these.
OUTCOMES: Final = frozenset({"confirmed", "false_alert", "not_engaged", "inconclusive", "duplicate"})


class AuditSink(Protocol):
    def append(self, kind: str, data: dict[str, Any], now: datetime) -> dict[str, Any]: ...


def _token(name: str, value: str) -> str:
    if not isinstance(value, str) or _TOKEN.fullmatch(value) is None:
        raise AuditError(f"audit field '{name}' must be a short identifier, got {value!r:.60}")
    return value


def _tokens(name: str, values: Sequence[str]) -> list[str]:
    if isinstance(values, str):
        raise AuditError(f"audit field '{name}' must be a list of identifiers, not a string")
    return [_token(name, v) for v in values]


def _hash(name: str, value: str) -> str:
    if not is_hex64(value):
        raise AuditError(f"audit field '{name}' must be a 64-character lowercase hex SHA-256")
    return value


def _reason(value: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_REASON:
        raise AuditError(f"audit reason must be text of at most {MAX_REASON} characters")
    return value


def _count(name: str, value: int) -> int:
    if type(value) is not int or value < 0:
        raise AuditError(f"audit field '{name}' must be a non-negative integer")
    return value


def _number(name: str, value: float) -> float:
    if type(value) not in (int, float):
        raise AuditError(f"audit field '{name}' must be a number")
    return float(value)


def _flag(name: str, value: bool) -> bool:
    if not isinstance(value, bool):
        raise AuditError(f"audit field '{name}' must be true or false")
    return value


def _opt_time(t: datetime | None) -> str | None:
    return None if t is None else iso_ts(t)


# --- lifecycle ---------------------------------------------------------------------


def start(sink: AuditSink, now: datetime, *, device_id: str, software_version: str,
          config_sha256: str | None = None, reason: str = "") -> dict[str, Any]:
    return sink.append("start", {
        "device_id": _token("device_id", device_id),
        "software_version": _token("software_version", software_version),
        "config_sha256": None if config_sha256 is None else _hash("config_sha256", config_sha256),
        "reason": _reason(reason),
    }, now)


def stop(sink: AuditSink, now: datetime, *, reason: str, clean: bool = True) -> dict[str, Any]:
    return sink.append("stop", {"reason": _reason(reason), "clean": _flag("clean", clean)}, now)


# --- deployment orders -------------------------------------------------------------


def order_accepted(sink: AuditSink, now: datetime, *, order_id: str, sha256: str, site: str,
                   camera_ids: Sequence[str], not_before: datetime, not_after: datetime, purpose: str,
                   authority_ref: str, signer_key_ids: Sequence[str],
                   retention_days: int | None = None) -> dict[str, Any]:
    return sink.append("order_accepted", {
        "order_id": _token("order_id", order_id),
        "sha256": _hash("sha256", sha256),
        "site": _token("site", site),
        "camera_ids": _tokens("camera_ids", camera_ids),
        "not_before": iso_ts(not_before),
        "not_after": iso_ts(not_after),
        "purpose": _reason(purpose),
        "authority_ref": _reason(authority_ref),
        "signer_key_ids": _tokens("signer_key_ids", signer_key_ids),
        "retention_days": None if retention_days is None else _count("retention_days", retention_days),
    }, now)


def order_refused(sink: AuditSink, now: datetime, *, reason: str, order_id: str | None = None,
                  sha256: str | None = None) -> dict[str, Any]:
    return sink.append("order_refused", {
        "order_id": None if order_id is None else _token("order_id", order_id),
        "sha256": None if sha256 is None else _hash("sha256", sha256),
        "reason": _reason(reason),
    }, now)


def order_expired(sink: AuditSink, now: datetime, *, order_id: str, not_after: datetime) -> dict[str, Any]:
    return sink.append("order_expired", {"order_id": _token("order_id", order_id),
                                         "not_after": iso_ts(not_after)}, now)


# --- watchlist bundles (hash, signers and counts: never templates) -----------------


def bundle_loaded(sink: AuditSink, now: datetime, *, bundle_id: str, version: int, sha256: str,
                  signer_key_ids: Sequence[str], entry_count: int, threshold: float, model_id: str,
                  expires_at: datetime, predicted_false_alerts_per_10k: float | None = None,
                  predicted_found: float | None = None, refused: str | None = None) -> dict[str, Any]:
    """``threshold`` is the effective one; the predictions are the model card's for it
    (``edge.watchlist.operating``); ``refused`` says why the card keeps recognition off."""
    return sink.append("bundle_loaded", {
        "bundle_id": _token("bundle_id", bundle_id),
        "version": _count("version", version),
        "sha256": _hash("sha256", sha256),
        "signer_key_ids": _tokens("signer_key_ids", signer_key_ids),
        "entry_count": _count("entry_count", entry_count),
        "threshold": _number("threshold", threshold),
        "model_id": _token("model_id", model_id),
        "expires_at": iso_ts(expires_at),
        "predicted_false_alerts_per_10k": None if predicted_false_alerts_per_10k is None
        else _number("predicted_false_alerts_per_10k", predicted_false_alerts_per_10k),
        "predicted_found": None if predicted_found is None else _number("predicted_found", predicted_found),
        "refused": None if refused is None else _reason(refused),
    }, now)


def bundle_refused(sink: AuditSink, now: datetime, *, sha256: str, reason: str, bundle_id: str | None = None,
                   version: int | None = None, signer_key_ids: Sequence[str] = ()) -> dict[str, Any]:
    return sink.append("bundle_refused", {
        "sha256": _hash("sha256", sha256),
        "reason": _reason(reason),
        "bundle_id": None if bundle_id is None else _token("bundle_id", bundle_id),
        "version": None if version is None else _count("version", version),
        "signer_key_ids": _tokens("signer_key_ids", signer_key_ids),
    }, now)


def bundle_expired(sink: AuditSink, now: datetime, *, bundle_id: str, version: int, sha256: str,
                   expires_at: datetime) -> dict[str, Any]:
    return sink.append("bundle_expired", {
        "bundle_id": _token("bundle_id", bundle_id),
        "version": _count("version", version),
        "sha256": _hash("sha256", sha256),
        "expires_at": iso_ts(expires_at),
    }, now)


def bundle_purged(sink: AuditSink, now: datetime, *, bundle_id: str, version: int, sha256: str, reason: str,
                  entry_count: int, file_deleted: bool) -> dict[str, Any]:
    return sink.append("bundle_purged", {
        "bundle_id": _token("bundle_id", bundle_id),
        "version": _count("version", version),
        "sha256": _hash("sha256", sha256),
        "reason": _reason(reason),
        "entry_count": _count("entry_count", entry_count),
        "file_deleted": _flag("file_deleted", file_deleted),
    }, now)


def entries_expired(sink: AuditSink, now: datetime, *, bundle_id: str, version: int, expired: int,
                    remaining: int) -> dict[str, Any]:
    """Watchlist entries passed their ``expires_at``: the matcher was rebuilt without them."""
    return sink.append("entries_expired", {
        "bundle_id": _token("bundle_id", bundle_id),
        "version": _count("version", version),
        "expired": _count("expired", expired),
        "remaining": _count("remaining", remaining),
    }, now)


def trust_refused(sink: AuditSink, now: datetime, *, reason: str, kept_version: int,
                  kept_sha256: str) -> dict[str, Any]:
    """The trust file was not admitted (rollback, foreign root): the kept root stays."""
    return sink.append("trust_refused", {
        "reason": _reason(reason),
        "kept_version": _count("kept_version", kept_version),
        "kept_sha256": _hash("kept_sha256", kept_sha256),
    }, now)


# --- configuration and threshold governance ----------------------------------------


def config_loaded(sink: AuditSink, now: datetime, *, path: str, sha256: str,
                  threshold: float | None) -> dict[str, Any]:
    return sink.append("config_loaded", {
        "path": _reason(path),
        "sha256": _hash("sha256", sha256),
        "threshold": None if threshold is None else _number("threshold", threshold),
    }, now)


def threshold_changed(sink: AuditSink, now: datetime, *, old: float | None, new: float, source: str,
                      floor: float | None) -> dict[str, Any]:
    return sink.append("threshold_changed", {
        "old": None if old is None else _number("old", old),
        "new": _number("new", new),
        "source": _token("source", source),
        "floor": None if floor is None else _number("floor", floor),
    }, now)


def matching_suspended(sink: AuditSink, now: datetime, *, reason: str, false_alerts: int,
                       faces_processed: int, budget: float) -> dict[str, Any]:
    return sink.append("matching_suspended", {
        "reason": _reason(reason), "false_alerts": _count("false_alerts", false_alerts),
        "faces_processed": _count("faces_processed", faces_processed), "budget": _number("budget", budget),
    }, now)


def matching_resumed(sink: AuditSink, now: datetime, *, reason: str) -> dict[str, Any]:
    return sink.append("matching_resumed", {"reason": _reason(reason)}, now)


def outbox_quarantined(sink: AuditSink, now: datetime, *, file: str, quarantined_as: str, sha256: str,
                       size: int, reason: str) -> dict[str, Any]:
    """A corrupt outbox moved aside (kept for recovery); whatever it held was not delivered."""
    return sink.append("outbox_quarantined", {
        "file": _token("file", file), "quarantined_as": _token("quarantined_as", quarantined_as),
        "sha256": _hash("sha256", sha256), "bytes": _count("bytes", size),
        "reason": _reason(reason),
    }, now)


def recognition(sink: AuditSink, now: datetime, *, active: bool, reason: str) -> dict[str, Any]:
    """Recognition switched on or off (order window, bundle validity, suspension)."""
    return sink.append("recognition", {"active": _flag("active", active), "reason": _reason(reason)}, now)


# --- alerts and their outcomes (ids only) ------------------------------------------


def alert(sink: AuditSink, now: datetime, *, event_id: str, seq: int, subject_ref: str, bundle_id: str,
          bundle_version: int) -> dict[str, Any]:
    return sink.append("alert", {
        "event_id": _token("event_id", event_id),
        "seq": _count("seq", seq),
        "subject_ref": _token("subject_ref", subject_ref),
        "bundle_id": _token("bundle_id", bundle_id),
        "bundle_version": _count("bundle_version", bundle_version),
    }, now)


def adjudication(sink: AuditSink, now: datetime, *, event_id: str, outcome: str, verifier_ids: Sequence[str],
                 decided_at: datetime | None = None, note: str = "") -> dict[str, Any]:
    if not isinstance(outcome, str) or outcome not in OUTCOMES:
        raise AuditError(f"unknown adjudication outcome '{outcome}' (one of {sorted(OUTCOMES)})")
    return sink.append("adjudication", {
        "event_id": _token("event_id", event_id),
        "outcome": outcome,
        "verifier_ids": _tokens("verifier_ids", verifier_ids),
        "decided_at": _opt_time(decided_at),
        "note": _reason(note),
    }, now)


def deletion(sink: AuditSink, now: datetime, *, event_id: str, what: str, reason: str) -> dict[str, Any]:
    """One item of evidence deleted (e.g. ``what="alert_evidence"`` after a false alert)."""
    return sink.append("deletion", {"event_id": _token("event_id", event_id), "what": _token("what", what),
                                    "reason": _reason(reason)}, now)


def purge(sink: AuditSink, now: datetime, *, what: str, count: int, reason: str,
          older_than: datetime | None = None) -> dict[str, Any]:
    """A batch removal (retention expiry): how many items, not which faces."""
    return sink.append("purge", {"what": _token("what", what), "count": _count("count", count),
                                 "reason": _reason(reason), "older_than": _opt_time(older_than)}, now)
