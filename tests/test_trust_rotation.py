"""Root-of-trust rotation: N+1 needs the old keys' consent and the new keys' signatures."""

from __future__ import annotations

import pytest

from edge.authority.build import trust_document
from edge.errors import (
    RollbackError,
    ThresholdError,
    TrustError,
    UnknownKeyError,
    UntrustedKeyError,
)
from edge.watchlist.envelope import Envelope
from edge.watchlist.trust import (
    TrustRoot,
    load_pinned,
    parse_structure,
    parse_trust,
    rotate,
)
from edge.watchlist.verify import verify_bundle
from tests.watchlist_world import FLOOR, MODEL, T0, World, pub, signing_key

OLD, NEW, K2, K3 = signing_key(1), signing_key(30), signing_key(31), signing_key(32)


def _doc(version: int, trust_keys: dict[str, bytes], trust_threshold: int, w: World,
         watch: dict[str, bytes] | None = None, watch_threshold: int = 1) -> Envelope:
    watch = watch or {"watch": pub(w.watch)}
    keys = {**trust_keys, **watch, "order": pub(w.order)}
    return trust_document(
        version, keys,
        {"trust": (list(trust_keys), trust_threshold),
         "watchlist": (list(watch), watch_threshold), "order": (["order"], 1)},
        T0,
    )


def _accepts_bundle(trust: TrustRoot, w: World, data: bytes) -> None:
    verify_bundle(data, trust, w.device, w.now(), expected_model=MODEL, threshold_floor=FLOOR,
                  last=None, device_key=w.dkey)


def test_one_of_one_rotation_to_a_new_key() -> None:
    w = World()
    v1 = load_pinned(_doc(1, {"old": pub(OLD)}, 1, w).sign(OLD).encode())
    v2 = _doc(2, {"new": pub(NEW)}, 1, w, watch={"watch2": pub(K2)})

    for signers, cause in (((OLD,), UnknownKeyError), ((NEW,), UnknownKeyError)):
        env = v2
        for k in signers:
            env = env.sign(k)
        with pytest.raises(TrustError) as info:
            rotate(v1, env.encode())
        assert isinstance(info.value.__cause__, cause)

    new = rotate(v1, v2.sign(OLD).sign(NEW).encode())
    assert new.version == 2
    # the new root governs what follows: the old watchlist key is gone, the new one signs
    with pytest.raises(UnknownKeyError):
        _accepts_bundle(new, w, w.bundle())
    _accepts_bundle(new, w, w.unsigned().sign(K2).encode())
    # v3 must now be signed by NEW; OLD alone no longer counts
    v3 = _doc(3, {"new": pub(NEW)}, 1, w)
    with pytest.raises(TrustError):
        rotate(new, v3.sign(OLD).encode())
    assert rotate(new, v3.sign(NEW).encode()).version == 3


def test_threshold_change_one_to_two_of_three() -> None:
    w = World()
    v1 = load_pinned(_doc(1, {"old": pub(OLD)}, 1, w).sign(OLD).encode())
    three = {"old": pub(OLD), "k2": pub(K2), "k3": pub(K3)}
    watch = {"watch": pub(w.watch), "w2": pub(signing_key(40))}
    v2 = _doc(2, three, 2, w, watch=watch, watch_threshold=2)

    with pytest.raises(TrustError) as info:  # old consents, but only 1 of the new 2-of-3
        rotate(v1, v2.sign(OLD).encode())
    assert isinstance(info.value.__cause__, ThresholdError)
    with pytest.raises(TrustError):  # 2-of-3 new, but not the old key
        rotate(v1, v2.sign(K2).sign(K3).encode())
    new = rotate(v1, v2.sign(OLD).sign(K2).encode())
    assert new.roles["trust"].threshold == 2 and new.roles["watchlist"].threshold == 2

    # the watchlist threshold change applies to bundles
    with pytest.raises(ThresholdError):
        _accepts_bundle(new, w, w.bundle())
    _accepts_bundle(new, w, w.unsigned().sign(w.watch).sign(signing_key(40)).encode())

    # and the trust threshold to the next rotation: one of three is not enough any more
    v3 = _doc(3, three, 2, w, watch=watch, watch_threshold=2)
    with pytest.raises(TrustError):
        rotate(new, v3.sign(K3).encode())
    assert rotate(new, v3.sign(K3).sign(OLD).encode()).version == 3


def test_version_must_step_by_one() -> None:
    w = World()
    v1 = load_pinned(_doc(1, {"old": pub(OLD)}, 1, w).sign(OLD).encode())
    with pytest.raises(TrustError):
        rotate(v1, _doc(3, {"old": pub(OLD)}, 1, w).sign(OLD).encode())
    with pytest.raises(RollbackError):
        rotate(v1, _doc(1, {"old": pub(OLD)}, 1, w, watch={"x": pub(K2)}).sign(OLD).encode())
    same = v1.envelope.encode()
    assert rotate(v1, same) is v1


def test_pinned_root_must_be_self_signed_and_well_formed() -> None:
    w = World()
    doc = _doc(1, {"old": pub(OLD)}, 1, w)
    with pytest.raises(ThresholdError):
        load_pinned(doc.encode())
    with pytest.raises(UntrustedKeyError):
        load_pinned(doc.sign(w.watch).encode())
    bad = Envelope(doc.payload_type, doc.header.replace(b'"threshold":1', b'"threshold":5', 1),
                   b"")
    with pytest.raises(TrustError):
        parse_structure(bad.sign(OLD).encode())
    with pytest.raises(ThresholdError):  # the name devices call never skips signatures
        parse_trust(doc.encode())
