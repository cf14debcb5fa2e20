"""Issue 11, runtime half: the faults and attacks of the hardening list, on the running parts.

The fake-device tests drive the runner's own handlers (what the main thread does with
each message); the provisioned-device tests use the real composition root (real models
on CPU, documents signed as the authority would, real state and audit files).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest

from edge.delivery.outbox import Outbox
from edge.delivery.topics import Topics
from edge.errors import OutboxError
from edge.perception.detector import BlazeFaceDetector
from edge.perception.types import Detection, FloatArray, Frame, RGBImage
from edge.pipeline.decision import TrackDecider
from edge.pipeline.matcher import Matcher
from edge.pipeline.recognizer import Recognizer, RecognizerParts
from edge.pipeline.track import FaceSelector, IoUTracker
from edge.runtime.bundles import install_pushed
from edge.runtime.runner import Runner
from edge.runtime.status import status_payload
from edge.runtime.wiring import Device, close_device
from edge.watchlist.order import DeploymentOrder, revocations_document
from tests.accountability_world import records_of
from tests.test_runner_gate import NOW as FAKE_NOW
from tests.test_runner_gate import FakeDevice, FakeWatch, runner
from tests.test_wiring import CAMERA_ID, DEVICE_ID, NOW, Provisioned, build, provisioned
from tests.watchlist_world import FLEET, World, entry, random_templates, signing_key

__all__ = ["provisioned"]  # the module fixture, shared with test_wiring

# --- item 2: every message handler survives anything -----------------------------------


@dataclass
class BrokenWatch(FakeWatch):
    """A watchlist whose verifiers hit bugs (what a parser bug looks like to the runner)."""

    ctx: Any = field(default_factory=lambda: SimpleNamespace(trust=None))

    def is_active(self, _data: bytes) -> bool:
        return False

    def install(self, _data: bytes, _now: Any) -> Any:
        raise OverflowError("date value out of range")

    def install_order(self, _data: bytes) -> Any:
        raise RecursionError("maximum recursion depth exceeded")


@dataclass
class BrokenLedger:
    suspended: str | None = None
    ticks: list[bool] = field(default_factory=list)

    def tick(self, _now: Any, active: bool) -> None:
        self.ticks.append(active)

    def lfr_payload(self, active: bool, _now: Any) -> dict[str, Any]:
        return {"live_facial_recognition": active}

    def review(self, _payload: bytes, _trust: Any, _now: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")


def test_every_message_handler_logs_counts_and_goes_on() -> None:
    dev = FakeDevice(watch=BrokenWatch())
    dev.ledger = BrokenLedger()  # type: ignore[assignment]
    r = runner(dev)
    topics = Topics.for_device("dev-a")
    for leaf in ("review", "bundle", "order", "review"):
        r._on_message(topics.leaf(leaf), b"[" * 4096)
    r._on_message("edge/dev-b/review", b"not ours")  # another prefix: never handled
    r._install_pushed_bundles()
    r._apply_order_messages()
    r._apply_reviews()
    s = status_payload(r.gate, r.stats, r.dev, FAKE_NOW)
    assert s["messages"]["refused"] == {"review": 2, "bundle": 1, "order": 1}
    assert "RecursionError" in s["messages"]["last_error"]
    assert r.stats.bundle_refusals == 0  # a crash is not a verifier's refusal: counted apart


# --- item 6: a checkpoint into a full outbox ---------------------------------------------


def test_a_checkpoint_into_a_full_outbox_does_not_leave_the_loop(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3", max_events=1, max_bytes=10**6)
    outbox.put_alert("edge/dev-a/alerts", lambda seq: b'{"seq":%d}' % seq)

    @dataclass
    class Audit:
        def checkpoint(self, _key: Any, _now: Any) -> dict[str, Any]:
            return {"seq": 1}

    @dataclass
    class Link:
        config: Any = field(default_factory=lambda: type("C", (), {"topics": Topics.for_device("dev-a")}))

        def wake(self) -> None:
            raise AssertionError("nothing was queued")

    dev = FakeDevice()
    dev.outbox = outbox  # type: ignore[attr-defined]
    dev.audit = Audit()  # type: ignore[assignment]
    dev.link = Link()  # type: ignore[assignment]
    dev.signing_key = signing_key(5)  # type: ignore[attr-defined]
    r = runner(dev)
    r._checkpoint()
    assert r.stats.checkpoints_not_queued == 1 and outbox.depth() == 1
    outbox.close()


# --- provisioned devices -----------------------------------------------------------------


def runner_for(dev: Device, clock: Any = lambda: NOW) -> Runner:
    from edge.runtime.emitter import AlertEmitter
    from edge.runtime.notify import Notifier

    r = Runner(dev.cfg, clock=clock, notifier=Notifier(env={}), device=dev)
    r.dev = dev
    r.emitter = AlertEmitter(dev, dev.cfg.alerts, r.clock, r.stats)
    return r


def world() -> World:
    """The authority of ``provision_documents`` (its keys are fixed seeds)."""
    from edge.watchlist.bundle import DeviceIdentity

    return World(device=DeviceIdentity(DEVICE_ID, FLEET))


def order(**changes: Any) -> DeploymentOrder:
    base = DeploymentOrder(
        order_id="order-1", issuer="Authority", issued_at=NOW - timedelta(days=1),
        fleet_id=FLEET, device_id=DEVICE_ID, camera_ids=(CAMERA_ID,), site="boulevard",
        purpose="test", valid_from=NOW - timedelta(days=1), valid_until=NOW + timedelta(days=30),
        authorising_ref="auth/1", dpia_ref="dpia/1", equality_impact_ref="eq/1",
        rights_impact_ref="hr/1", public_notice_ref="notice/1")
    return replace(base, **changes)


def signed_order(**changes: Any) -> bytes:
    return order(**changes).envelope().sign(world().order).encode()


def test_the_active_bundle_pushed_again_is_a_no_op(provisioned: Provisioned, tmp_path: Path) -> None:
    """Item 13: the retained bundle, redelivered on every reconnect, is not re-audited."""
    dev = build(provisioned, tmp_path)
    try:
        data = (provisioned.base / "bundle.bin").read_bytes()
        before = len(records_of(dev.audit, "bundle_loaded"))
        matcher = dev.recognizer.matcher
        assert install_pushed(dev, data, NOW) is False
        assert len(records_of(dev.audit, "bundle_loaded")) == before == 1
        assert dev.recognizer.matcher is matcher
    finally:
        close_device(dev, NOW, "test over")


def audit_files(tmp_path: Path) -> list[tuple[str, bytes]]:
    """The device's audit log, file by file, to show a refused start wrote nothing."""
    return sorted((p.name, p.read_bytes()) for p in (tmp_path / "state" / "audit").iterdir())


