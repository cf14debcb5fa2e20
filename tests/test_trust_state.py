"""The device keeps the trust root it accepted (issue 11, item 15): an older trust file put
back, a foreign self-signed root or a same-version substitute is refused; a higher version
is accepted only through the rotation rules, and then becomes the new accepted root."""

from __future__ import annotations

import json
from pathlib import Path

import nacl.signing
import pytest

from edge.authority.build import trust_document
from edge.errors import RollbackError, StateError, TrustError, UnknownKeyError
from edge.watchlist.envelope import Envelope
from edge.watchlist.state import TrustStore
from edge.watchlist.trust import ROLES, load_pinned
from edge.watchlist.verify import verify_bundle
from tests.watchlist_world import FLOOR, MODEL, T0, World, pub, signing_key

OLD, NEW, FOREIGN, OPS = signing_key(1), signing_key(30), signing_key(50), signing_key(51)


def doc(version: int, trust: nacl.signing.SigningKey, w: World,
        watch: nacl.signing.SigningKey | None = None) -> Envelope:
    """A trust document: ``trust`` holds the trust role, ``watch`` the watchlist role, OPS the rest."""
    keys = {"trust": pub(trust), "watch": pub(watch or w.watch), "ops": pub(OPS)}
    roles = {role: (["ops"], 1) for role in ROLES} | {"trust": (["trust"], 1), "watchlist": (["watch"], 1)}
    return trust_document(version, keys, roles, T0)


def test_the_accepted_root_is_kept_and_older_or_foreign_roots_are_refused(tmp_path: Path) -> None:
    w = World()
    store = TrustStore(tmp_path / "trust")
    v1 = doc(1, OLD, w).sign(OLD).encode()
    v2 = doc(2, NEW, w, watch=signing_key(31)).sign(OLD).sign(NEW).encode()

    assert store.accepted() is None
    assert store.admit(v1).version == 1  # provisioning: the first self-signed root is pinned
    rec = store.accepted()
    assert rec is not None and (rec.version, rec.content_sha256) == (1, load_pinned(v1).content_sha256)
    assert store.admit(v1).version == 1  # the same root again: no change
    assert store.admit(v2).version == 2  # rotation by the rules: old consents, new signs
    state_before = (tmp_path / "trust" / "trust-state.json").read_bytes()

    # Putting the old trust.json back: today a plain load_pinned re-admits it, and with it
    # the rotated-out watchlist key; the store refuses it.
    assert load_pinned(v1).version == 1
    with pytest.raises(RollbackError, match="not above"):
        store.admit(v1)
    # A foreign self-signed root: at the next version (not signed by the accepted root's
    # trust keys) and at the same version (different content) are both refused.
    foreign_v3 = doc(3, FOREIGN, w).sign(FOREIGN).encode()
    with pytest.raises(TrustError, match="not signed as the current root requires") as info:
        store.admit(foreign_v3)
    assert isinstance(info.value.__cause__, UnknownKeyError)
    foreign_v2 = doc(2, FOREIGN, w).sign(FOREIGN).encode()
    with pytest.raises(RollbackError, match="different content"):
        store.admit(foreign_v2)
    with pytest.raises(TrustError, match="skips"):
        store.admit(doc(4, NEW, w).sign(NEW).encode())
    # every refusal left the accepted state as it was
    assert (tmp_path / "trust" / "trust-state.json").read_bytes() == state_before
    current = store.current()
    assert current is not None and current.version == 2
    with pytest.raises(UnknownKeyError):  # the rotated-out watchlist key signs nothing any more
        verify_bundle(w.bundle(), current, w.device, w.now(), expected_model=MODEL,
                      threshold_floor=FLOOR, last=None, device_key=w.dkey)
    # a fresh store object (a restart) reads the same accepted root
    assert TrustStore(tmp_path / "trust").admit(v2).version == 2


def test_a_tampered_trust_state_is_refused(tmp_path: Path) -> None:
    w = World()
    store = TrustStore(tmp_path)
    store.admit(doc(1, OLD, w).sign(OLD).encode())
    path = tmp_path / "trust-state.json"
    state = json.loads(path.read_bytes())
    state["version"] = 2  # a record that no longer describes its document
    path.write_text(json.dumps(state))
    with pytest.raises(StateError, match="does not match"):
        store.current()
    path.write_bytes(b"{not json")
    with pytest.raises(StateError, match="corrupt"):
        store.admit(doc(1, OLD, w).sign(OLD).encode())
