"""The alert contract, as a pure validator the builder and the consumer both test against.

``validate_alert`` lists every way an event breaks the contract in "MQTT
contract" of DESIGN.md (empty list: valid). Extra fields are allowed, so the
schema can grow without breaking consumers. ``AlertStream`` is the consumer's
side of at-least-once delivery: de-duplication on ``event_id`` and ``seq``
gaps per device. No I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, TypeGuard

# The alert schema, in one place: the builder writes it, the validator checks it.
# 2: correlation.track_first_seen -> best_seen_at, track_embeddings -> decision_window.
ALERT_SCHEMA: Final = "edge.alert/2"
MAX_DEPTH: Final = 8  # an alert nests 2 levels; deeper payloads are refused before anything walks them

_STRINGS: Final = ("device_id", "camera_id", "site", "subject_ref", "category")


def _is_int(v: object) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


def _nonempty_str(v: object) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _check_event_id(v: object) -> str | None:
    if not isinstance(v, str):
        return "event_id: must be a UUID string"
    try:
        u = uuid.UUID(v)
    except ValueError:
        return f"event_id: {v!r} is not a UUID"
    if u.version != 7 or u.variant != uuid.RFC_4122:
        return f"event_id: {v} is not a UUIDv7 (version {u.version})"
    return None


def _check_time(v: object) -> str | None:
    if not isinstance(v, str):
        return "captured_at: must be an ISO 8601 UTC string"
    try:
        t = datetime.fromisoformat(v)
    except ValueError:
        return f"captured_at: {v!r} is not ISO 8601"
    if t.utcoffset() != timedelta(0):
        return f"captured_at: {v!r} is not UTC"
    return None


def _check_box(v: object) -> str | None:
    if not isinstance(v, list | tuple) or len(v) != 4 or not all(_is_num(x) for x in v):
        return "box: must be [x0, y0, x1, y1] numbers"
    x0, y0, x1, y1 = (float(x) for x in v)
    if x1 <= x0 or y1 <= y0:
        return f"box: {list(v)} is empty or inverted"
    return None


def _check_crop(v: object) -> str | None:
    if not isinstance(v, str) or not v:
        return "crop_jpeg_b64: must be a non-empty base64 string when present"
    try:
        raw = base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        return "crop_jpeg_b64: not valid base64"
    if not (raw.startswith(b"\xff\xd8\xff") and raw.rstrip(b"\0").endswith(b"\xff\xd9")):
        return "crop_jpeg_b64: not a JPEG"
    return None


def device_from_topic(topic: str) -> str | None:
    """The device id in ``<prefix>/<device>/alerts``: the one the broker lets publish there."""
    parts = topic.split("/")
    if len(parts) < 2 or parts[-1] != "alerts" or not parts[-2]:
        return None
    return parts[-2]


def too_deep(obj: object, limit: int = MAX_DEPTH) -> bool:
    """True when JSON ``obj`` nests lists/objects more than ``limit`` levels (no recursion)."""
    stack: list[tuple[object, int]] = [(obj, 1)]
    while stack:
        o, depth = stack.pop()
        children = o.values() if isinstance(o, dict) else o if isinstance(o, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children)
    return False


def validate_alert(event: object, topic_device: str | None = None) -> list[str]:
    """Every contract violation in ``event``; an empty list means it is a valid alert.

    ``topic_device``: the device id of the topic it arrived on; a payload claiming
    another device id is a violation (a device may only speak for itself)."""
    if not isinstance(event, dict):
        return ["alert: must be a JSON object"]
    if too_deep(event):
        return [f"alert: nested deeper than {MAX_DEPTH} levels"]
    e: dict[str, Any] = event
    problems: list[str] = []
    claimed = e.get("device_id")
    if topic_device is not None and isinstance(claimed, str) and claimed != topic_device:
        problems.append(f"device_id: {claimed!r} does not match the topic's device {topic_device!r}")
    required = ("schema", "event_id", "seq", *_STRINGS, "captured_at", "score", "threshold",
                "margin", "track_id", "box", "quality", "bundle", "model", "possible_match",
                "requires_human_review")
    missing = [k for k in required if k not in e]
    problems += [f"{k}: missing" for k in missing]

    def has(k: str) -> bool:
        return k in e and k not in missing

    if has("schema") and not (isinstance(e["schema"], str)
                              and e["schema"].startswith(ALERT_SCHEMA)):
        problems.append(f"schema: {e['schema']!r} is not {ALERT_SCHEMA}")
    if has("event_id") and (p := _check_event_id(e["event_id"])):
        problems.append(p)
    if has("seq") and not (_is_int(e["seq"]) and e["seq"] >= 0):
        problems.append("seq: must be an integer >= 0")
    problems += [f"{k}: must be a non-empty string" for k in _STRINGS
                 if has(k) and not _nonempty_str(e[k])]
    if has("captured_at") and (p := _check_time(e["captured_at"])):
        problems.append(p)
    for k in ("score", "threshold"):
        if has(k) and not (_is_num(e[k]) and -1.0 <= e[k] <= 1.0):
            problems.append(f"{k}: must be a number in [-1, 1]")
    if (has("score") and has("threshold") and _is_num(e["score"]) and _is_num(e["threshold"])
            and e["score"] < e["threshold"]):
        problems.append(f"score: {e['score']} is below the threshold {e['threshold']}")
    if has("margin") and not (_is_num(e["margin"]) and 0.0 <= e["margin"] <= 2.0):
        problems.append("margin: must be a number in [0, 2]")
    if has("track_id") and not (_is_int(e["track_id"]) and e["track_id"] >= 0):
        problems.append("track_id: must be an integer >= 0")
    if has("box") and (p := _check_box(e["box"])):
        problems.append(p)
    if has("quality") and not (_is_num(e["quality"]) and 0.0 <= e["quality"] <= 1.0):
        problems.append("quality: must be a number in [0, 1]")
    if has("bundle"):
        b = e["bundle"]
        if not isinstance(b, dict):
            problems.append("bundle: must be an object {id, version}")
        else:
            if not _nonempty_str(b.get("id")):
                problems.append("bundle.id: missing or empty")
            if not (_is_int(b.get("version")) and b["version"] >= 0):
                problems.append("bundle.version: must be an integer >= 0")
    if has("model"):
        m = e["model"]
        if not (isinstance(m, dict) and _nonempty_str(m.get("id"))):
            problems.append("model: must be an object with a non-empty id")
    for k in ("possible_match", "requires_human_review"):
        if has(k) and e[k] is not True:
            problems.append(f"{k}: must be true (an alert is for human adjudication)")
    if "crop_jpeg_b64" in e and (p := _check_crop(e["crop_jpeg_b64"])):
        problems.append(p)
    return problems


@dataclass
class AlertStream:
    """De-duplication on ``event_id`` and ``seq`` bookkeeping per device."""

    seen: set[str] = field(default_factory=set)
    seqs: dict[str, set[int]] = field(default_factory=dict)
    duplicates: int = 0

    def add(self, event: dict[str, Any], device: str | None = None) -> bool:
        """Record an alert; False if its ``event_id`` was seen before (a redelivery).

        ``device``: the device of the topic it came on (else the one it names)."""
        event_id = str(event.get("event_id"))
        if event_id in self.seen:
            self.duplicates += 1
            return False
        self.seen.add(event_id)
        seq = event.get("seq")
        if device is None:
            device = event.get("device_id")
        if _is_int(seq) and isinstance(device, str):
            self.seqs.setdefault(device, set()).add(int(seq))
        return True

    def gaps(self) -> dict[str, list[tuple[int, int]]]:
        """Missing ``seq`` ranges (inclusive) between the lowest and highest seen, per device."""
        out: dict[str, list[tuple[int, int]]] = {}
        for device, seqs in sorted(self.seqs.items()):
            ordered = sorted(seqs)
            holes = [(a + 1, b - 1) for a, b in itertools.pairwise(ordered)
                     if b - a > 1]
            if holes:
                out[device] = holes
        return out


def format_gaps(gaps: dict[str, list[tuple[int, int]]]) -> str:
    parts = []
    for device, holes in gaps.items():
        spans = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in holes)
        parts.append(f"{device}: {spans}")
    return "; ".join(parts)