def test_a_corrupt_outbox_refuses_the_start_before_anything_is_audited(
        provisioned: Provisioned, tmp_path: Path) -> None:
    """Item 5: each refused restart used to append `start` and `order_accepted` for ever."""
    dev = build(provisioned, tmp_path)
    close_device(dev, NOW, "test over")
    before = audit_files(tmp_path)
    (tmp_path / "state" / "outbox.sqlite3").write_bytes(b"not a database" * 512)
    for p in (tmp_path / "state").glob("outbox.sqlite3-*"):
        p.unlink()
    for _ in range(3):
        with pytest.raises(OutboxError):
            build(provisioned, tmp_path)
    assert audit_files(tmp_path) == before


def test_a_start_refused_by_a_model_or_the_config_audits_nothing(
        provisioned: Provisioned, tmp_path: Path) -> None:
    """Item 5: a bad model file or key used to append `start` on every refused restart."""
    import shutil

    from edge.errors import EdgeError
    from edge.perception.manifest import load_manifest
    from tests.test_wiring import MODELS

    dev = build(provisioned, tmp_path)
    close_device(dev, NOW, "test over")
    before = audit_files(tmp_path)
    models = tmp_path / "models"
    shutil.copytree(MODELS, models)
    emb = load_manifest(models).variant(dev.cfg.models.embedder, "float32")
    with (models / emb.file).open("r+b") as fh:  # one flipped byte: the hash check refuses it
        fh.seek(4096)
        b = fh.read(1)
        fh.seek(4096)
        fh.write(bytes([b[0] ^ 0xFF]))
    (tmp_path / "not-a-key").write_text("{}")
    for sections in ({"models": {"dir": str(models)}},
                     {"trust": {"signing_key": str(tmp_path / "not-a-key")}}):
        for _ in range(2):
            with pytest.raises(EdgeError):
                build(provisioned, tmp_path, **sections)
    assert audit_files(tmp_path) == before


