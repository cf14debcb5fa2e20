"""Property tests (issue 11, item 2, parser side): the review, order, revocation and resume
parsers raise only the typed error tree on any bytes, and what they accept is usable
downstream (a review's decided_at can be written to the audit log). The bundle parser
has its own (tests/test_bundle_fuzz.py); ``make fuzz`` runs the atheris targets."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.accountability.adjudication import MAX_REVIEW_BYTES, Review, parse_review
from edge.audit.chain import iso_ts
from edge.errors import EdgeError, ReviewError
from edge.watchlist import canonical
from edge.watchlist.envelope import ORDER_TYPE, RESUME_TYPE, REVOCATION_TYPE, Envelope
from edge.watchlist.order import verify_order, verify_resume, verify_revocations
from tests.accountability_world import T0 as ACC_T0
from tests.accountability_world import face_crop_jpeg, open_audit
from tests.test_adjudication_order import world
from tests.test_order import ORDER
from tests.watchlist_world import FLEET, World

W = World()
TRUST = W.trust()
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GOOD_REVIEW = Review("ev-1", "false_alert", "officer-1", ACC_T0).to_json()
ORDER_HEADER = json.loads(ORDER.envelope().header)
RESUME_HEADER = {"device_id": "cam-north", "order_id": "DO-1", "resume_seq": 1,
                 "issued_at": "2026-11-01T12:00:00Z", "decided_by": "x", "reason": "y"}
REVOCATION_HEADER = {"fleet_id": FLEET, "list_seq": 1, "issued_at": "2026-11-01T12:00:00Z",
                     "order_ids": ["DO-1"]}

TIMES = st.sampled_from(["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59Z",
                         "0001-01-01T00:00:00Z", "2026-11-02T08:01:00+14:00", "2026-02-30T00:00:00Z",
                         "2026-11-02T08:01:00", "2026-11-02T25:00:00Z", ""])
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                      st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30), TIMES)
json_value = st.recursive(json_leaf, lambda c: st.lists(c, max_size=4)
                          | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=12)
VERIFIERS: dict[str, Callable[[bytes], object]] = {
    ORDER_TYPE: lambda d: verify_order(d, TRUST, FLEET),
    RESUME_TYPE: lambda d: verify_resume(d, TRUST, "cam-north"),
    REVOCATION_TYPE: lambda d: verify_revocations(d, TRUST, FLEET),
}
HEADERS = {ORDER_TYPE: ORDER_HEADER, RESUME_TYPE: RESUME_HEADER, REVOCATION_TYPE: REVOCATION_HEADER}
NESTED = [b"[" * 4000, b"{\"a\":" * 600 + b"1" + b"}" * 600, b"[" * 2000 + b"]" * 2000,
          b'{"schema":"edge.review/1","note":' + b"[" * 4000 + b"}"]


def review_ok(data: bytes) -> Review | None:
    try:
        r = parse_review(data)
    except EdgeError:
        return None
    iso_ts(r.decided_at)  # what the audit record does with it: must not overflow
    return r


@FAST
@given(st.binary(max_size=MAX_REVIEW_BYTES + 16))
def test_review_random_bytes(data: bytes) -> None:
    review_ok(data)


@FAST
@given(st.sampled_from([*sorted(GOOD_REVIEW), "extra"]), json_value)
def test_review_field_mutations(key: str, value: Any) -> None:
    doc = dict(GOOD_REVIEW)
    doc[key] = value
    review_ok(json.dumps(doc).encode())


@FAST
@given(TIMES)
def test_review_times(decided_at: str) -> None:
    review_ok(json.dumps({**GOOD_REVIEW, "decided_at": decided_at}).encode())


@pytest.mark.parametrize("payload", NESTED, ids=["brackets", "objects", "balanced", "in-a-field"])
def test_nested_payloads_are_typed_errors(payload: bytes) -> None:
    assert len(payload) <= MAX_REVIEW_BYTES + 64
    with pytest.raises(EdgeError):
        parse_review(payload)
    for kind, verify in VERIFIERS.items():
        with pytest.raises(EdgeError):
            verify(Envelope(kind, payload, b"").sign(W.order).encode())


def test_an_extreme_decided_at_is_refused_or_recorded(tmp_path: Path, testdata: Path) -> None:
    """The message that used to raise OverflowError out of the review handler."""
    with open_audit(tmp_path) as audit:
        adj, evidence, _ = world(tmp_path, audit)
        evidence.put("ev-1", face_crop_jpeg(testdata), ACC_T0)
        adj.alert_raised("ev-1", ACC_T0)
        for t in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"):
            with pytest.raises(ReviewError, match="decided_at"):
                adj.apply(parse_review(json.dumps({**GOOD_REVIEW, "decided_at": t}).encode()), ACC_T0)
        late = json.dumps({**GOOD_REVIEW, "decided_at": "9999-12-31T23:59:59+14:00"}).encode()
        assert adj.apply(parse_review(late), ACC_T0 + timedelta(minutes=1)).counted == "false_alert"


@FAST
@given(st.sampled_from(sorted(VERIFIERS)), st.one_of(st.none(), st.text(max_size=12)), json_value)
def test_resigned_order_documents_fail_typed(ptype: str, key: str | None, value: Any) -> None:
    doc: Any = value if key is None else {**HEADERS[ptype], key: value}
    with contextlib.suppress(EdgeError):
        VERIFIERS[ptype](Envelope(ptype, canonical.dumps(doc), b"").sign(W.order).encode())


@FAST
@given(st.binary(max_size=1024), st.sampled_from(sorted(VERIFIERS)))
def test_order_documents_random_bytes(data: bytes, ptype: str) -> None:
    for d in (data, b"EDGEENV1" + data, Envelope(ptype, data, b"").sign(W.order).encode()):
        for verify in VERIFIERS.values():
            with contextlib.suppress(EdgeError):
                verify(d)
