"""Every refusal has its own typed error and leaves the device state and active bundle alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.errors import (
    CategoryError,
    ClockUntrustedError,
    DecryptError,
    DuplicateSignatureError,
    EntryError,
    ExpiredError,
    NoTargetError,
    NotYetValidError,
    OversizeError,
    PayloadTypeError,
    ReplayError,
    RollbackError,
    SignatureError,
    SignedDocumentError,
    ThresholdError,
    ThresholdFloorError,
    UnknownKeyError,
    UntrustedKeyError,
    WrongDeviceError,
    WrongFleetError,
    WrongModelError,
)
from edge.watchlist.bundle import DeviceIdentity, ModelRef
from edge.watchlist.envelope import ORDER_TYPE, TRUST_TYPE, Envelope, Signature, decode
from edge.watchlist.state import BundleStore
from edge.watchlist.verify import verify_bundle
from tests.watchlist_world import FLOOR, MODEL, T0, World, entry, signing_key


@dataclass
class Attempt:
    data: bytes
    now_delta: timedelta = timedelta()  # added to World.now(6)
    device: DeviceIdentity | None = None
    model: ModelRef | None = None


def flip(data: bytes, region: str) -> bytes:
    """Flip one byte in the middle of the header, body, a signature or a key id."""
    env = decode(data, max_header=1 << 20, max_body=1 << 26)
    tlen = len(env.payload_type)
    header_at = 8 + 2 + tlen + 4
    body_at = header_at + len(env.header) + 8
    sig_at = body_at + len(env.body) + 1
    offset = {
        "header": header_at + len(env.header) // 2,
        "payload": body_at + len(env.body) - 10,  # inside the template ciphertext
        "keyid": sig_at + 5,
        "signature": sig_at + 32 + 20,
    }[region]
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


def _retyped(w: World, payload_type: str) -> bytes:
    env = w.unsigned()
    return Envelope(payload_type, env.header, env.body).sign(w.watch).encode()


def _twice(w: World) -> bytes:
    env = w.unsigned().sign(w.watch)
    return replace(env, signatures=env.signatures * 2).encode()


def _entry_json(w: World, **change: Any) -> bytes:
    """A correctly signed bundle whose second entry has ``change`` applied (None deletes)."""
    specs = [entry(w.rng, i).to_json() for i in range(2)]
    specs[1].update(change)
    specs[1] = {k: v for k, v in specs[1].items() if v is not None}
    return w.unsigned(n=2, entries_json=specs).sign(w.watch).encode()


CASES: dict[str, tuple[Callable[[World], Attempt], type[SignedDocumentError]]] = {
    "unknown key": (
        lambda w: Attempt(w.unsigned().sign(signing_key(99)).encode()), UnknownKeyError),
    "untrusted key id": (
        lambda w: Attempt(w.unsigned().sign(w.order).encode()), UntrustedKeyError),
    "same key twice": (lambda w: Attempt(_twice(w)), DuplicateSignatureError),
    "flipped header byte": (lambda w: Attempt(flip(w.bundle(), "header")), SignatureError),
    "flipped payload byte": (lambda w: Attempt(flip(w.bundle(), "payload")), SignatureError),
    "flipped signature byte": (lambda w: Attempt(flip(w.bundle(), "signature")), SignatureError),
    "flipped key id byte": (lambda w: Attempt(flip(w.bundle(), "keyid")), UnknownKeyError),
    "lower version": (
        lambda w: Attempt(w.bundle(4, issued_at=T0 + timedelta(hours=6))), RollbackError),
    "equal version, other content": (lambda w: Attempt(w.bundle(5)), ReplayError),
    "expired": (lambda w: Attempt(w.bundle(), now_delta=timedelta(days=31)), ExpiredError),
    "not yet valid": (
        lambda w: Attempt(w.bundle(not_before=T0 + timedelta(days=2))), NotYetValidError),
    "issued in the future": (
        lambda w: Attempt(w.bundle(issued_at=T0 + timedelta(days=1),
                                   not_before=T0)), NotYetValidError),
    "clock before last issued_at": (
        lambda w: Attempt(w.bundle(), now_delta=-timedelta(hours=2)), ClockUntrustedError),
    "another device": (
        lambda w: Attempt(w.bundle(), device=DeviceIdentity("cam-south", w.device.fleet_id)),
        WrongDeviceError),
    "another fleet": (lambda w: Attempt(w.bundle(fleet_id="harbour")), WrongFleetError),
    "empty target list": (lambda w: Attempt(w.bundle(recipients={})), NoTargetError),
    "another model hash": (
        lambda w: Attempt(w.bundle(model=ModelRef(MODEL.id, "cd" * 32, MODEL.dim))), WrongModelError),
    "another model family": (
        lambda w: Attempt(w.bundle(model=ModelRef("mobileface_v2", MODEL.sha256, MODEL.dim))),
        WrongModelError),
    "another embedding size": (
        lambda w: Attempt(w.bundle(model=ModelRef(MODEL.id, MODEL.sha256, 256))), WrongModelError),
    "threshold below floor": (lambda w: Attempt(w.bundle(threshold=FLOOR - 0.01)),
                              ThresholdFloorError),
    "entry without authority_ref": (
        lambda w: Attempt(_entry_json(w, authority_ref=None)), EntryError),
    "entry with empty authority_ref": (
        lambda w: Attempt(_entry_json(w, authority_ref="")), EntryError),
    "suspect without offence code": (
        lambda w: Attempt(_entry_json(w, category="suspect")), EntryError),
    "unknown category": (lambda w: Attempt(_entry_json(w, category="nuisance")), CategoryError),
    "oversized header": (lambda w: Attempt(w.bundle(issuer="x" * 300_000)), OversizeError),
    "payload over its signed cap": (
        lambda w: Attempt(w.bundle(header_extra={"caps": {
            "max_entries": 10, "max_templates_per_entry": 4, "max_body_bytes": 100}})),
        OversizeError),
    "too many entries for the cap": (
        lambda w: Attempt(w.bundle(n=3, header_extra={"caps": {
            "max_entries": 2, "max_templates_per_entry": 4, "max_body_bytes": 10**6}})),
        OversizeError),
    "wrong payload type": (
        lambda w: Attempt(_retyped(w, "application/vnd.edge.other.v1")), PayloadTypeError),
    "order passed as bundle": (lambda w: Attempt(_retyped(w, ORDER_TYPE)), PayloadTypeError),
    "trust file passed as bundle": (
        lambda w: Attempt(w.trust_envelope().encode()), PayloadTypeError),
    "trust type re-signed by watch key": (
        lambda w: Attempt(_retyped(w, TRUST_TYPE)), PayloadTypeError),
    "encrypted to another device's key": (
        lambda w: Attempt(w.bundle(recipients={w.device.device_id:
                                               bytes(w.other_dkey.public_key)})),
        DecryptError),
}


@pytest.fixture
def world() -> World:
    return World()


def _install(store: BundleStore, w: World, a: Attempt, trust: Any) -> None:
    store.install(a.data, w.ctx(trust, a.device, a.model), w.now(6) + a.now_delta)


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_its_own_error_and_state_unchanged(
    case: str, world: World, tmp_path: Path
) -> None:
    make, error = CASES[case]
    trust = world.trust()
    store = BundleStore(tmp_path)
    store.install(world.bundle(5), world.ctx(trust), world.now(5))
    before_state, before_bytes = store.state(), store.active_bytes()
    before_files = sorted(p.name for p in tmp_path.iterdir())

    with pytest.raises(SignedDocumentError) as info:
        _install(store, world, make(world), trust)

    assert type(info.value) is error, f"{case}: {type(info.value).__name__}: {info.value}"
    assert store.state() == before_state
    assert store.active_bytes() == before_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == before_files


def test_the_good_bundle_installs(world: World, tmp_path: Path) -> None:
    """The control for every case above: the same world without the fault is accepted."""
    trust = world.trust()
    store = BundleStore(tmp_path)
    store.install(world.bundle(5), world.ctx(trust), world.now(5))
    data = world.bundle(6)
    vb = store.install(data, world.ctx(trust), world.now(6))
    state = store.state()
    assert state is not None and state.version == 6 and store.active_bytes() == data
    assert state.content_sha256 == vb.content_sha256
    # re-installing the very same bytes is not a replay
    store.install(data, world.ctx(trust), world.now(6))


def test_duplicate_key_does_not_meet_a_two_of_two_threshold(world: World) -> None:
    second = signing_key(20)
    trust = world.trust(watch_threshold=2, extra_watch=(second,))
    env = world.unsigned().sign(world.watch)
    first = env.signatures[0]
    twice = replace(env, signatures=(first, Signature(first.keyid, first.sig))).encode()
    kw: dict[str, Any] = dict(expected_model=MODEL, threshold_floor=FLOOR, last=None,
                              device_key=world.dkey)
    with pytest.raises(DuplicateSignatureError):
        verify_bundle(twice, trust, world.device, world.now(), **kw)
    with pytest.raises(ThresholdError):
        verify_bundle(env.encode(), trust, world.device, world.now(), **kw)
    both = env.sign(second).encode()
    assert verify_bundle(both, trust, world.device, world.now(), **kw).signer_keyids == {
        s.keyid for s in decode(both, max_header=1 << 20, max_body=1 << 20).signatures}


def test_no_plaintext_template_bytes_in_the_file(world: World) -> None:
    specs = [entry(world.rng, i) for i in range(4)]
    data = world.unsigned(entries=specs).sign(world.watch).encode()
    for spec in specs:
        for row in spec.templates:
            raw = row.astype("<f4").tobytes()
            for start in range(0, len(raw) - 16, 16):
                assert raw[start : start + 16] not in data


def test_each_target_device_decrypts_with_its_own_key(world: World) -> None:
    south = DeviceIdentity("cam-south", world.device.fleet_id)
    data = world.bundle(recipients={world.device.device_id: bytes(world.dkey.public_key),
                                    south.device_id: bytes(world.other_dkey.public_key)})
    kw: dict[str, Any] = dict(expected_model=MODEL, threshold_floor=FLOOR, last=None)
    north_view = verify_bundle(data, world.trust(), world.device, world.now(),
                               device_key=world.dkey, **kw)
    south_view = verify_bundle(data, world.trust(), south, world.now(),
                               device_key=world.other_dkey, **kw)
    assert (north_view.templates == south_view.templates).all()
    with pytest.raises(DecryptError):  # right device id, wrong private key
        verify_bundle(data, world.trust(), south, world.now(), device_key=world.dkey, **kw)
    with pytest.raises(WrongDeviceError):  # same fleet, not targeted
        verify_bundle(data, world.trust(), DeviceIdentity("cam-east", world.device.fleet_id),
                      world.now(), device_key=world.dkey, **kw)