def test_an_expired_entry_leaves_the_matcher_and_is_audited(provisioned: Provisioned,
                                                            tmp_path: Path) -> None:
    """Item 1: the matcher used to be rebuilt only at start and on a bundle install."""
    from edge.perception.manifest import load_manifest
    from edge.watchlist.model import embedder_ref
    from tests.test_wiring import MODELS

    base = tmp_path / "device"
    import shutil

    shutil.copytree(provisioned.base, base)
    w = world()
    rng = np.random.default_rng(5)
    soon = NOW + timedelta(hours=1)
    dim = embedder_ref(load_manifest(MODELS)).dim
    specs = [entry(rng, i, expires_at=exp, templates=random_templates(rng, 2, dim))
             for i, exp in enumerate((soon, soon + timedelta(days=3), NOW + timedelta(days=20)))]
    from edge.watchlist.keys import load_device_key

    dkey = load_device_key(base / "keys" / "device.x25519")
    bundle = w.unsigned(1, issued_at=NOW - timedelta(hours=1), model=embedder_ref(load_manifest(MODELS)),
                        threshold=provisioned.bundle_threshold, entries=specs,
                        recipients={DEVICE_ID: bytes(dkey.public_key)})
    (base / "bundle.bin").write_bytes(bundle.sign(w.watch).encode())
    cfg = replace(provisioned, base=base).config(state={"dir": str(tmp_path / "state")})
    from edge.runtime.wiring import build_device

    t = [NOW]
    dev = build_device(cfg, lambda: t[0], on_message=lambda _t, _p: None, on_ack=lambda _i: None)
    try:
        r = runner_for(dev, lambda: t[0])
        r._refresh_gate()
        assert dev.recognizer.matcher is not None and len(dev.recognizer.matcher) == 3
        t[0] = soon  # expires_at <= now: gone
        r._refresh_gate()
        m = dev.recognizer.matcher
        assert m is not None and [e.subject_ref for e in m.entries] == ["subj-00001", "subj-00002"]
        rec = records_of(dev.audit, "entries_expired")
        assert [(x["expired"], x["remaining"]) for x in rec] == [(1, 2)]
        r._refresh_gate()  # nothing more expired: nothing rebuilt, nothing audited
        assert dev.recognizer.matcher is m and len(records_of(dev.audit, "entries_expired")) == 1
        assert status_payload(r.gate, r.stats, dev, t[0])["bundle"]["entries"] == 2
    finally:
        close_device(dev, t[0], "test over")


def test_a_foreign_trust_file_is_refused_the_kept_root_runs_and_says_so(
        provisioned: Provisioned, tmp_path: Path) -> None:
    """Item 15 on the device: a foreign self-signed root put in place of trust.json."""
    import shutil

    base = tmp_path / "device"
    shutil.copytree(provisioned.base, base)
    cfg = replace(provisioned, base=base).config(state={"dir": str(tmp_path / "state")})
    from edge.runtime.wiring import build_device

    def make() -> Device:
        return build_device(cfg, lambda: NOW, on_message=lambda _t, _p: None, on_ack=lambda _i: None)

    dev = make()
    kept = dev.watch.ctx.trust
    close_device(dev, NOW, "test over")
    foreign = World(root=signing_key(91), watch=signing_key(92), order=signing_key(93))
    (base / "trust.json").write_bytes(foreign.trust_envelope().encode())
    dev = make()
    try:
        assert dev.watch.ctx.trust.content_sha256 == kept.content_sha256
        assert dev.watch.order is not None and dev.watch.active is not None  # still verifies
        r = runner_for(dev)
        s = status_payload(r.gate, r.stats, dev, NOW)
        assert s["trust"]["version"] == kept.version and "RollbackError" in s["trust"]["refused"]
        (rec,) = records_of(dev.audit, "trust_refused")
        assert rec["kept_sha256"] == kept.content_sha256
    finally:
        close_device(dev, NOW, "test over")


