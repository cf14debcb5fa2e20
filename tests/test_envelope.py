"""The envelope: framing round trip, key ids, PAE binding and k-of-n counting."""

from __future__ import annotations

import hashlib

import pytest

from edge.errors import (
    DuplicateSignatureError,
    MalformedError,
    OversizeError,
    PayloadTypeError,
    SignatureError,
    ThresholdError,
    UnknownKeyError,
    UntrustedKeyError,
)
from edge.watchlist.envelope import (
    BUNDLE_TYPE,
    ORDER_TYPE,
    Envelope,
    decode,
    expect_type,
    key_id_bytes,
    pae,
    verify_threshold,
)
from tests.watchlist_world import pub, signing_key

A, B, C = signing_key(1), signing_key(2), signing_key(3)
KEYS = {key_id_bytes(pub(k)): pub(k) for k in (A, B, C)}


def _verify(env: Envelope, allowed: tuple[object, ...], threshold: int) -> frozenset[bytes]:
    ids = frozenset(key_id_bytes(pub(k)) for k in allowed)  # type: ignore[arg-type]
    return verify_threshold(env, keys=KEYS, allowed=ids, threshold=threshold, role="watchlist")


def test_round_trip_and_key_id() -> None:
    env = Envelope(BUNDLE_TYPE, b'{"a":1}', b"\x00\x01body").sign(A).sign(B)
    back = decode(env.encode(), max_header=100, max_body=100)
    assert back == env
    assert env.signatures[0].keyid == hashlib.sha256(bytes(A.verify_key)).digest()
    assert back.content_sha256() == hashlib.sha256(env.signed_bytes()).hexdigest()


def test_pae_binds_the_field_boundaries() -> None:
    # moving a byte from header to body must change what is signed
    assert pae(BUNDLE_TYPE, b"ab", b"c") != pae(BUNDLE_TYPE, b"a", b"bc")
    assert pae(BUNDLE_TYPE, b"", b"") != pae(ORDER_TYPE, b"", b"")


def test_moving_bytes_between_header_and_body_breaks_the_signature() -> None:
    env = Envelope(BUNDLE_TYPE, b"ab", b"c").sign(A)
    moved = Envelope(BUNDLE_TYPE, b"a", b"bc", env.signatures)
    with pytest.raises(SignatureError):
        _verify(moved, (A,), 1)


def test_k_of_n_counts_unique_trusted_keys() -> None:
    env = Envelope(BUNDLE_TYPE, b"h", b"b")
    assert _verify(env.sign(A).sign(B), (A, B, C), 2) == {key_id_bytes(pub(A)), key_id_bytes(pub(B))}
    with pytest.raises(ThresholdError):
        _verify(env.sign(A), (A, B, C), 2)
    with pytest.raises(DuplicateSignatureError):
        _verify(env.sign(A).sign(A), (A, B, C), 2)
    with pytest.raises(UntrustedKeyError):
        _verify(env.sign(C), (A,), 1)
    with pytest.raises(UnknownKeyError):
        _verify(env.sign(signing_key(50)), (A,), 1)
    # an extra unknown signature does not hurt once the threshold is met
    assert _verify(env.sign(A).sign(signing_key(50)), (A,), 1) == {key_id_bytes(pub(A))}


def test_framing_errors_are_typed() -> None:
    good = Envelope(BUNDLE_TYPE, b"h" * 10, b"b" * 10).sign(A).encode()
    with pytest.raises(MalformedError):
        decode(b"NOTMAGIC" + good[8:], max_header=100, max_body=100)
    with pytest.raises(MalformedError):
        decode(good[:-1], max_header=100, max_body=100)
    with pytest.raises(MalformedError):
        decode(good + b"x", max_header=100, max_body=100)
    with pytest.raises(OversizeError):
        decode(good, max_header=9, max_body=100)
    with pytest.raises(OversizeError):
        decode(good, max_header=100, max_body=9)
    with pytest.raises(PayloadTypeError):
        expect_type(decode(good, max_header=100, max_body=100), ORDER_TYPE)
