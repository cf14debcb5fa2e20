"""``edge report``'s content: what a device did, in a form a police force could publish.

Sources, both on the device's state directory:

- ``transparency.json`` (``transparency``): per-deployment counters and the
  order's public references (purpose, authorisation, DPIA, notices, contact);
- the audit log (``edge.audit``): verified first (result and head hash go into
  the report), then read for the periods recognition was active, the orders
  accepted, bundles loaded (watchlist size, threshold), suspensions, deletions
  and purges, and as a cross-check of the alert count.

The report holds figures, times, identifiers of orders and references of
documents. It never holds a subject reference, an event id, an image or a
template: a reader learns what the system did, not whom it flagged.
``build_report`` returns a JSON-able dict; ``render_markdown`` formats it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from edge.accountability.transparency import FILE_NAME, Deployment, load_deployments
from edge.audit.chain import iso_ts
from edge.audit.log import iter_records, list_segments, verify_dir
from edge.errors import AuditError

SCHEMA: Final = "edge.report/1"
UNIT: Final = 10_000


def _ts(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _audit_integrity(audit_dir: Path) -> dict[str, Any]:
    if not list_segments(audit_dir):
        return {"present": False, "ok": False, "records": 0, "head": None, "broken": None, "warnings": []}
    try:
        rep = verify_dir(audit_dir)
    except AuditError as e:
        return {"present": True, "ok": False, "records": 0, "head": None, "broken": str(e), "warnings": []}
    return {"present": True, "ok": rep.ok, "records": rep.records, "head": rep.head,
            "broken": None if rep.broken is None else str(rep.broken), "warnings": list(rep.warnings)}


def _periods(recs: Iterable[dict[str, Any]], until: datetime) -> list[tuple[datetime, datetime]]:
    """Intervals recognition was on, from ``recognition`` records (open ones end at stop or ``until``)."""
    out: list[tuple[datetime, datetime]] = []
    start: datetime | None = None
    for r in recs:
        t = _ts(r.get("ts"))
        if t is None:
            continue
        kind, data = r.get("kind"), r.get("data") or {}
        on = kind == "recognition" and data.get("active") is True
        off = (kind == "recognition" and data.get("active") is False) or kind in ("stop", "start")
        if on and start is None:
            start = t
        elif off and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, until))
    return out


Period = tuple[datetime, datetime]


def _clip(periods: list[Period], lo: datetime, hi: datetime) -> list[Period]:
    return [(max(a, lo), min(b, hi)) for a, b in periods if b > lo and a < hi]


def _in(r: dict[str, Any], lo: datetime, hi: datetime) -> bool:
    t = _ts(r.get("ts"))
    return t is not None and lo <= t < hi


def _deployment(dep: Deployment, recs: list[dict[str, Any]], periods: list[tuple[datetime, datetime]],
                now: datetime, next_start: datetime) -> dict[str, Any]:
    lo = _ts(dep.valid_from) or now
    hi = _ts(dep.valid_until) or now
    mine = _clip(periods, lo, hi)
    window = [r for r in recs if _in(r, lo, hi)]
    # Reviews, deletions and purges come after the alert, often after the window: they belong to
    # this deployment until the next one starts.
    after = [r for r in recs if _in(r, lo, next_start)]
    orders = [r["data"] for r in recs if r.get("kind") == "order_accepted"
              and (r.get("data") or {}).get("order_id") == dep.order_id]
    bundles = [r["data"] for r in window if r.get("kind") == "bundle_loaded"]
    rate = dep.false_alert_rate()
    return {
        "order_id": dep.order_id,
        "site": dep.site,
        "camera_ids": dep.camera_ids,
        "purpose": dep.purpose or (orders[-1].get("purpose", "") if orders else ""),
        "authorising_ref": dep.authorising_ref or (orders[-1].get("authority_ref", "") if orders else ""),
        "dpia_ref": dep.dpia_ref,
        "equality_impact_ref": dep.equality_impact_ref,
        "rights_impact_ref": dep.rights_impact_ref,
        "public_notice_ref": dep.public_notice_ref,
        "public_contact": dep.public_contact,
        "window": {"from": dep.valid_from, "until": dep.valid_until},
        "order_accepted_in_audit": bool(orders),
        "active_periods": [{"from": iso_ts(a), "until": iso_ts(b)} for a, b in mine],
        "active_seconds_audit": round(sum((b - a).total_seconds() for a, b in mine), 1),
        "active_seconds_counted": round(dep.active_seconds, 1),
        "counters": dep.counters(),
        "false_alerts_per_10000_faces": None if rate is None else round(rate, 3),
        "require_two_verifiers": dep.require_two_verifiers,
        "false_alert_budget_per_10000_faces": dep.false_alert_budget,
        "retention_days": dep.retention_days,
        "watchlist": {"bundles_loaded": len(bundles),
                      "largest_entry_count": max((int(b.get("entry_count", 0)) for b in bundles),
                                                 default=None),
                      "thresholds": sorted({float(b["threshold"]) for b in bundles if "threshold" in b}),
                      # What the model card predicted at each loaded bundle's threshold.
                      "predicted": [{"threshold": b.get("threshold"),
                                     "false_alerts_per_10000_faces": b.get("predicted_false_alerts_per_10k"),
                                     "listed_people_found": b.get("predicted_found"),
                                     "refused": b.get("refused")}
                                    for b in bundles
                                    if b.get("predicted_found") is not None or b.get("refused")]},
        "audit": {
            "alerts": sum(1 for r in window if r.get("kind") == "alert"),
            "adjudications": sum(1 for r in after if r.get("kind") == "adjudication"),
            "evidence_deleted_after_review": sum(1 for r in after if r.get("kind") == "deletion"),
            "evidence_purged_at_retention": sum(int((r.get("data") or {}).get("count", 0))
                                                for r in after if r.get("kind") == "purge"),
            "watchlist_purges": sum(1 for r in after if r.get("kind") == "bundle_purged"),
            "suspensions": [{"at": r.get("ts"), "reason": (r.get("data") or {}).get("reason", "")}
                            for r in window if r.get("kind") == "matching_suspended"],
            "threshold_changes": sum(1 for r in window if r.get("kind") == "threshold_changed"),
        },
    }


def build_report(state_dir: Path, now: datetime, audit_dir: Path | None = None) -> dict[str, Any]:
    audit_dir = audit_dir if audit_dir is not None else state_dir / "audit"
    device_id, deployments = load_deployments(state_dir / FILE_NAME)
    integrity = _audit_integrity(audit_dir)
    recs = list(iter_records(audit_dir)) if integrity["present"] else []
    periods = _periods(recs, now)
    starts = [_ts(d.valid_from) or now for d in deployments]
    ends = [*starts[1:], datetime.max.replace(tzinfo=UTC)][: len(starts)]
    deps = [_deployment(d, recs, periods, now, end) for d, end in zip(deployments, ends, strict=True)]
    for d in deps:
        d["counters_match_audit"] = d["counters"]["alerts"] == d["audit"]["alerts"]
    return {"schema": SCHEMA, "generated_at": iso_ts(now), "device_id": device_id,
            "deployments": deps, "audit_log": integrity,
            "contains": "figures, times, order identifiers and document references only: no images,"
                        " templates, watchlist identities or alert ids"}


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


# --- markdown ---------------------------------------------------------------------------------


def _hours(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _rate_text(d: dict[str, Any]) -> str:
    c = d["counters"]
    if not c["faces_processed"]:
        return "no faces processed"
    rate = d["false_alerts_per_10000_faces"]
    one_in = f" (1 in {c['faces_processed'] // c['false_alerts']:,} faces)" if c["false_alerts"] else ""
    return f"{rate:g} per 10,000 faces processed{one_in}"


def _row(label: str, value: Any) -> str:
    text = "" if value is None or value == "" else str(value)
    return f"| {label} | {text.replace('|', '/') or 'not recorded'} |"


def render_markdown(report: dict[str, Any]) -> str:
    out = ["# Live facial recognition: deployment report", ""]
    out.append(f"Device `{report.get('device_id') or 'unknown'}`, report generated {report['generated_at']}.")
    out.append("")
    if not report["deployments"]:
        out += ["No deployment has been recorded on this device.", ""]
    for d in report["deployments"]:
        c, a = d["counters"], d["audit"]
        out += [f"## Deployment {d['order_id']} at {d['site']}", "", "| | |", "|---|---|"]
        out.append(_row("Purpose", d["purpose"]))
        out.append(_row("Authorised by (reference)", d["authorising_ref"]))
        out.append(_row("Data protection impact assessment", d["dpia_ref"]))
        out.append(_row("Equality impact assessment", d["equality_impact_ref"]))
        out.append(_row("Human rights assessment", d["rights_impact_ref"]))
        out.append(_row("Public notice", d["public_notice_ref"]))
        out.append(_row("Public contact", d["public_contact"]))
        out.append(_row("Cameras", ", ".join(d["camera_ids"])))
        out.append(_row("Authorised window", f"{d['window']['from']} to {d['window']['until']}"))
        # The gate's on/off records are the account; the ticked time only fills in without them.
        active = d["active_seconds_audit"] if d["active_periods"] else d["active_seconds_counted"]
        out.append(_row("Recognition active", f"{_hours(active)} in {len(d['active_periods'])} period(s)"))
        wl = d["watchlist"]
        out.append(_row("Watchlist size (entries)", c["watchlist_size"] or wl["largest_entry_count"]))
        out.append(_row("Match threshold(s)", ", ".join(f"{t:g}" for t in wl["thresholds"])))
        for p in wl["predicted"]:
            out.append(_row(f"Model card's prediction at {p['threshold']:g}",
                            p["refused"] or f"{p['false_alerts_per_10000_faces']:.3g} false alerts "
                            f"per 10,000 faces, {p['listed_people_found']:.0%} of listed people found"))
        out.append(_row("Faces processed", f"{c['faces_processed']:,}"))
        out.append(_row("Alerts", f"{c['alerts']:,}"))
        out.append(_row("Confirmed by review", c["confirmed"]))
        out.append(_row("False alerts", c["false_alerts"]))
        out.append(_row("Not engaged", c["not_engaged"]))
        out.append(_row("Duplicates", c["duplicates"]))
        out.append(_row("Awaiting review or inconclusive", c["awaiting_review"]))
        out.append(_row("False alert rate", _rate_text(d)))
        out.append(_row("Confirmation rule", "two distinct verifiers" if d["require_two_verifiers"]
                        else "one verifier"))
        budget = d["false_alert_budget_per_10000_faces"]
        out.append(_row("False alert budget", "default" if budget is None else f"{budget} per 10,000 faces"))
        out.append(_row("Matching suspended", "; ".join(f"{s['at']}: {s['reason']}" for s in a["suspensions"])
                        or "never"))
        out.append(_row("Evidence retention", f"{d['retention_days']} days"))
        out.append(_row("Crops deleted after a false alert", a["evidence_deleted_after_review"]))
        out.append(_row("Crops purged at end of retention", a["evidence_purged_at_retention"]))
        out.append(_row("Watchlist purges", a["watchlist_purges"]))
        out.append("")
        if d["active_periods"]:
            out.append("Periods of active recognition (UTC):")
            out.append("")
            out += [f"- {p['from']} to {p['until']}" for p in d["active_periods"]]
            out.append("")
        check = "agree" if d["counters_match_audit"] else "DO NOT agree"
        out += [f"Alert counters and audit log {check}: {c['alerts']} counted,"
                f" {a['alerts']} alert records.", ""]
    log = report["audit_log"]
    out += ["## Audit log integrity", ""]
    if not log["present"]:
        out.append("No audit log was found.")
    elif log["ok"]:
        out.append(f"Verified intact: {log['records']} hash-chained records; head hash `{log['head']}`.")
    else:
        out.append(f"**BROKEN**: {log['broken']}. The figures above cannot be relied on.")
    out += [f"Warning: {w}" for w in log["warnings"]]
    out += ["", "## What this report contains", "",
            "Counts, times, order identifiers and document references only. It contains no images,"
            " face templates, watchlist identities or alert identifiers. Crops of alerts are kept only for"
            " review, deleted at once after a false alert and purged at the end of the retention period;"
            " images of people who did not match are never stored.", ""]
    return "\n".join(out)