def test_orders_by_topic_replay_revocation_and_resume(provisioned: Provisioned, tmp_path: Path) -> None:
    """Item 14 on the device: the retained order topic, the revocation list, a signed resume."""
    dev = build(provisioned, tmp_path)
    topics = Topics.for_device(DEVICE_ID)
    try:
        r = runner_for(dev)
        r._refresh_gate()
        assert r.gate.running
        # A narrowing order by topic (order_seq 2): another camera only; recognition stops.
        r._on_message(topics.order, signed_order(order_id="order-2", order_seq=2, camera_ids=("cam9",)))
        r._apply_order_messages()
        assert dev.watch.order is not None and dev.watch.order.order_id == "order-2"
        assert not r.gate.running
        assert [x["order_id"] for x in records_of(dev.audit, "order_accepted")] == ["order-1", "order-2"]
        # The same retained order again on reconnect: nothing new.
        r._on_message(topics.order, signed_order(order_id="order-2", order_seq=2, camera_ids=("cam9",)))
        # The old, wider order replayed: refused (order_seq below the kept 2).
        r._on_message(topics.order, (provisioned.base / "order.json").read_bytes())
        r._apply_order_messages()
        assert dev.watch.order.order_id == "order-2"
        assert r.stats.messages_refused == {"order": 1}
        assert len(records_of(dev.audit, "order_accepted")) == 2
        # A wider order 3, then revoked: recognition stops with an audit record.
        r._on_message(topics.order, signed_order(order_id="order-3", order_seq=3))
        r._apply_order_messages()
        assert r.gate.running
        revs = revocations_document(FLEET, 1, NOW, ["order-3"]).sign(world().order).encode()
        r._on_message(topics.revocations, revs)
        r._apply_order_messages()
        assert dev.watch.order is None and not r.gate.running and "revoked" in r.gate.reason
        refused = records_of(dev.audit, "order_refused")
        assert refused[-1]["order_id"] == "order-3" and "revocation list 1" in refused[-1]["reason"]
    finally:
        close_device(dev, NOW, "test over")
    # The next start keeps all of it: the order taken by topic (order_seq 3) is newer than
    # the file's, and it stays revoked.
    dev = build(provisioned, tmp_path)
    try:
        assert dev.watch.order is None and "order-3 is revoked" in (dev.watch.order_error or "")
    finally:
        close_device(dev, NOW, "test over")


def test_a_signed_resume_on_its_topic_lifts_the_suspension(provisioned: Provisioned, tmp_path: Path) -> None:
    from edge.watchlist.order import resume_document

    dev = build(provisioned, tmp_path)
    topics = Topics.for_device(DEVICE_ID)
    try:
        r = runner_for(dev)
        dev.ledger.monitor.budget = 0.5
        while dev.ledger.suspended is None:
            dev.ledger.monitor.false_alert(NOW)
        r._refresh_gate()
        assert r.gate.suspended and not r.gate.running
        resume = resume_document(DEVICE_ID, "order-1", 1, NOW, "duty-inspector", "reviewed")
        r._on_message(topics.resume, resume.sign(world().order).encode())
        r._apply_order_messages()
        assert dev.ledger.suspended is None and r.gate.running
        r._on_message(topics.resume, resume.sign(world().order).encode())  # used once
        r._apply_order_messages()
        assert r.stats.messages_refused == {"resume": 1}
        assert len(records_of(dev.audit, "matching_resumed")) == 1
    finally:
        close_device(dev, NOW, "test over")


# --- item 16: a bystander's face in the crop ---------------------------------------------


def _rgb(testdata: Path, name: str) -> RGBImage:
    img: RGBImage = cv2.cvtColor(cv2.imread(str(testdata / name)), cv2.COLOR_BGR2RGB)
    return img


class SideAligner:
    """The face's side of the picture stands in for who it is (left: wanted)."""

    def __init__(self, split: float) -> None:
        self.split = split

    def align(self, _image: RGBImage, keypoints: FloatArray) -> RGBImage:
        return np.full((8, 8, 3), 1 if keypoints[2][0] < self.split else 2, dtype=np.uint8)


class SideEmbedder:
    backend, model_id, dim = "fake", "fake-embedder", 128

    def __init__(self, wanted: FloatArray, other: FloatArray) -> None:
        self.by = {1: wanted, 2: other}

    def embed(self, chips: RGBImage) -> FloatArray:
        return np.stack([self.by[int(c[0, 0, 0])] for c in chips]).astype(np.float32)


