"""Property tests: whatever the bytes, the verifier returns or raises a typed bundle error.

The signature check comes first, so random bytes rarely get past it; the
re-signing strategies below sign the mutated header or body with the trusted
key so that the JSON and entry parsers behind the signature are exercised too.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.errors import SignedDocumentError
from edge.watchlist import canonical
from edge.watchlist.envelope import BUNDLE_TYPE, Envelope, decode
from edge.watchlist.verify import verify_bundle
from tests.watchlist_world import FLOOR, MODEL, World

W = World()
TRUST = W.trust()
GOOD = W.bundle(n=2)
GOOD_ENV = decode(GOOD, max_header=1 << 20, max_body=1 << 20)
HEADER = json.loads(GOOD_ENV.header)
ENTRIES = json.loads(GOOD_ENV.body[4 : 4 + int.from_bytes(GOOD_ENV.body[:4], "big")])
FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def _run(data: bytes) -> bool:
    """True if accepted; any exception other than the typed tree fails the test."""
    try:
        verify_bundle(data, TRUST, W.device, W.now(), expected_model=MODEL,
                      threshold_floor=FLOOR, last=None, device_key=W.dkey)
    except SignedDocumentError:
        return False
    return True


json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.sampled_from(["2026-11-01T12:00:00Z", "9999-12-31T23:59:59+14:00", "wanted", "suspect",
                     "0001-01-01T00:00:00-12:00", "2026-02-30", ""]),
)
json_value = st.recursive(
    json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                      max_size=4),
    max_leaves=12,
)


@FAST
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    assert not _run(data)


@FAST
@given(st.binary(max_size=64))
def test_random_bytes_after_the_magic(tail: bytes) -> None:
    assert not _run(b"EDGEENV1" + tail)


@FAST
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(1, 255)),
                min_size=1, max_size=8, unique_by=lambda t: t[0]),
       st.integers(0, len(GOOD)), st.binary(max_size=16))
def test_mutated_bundles_are_refused(flips: list[tuple[int, int]], cut: int,
                                     insert: bytes) -> None:
    data = bytearray(GOOD)
    for pos, xor in flips:
        data[pos] ^= xor
    assert not _run(bytes(data))
    assert not _run(GOOD[:cut] + insert + GOOD[cut + len(insert) // 2 :]) or insert == b""


@pytest.mark.slow
@FAST
@given(st.sampled_from(sorted(HEADER)), json_value)
def test_resigned_header_field_mutations(key: str, value: Any) -> None:
    header = dict(HEADER)
    header[key] = value
    env = Envelope(BUNDLE_TYPE, canonical.dumps(header), GOOD_ENV.body).sign(W.watch)
    _run(env.encode())


@pytest.mark.slow
@FAST
@given(st.integers(0, 1), st.sampled_from([*sorted(ENTRIES[0]), "offence_code"]), json_value)
def test_resigned_entry_mutations(index: int, key: str, value: Any) -> None:
    entries = [dict(e) for e in ENTRIES]
    entries[index][key] = value
    blob = canonical.dumps(entries)
    rest = GOOD_ENV.body[4 + int.from_bytes(GOOD_ENV.body[:4], "big") :]
    body = len(blob).to_bytes(4, "big") + blob + rest
    env = Envelope(BUNDLE_TYPE, GOOD_ENV.header, body).sign(W.watch)
    _run(env.encode())


@FAST
@given(st.binary(max_size=512), st.binary(max_size=512))
def test_resigned_random_header_and_body(header: bytes, body: bytes) -> None:
    assert not _run(Envelope(BUNDLE_TYPE, header, body).sign(W.watch).encode())


@FAST
@given(json_value, st.binary(max_size=256))
def test_resigned_random_json_header(header: Any, body: bytes) -> None:
    raw = json.dumps(header).encode()
    assert not _run(Envelope(BUNDLE_TYPE, raw, body).sign(W.watch).encode())


def test_the_unmutated_bundle_is_accepted() -> None:
    assert _run(GOOD)


@FAST
@given(json_value, st.sampled_from(["order", "trust"]))
def test_resigned_orders_and_trust_files_fail_typed(doc: Any, kind: str) -> None:
    from edge.watchlist.envelope import ORDER_TYPE, TRUST_TYPE
    from edge.watchlist.order import verify_order
    from edge.watchlist.trust import load_pinned

    base = json.loads(W.trust_envelope().header) if kind == "trust" else {}
    if isinstance(doc, dict):
        base.update(doc)
    raw = canonical.dumps(base if isinstance(doc, dict) else doc)
    try:
        if kind == "order":
            verify_order(Envelope(ORDER_TYPE, raw, b"").sign(W.order).encode(), TRUST, "boulevard")
        else:
            load_pinned(Envelope(TRUST_TYPE, raw, b"").sign(W.root).encode())
    except SignedDocumentError:
        pass