def test_a_bystanders_face_inside_the_alert_crop_is_blanked(testdata: Path, models_dir: Path) -> None:
    """Two real faces side by side, the real detector; only the wanted one may be in the crop."""
    det = BlazeFaceDetector.from_models_dir(models_dir, variant="float32",
                                            delegate_loader=lambda lib: (_ for _ in ()).throw(OSError(lib)))

    def tight(name: str) -> RGBImage:
        img = _rgb(testdata, name)
        (d,) = det.detect(img)
        x0, y0, x1, y1 = d.box
        w, h = x1 - x0, y1 - y0
        c = img[max(0, int(y0 - 0.3 * h)):int(y1 + 0.3 * h), max(0, int(x0 - 0.05 * w)):int(x1 + 0.05 * w)]
        return cv2.resize(c, (160, int(160 * c.shape[0] / c.shape[1])))

    left, right = tight("obama.jpg"), tight("biden.jpg")
    hgt = max(left.shape[0], right.shape[0])
    scene = np.zeros((hgt + 40, 360, 3), np.uint8)
    scene[20:20 + left.shape[0], 20:180] = left
    scene[20:20 + right.shape[0], 180:340] = right
    dets: list[Detection] = det.detect(scene)
    assert len(dets) == 2, "both faces must be found for the test to mean anything"
    wanted_box, other_box = sorted((d.box for d in dets), key=lambda b: b[0])

    w = World()
    vb = w.ctx().verify_bundle(w.unsigned(entries=[entry(np.random.default_rng(2), 0, n_templates=1)])
                               .sign(w.watch).encode(), w.now(), None)
    matcher = Matcher.from_bundle(vb, w.now())
    rng = np.random.default_rng(4)
    stranger = rng.standard_normal(128).astype(np.float32)
    class WholeFrame:  # the real detector on the whole frame (no tiling)
        last_tiles_run = 1

        def detect(self, image: RGBImage, *, tiles_to_run: Any = None) -> list[Detection]:
            return det.detect(image)

    rec = Recognizer(RecognizerParts(
        finder=WholeFrame(), aligner=SideAligner(180.0),
        embedder=SideEmbedder(matcher.templates[0], stranger / np.linalg.norm(stranger)),
        quality=lambda _img, _det, _chip: 0.9, tracker=IoUTracker(), selector=FaceSelector(),
        decider=TrackDecider()))
    rec.set_matcher(matcher)
    decisions = [d for i in range(12)
                 for d in rec.process(Frame(i, w.now() + timedelta(seconds=i / 15), i / 15, scene))]
    assert len(decisions) == 1
    crop = decisions[0].best.evidence.crop_source
    # Where the crop lies in the scene (the face with a 0.4 margin, as the recognizer cuts it).
    x0, y0, x1, y1 = wanted_box
    xa, ya = max(0, int(x0 - 0.4 * (x1 - x0))), max(0, int(y0 - 0.4 * (y1 - y0)))
    assert crop.shape[1] > 0 and xa + crop.shape[1] > other_box[0] + 5, "the bystander must reach the crop"
    bx0 = int(np.ceil(other_box[0])) - xa
    by0, by1 = max(0, int(np.ceil(other_box[1])) - ya), min(crop.shape[0], int(other_box[3]) - ya)
    bystander = crop[by0:by1, bx0:]
    assert bystander.size > 0 and not bystander.any()
    own = crop[int(np.ceil(y0)) - ya:int(y1) - ya, int(np.ceil(x0)) - xa:min(bx0, int(x1) - xa)]
    assert own.size > 0 and np.array_equal(own, scene[int(np.ceil(y0)):int(y1),
                                                      int(np.ceil(x0)):min(bx0 + xa, int(x1))])


def test_no_alert_on_an_entry_expired_at_capture_time() -> None:
    """Item 1, the second rule: the matcher still holds the entry, the frame is past its expiry."""
    from tests.test_recognizer import FakeAligner, FakeEmbedder, FakeFinder, embeddings, walk

    w = World()
    rng = np.random.default_rng(11)
    specs = [entry(rng, 0, n_templates=1, expires_at=w.now() + timedelta(seconds=1))]
    specs += [entry(rng, i, n_templates=1) for i in range(1, 4)]
    vb = w.ctx().verify_bundle(w.unsigned(entries=specs).sign(w.watch).encode(), w.now(), None)
    matcher = Matcher.from_bundle(vb, w.now())
    assert len(matcher) == 4
    rec = Recognizer(RecognizerParts(
        finder=FakeFinder(), aligner=FakeAligner(), embedder=FakeEmbedder(embeddings(matcher)),
        quality=lambda _img, _det, _chip: 0.9, tracker=IoUTracker(), selector=FaceSelector(),
        decider=TrackDecider()))
    rec.set_matcher(matcher)
    frames = [replace(f, captured_at=f.captured_at + timedelta(seconds=1)) for f in walk(w, 30, {200: 10})]
    assert [d for f in frames for d in rec.process(f)] == []
    assert rec.counters.expired_matches > 0 and rec.counters.matches == 0


# --- item 4: disk full elsewhere ---------------------------------------------------------


def test_recognition_stops_while_the_state_disk_is_below_its_reserve(tmp_path: Path) -> None:
    from edge import config
    from edge.fsutil import free_bytes
    from edge.runtime.notify import Notifier

    free = free_bytes(tmp_path)
    assert free is not None
    dev = FakeDevice(FakeWatch((True, "order o1 active")))

    def runner_with(reserve_mb: float) -> Runner:
        cfg = config.parse({"device": {"id": "dev-a", "camera_id": "cam-1", "site": "s"},
                            "state": {"dir": str(tmp_path), "reserve_mb": reserve_mb}})
        r = Runner(cfg, clock=lambda: FAKE_NOW, notifier=Notifier(env={}), device=dev)  # type: ignore[arg-type]
        r.dev = dev  # type: ignore[assignment]
        return r

    r = runner_with(free / 2**20 + 1024)  # a reserve this disk cannot hold
    r._refresh_gate()
    s = status_payload(r.gate, r.stats, r.dev, FAKE_NOW)
    assert not s["recognition_active"] and s["reason"].startswith("state disk below its reserve")
    assert dev.audit.gate()[-1] == (False, s["reason"])
    r = runner_with(0.0)
    r._refresh_gate()
    assert r.gate.running


def test_a_pushed_bundle_on_a_full_disk_is_a_typed_refusal(provisioned: Provisioned, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from edge.errors import StateError
    from edge.watchlist import state as state_mod

    dev = build(provisioned, tmp_path)
    try:
        w = world()
        from edge.perception.manifest import load_manifest
        from edge.watchlist.keys import load_device_key
        from edge.watchlist.model import embedder_ref
        from tests.test_wiring import MODELS

        dkey = load_device_key(provisioned.base / "keys" / "device.x25519")
        model = embedder_ref(load_manifest(MODELS))
        newer = w.unsigned(2, issued_at=NOW - timedelta(minutes=30), model=model,
                           threshold=provisioned.bundle_threshold,
                           recipients={DEVICE_ID: bytes(dkey.public_key)}).sign(w.watch).encode()

        def full(_fd: int, _data: bytes) -> None:  # the disk, at the OS edge
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(state_mod, "write_all", full)
        active = dev.watch.active
        with pytest.raises(StateError, match="No space left"):
            install_pushed(dev, newer, NOW)
        assert dev.watch.active is active and dev.watch.store.state().version == 1  # type: ignore[union-attr]
        monkeypatch.undo()
        assert install_pushed(dev, newer, NOW) and dev.watch.store.state().version == 2  # type: ignore[union-attr]
    finally:
        close_device(dev, NOW, "test over")


def test_an_alert_lost_to_a_disk_fault_is_critical_counted_and_named(
        provisioned: Provisioned, tmp_path: Path, testdata: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from edge.errors import OutboxError
    from edge.pipeline.decision import Decision, Observation
    from edge.pipeline.recognizer import Evidence

    dev = build(provisioned, tmp_path)
    try:
        r = runner_for(dev)
        crop = _rgb(testdata, "obama.jpg")[40:200, 60:200]
        ev = Evidence(NOW, (10.0, 10.0, 90.0, 90.0), 0.9, 0.95, 0.2, "wanted", np.ascontiguousarray(crop))
        assert dev.watch.active is not None
        subject = dev.watch.active.matcher.entries[0].subject_ref
        obs = Observation(subject, 0.99, 0.0, ev)
        decision = Decision(1, subject, 2, 2, obs, obs)

        def disk_fault(*_a: Any, **_k: Any) -> Any:
            raise OutboxError("outbox write failed: database or disk is full")

        dev.link.queue_alert = disk_fault  # type: ignore[method-assign]
        frame = Frame(0, NOW, 0.0, np.zeros((4, 4, 3), np.uint8))
        assert r.emitter is not None
        with caplog.at_level(logging.CRITICAL):
            r.emitter.emit(frame, decision)
        (line,) = [x for x in caplog.records if x.levelno == logging.CRITICAL]
        assert "ALERT NOT QUEUED" in line.getMessage() and subject in line.getMessage()
        assert re.search(r"event [0-9a-f-]{36}", line.getMessage())
        assert r.stats.alerts_refused == 1 and r.stats.alerts == 0
    finally:
        close_device(dev, NOW, "test over")
