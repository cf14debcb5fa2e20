"""Order replay (issue 11, item 14, verifier side): a signed monotonic order_seq kept in
state, a signed revocation list, and an explicit signed resume as the only way out of a
false-alert suspension. Real keys and signatures, real state files, a real audit log."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from edge.accountability.ledger import Ledger
from edge.errors import OrderError, ReplayError, RollbackError, UntrustedKeyError, WrongDeviceError
from edge.watchlist import canonical
from edge.watchlist.envelope import ORDER_TYPE, Envelope
from edge.watchlist.order import resume_document, revocations_document, verify_order
from edge.watchlist.orderstate import ORDER_STATE_FILE, OrderStore
from tests.accountability_world import ORDER as ACC_ORDER
from tests.accountability_world import open_audit, records_of
from tests.test_order import ORDER
from tests.watchlist_world import FLEET, T0, World


def signed(w: World, **changes: object) -> bytes:
    return replace(ORDER, **changes).envelope().sign(w.order).encode()  # type: ignore[arg-type]


def test_an_older_order_inside_its_window_is_a_replay(tmp_path: Path) -> None:
    w, trust = World(), World().trust()
    store = OrderStore(tmp_path)
    old = signed(w, order_id="DO-1", order_seq=4, camera_ids=("cam0", "cam1"))
    narrow = signed(w, order_id="DO-2", order_seq=5, camera_ids=("cam0",))
    assert store.admit_order(old, trust, FLEET).order_id == "DO-1"
    assert store.admit_order(narrow, trust, FLEET).order_id == "DO-2"
    state = (tmp_path / ORDER_STATE_FILE).read_bytes()
    assert store.admit_order(narrow, trust, FLEET).order_seq == 5  # the same order again (retained)

    # Both are inside their window; the plain verifier takes the older, wider one ...
    assert verify_order(old, trust, FLEET).camera_ids == ("cam0", "cam1")
    # ... the device, which keeps order_seq, does not.
    with pytest.raises(RollbackError, match="order_seq 4, below the accepted 5"):
        store.admit_order(old, trust, FLEET)
    with pytest.raises(ReplayError):  # the same seq with other content
        store.admit_order(signed(w, order_id="DO-3", order_seq=5), trust, FLEET)
    with pytest.raises(UntrustedKeyError):  # order_seq is signed: only the order role can raise it
        store.admit_order(replace(ORDER, order_seq=9).envelope().sign(w.watch).encode(), trust, FLEET)
    assert (tmp_path / ORDER_STATE_FILE).read_bytes() == state  # refusals change nothing
    unnumbered = canonical.loads_object(ORDER.envelope().header, "order")
    del unnumbered["order_seq"]
    with pytest.raises(OrderError, match="order_seq"):
        verify_order(Envelope(ORDER_TYPE, canonical.dumps(unnumbered), b"").sign(w.order).encode(), trust,
                     FLEET)


def test_a_signed_revocation_list_refuses_named_orders(tmp_path: Path) -> None:
    w, trust = World(), World().trust()
    store = OrderStore(tmp_path)
    bad = signed(w, order_id="DO-7", order_seq=7)
    revs = revocations_document(FLEET, 2, T0, ["DO-7"])
    with pytest.raises(UntrustedKeyError):
        store.admit_revocations(revs.sign(w.watch).encode(), trust, FLEET)
    assert store.admit_revocations(revs.sign(w.order).encode(), trust, FLEET).order_ids == {"DO-7"}
    assert store.revoked("DO-7") and not store.revoked("DO-8")
    with pytest.raises(OrderError, match="revoked"):
        store.admit_order(bad, trust, FLEET)
    with pytest.raises(RollbackError):  # an older list (which did not name DO-7) cannot replace it
        store.admit_revocations(revocations_document(FLEET, 1, T0, []).sign(w.order).encode(), trust, FLEET)
    with pytest.raises(ReplayError):
        store.admit_revocations(revocations_document(FLEET, 2, T0, []).sign(w.order).encode(), trust, FLEET)
    assert store.revoked("DO-7")
    assert store.admit_order(signed(w, order_id="DO-8", order_seq=8), trust, FLEET).order_id == "DO-8"


def test_only_a_signed_resume_lifts_a_suspension(tmp_path: Path) -> None:
    w, trust = World(), World().trust()
    store = OrderStore(tmp_path / "orders")
    order = replace(ACC_ORDER, false_alert_budget=1)
    with open_audit(tmp_path / "audit") as audit:
        ledger = Ledger(tmp_path, audit, "cam-north", order)
        ledger.begin(order, T0)
        ledger.monitor.false_alert(T0)
        reason = ledger.monitor.false_alert(T0)
        assert reason is not None and ledger.suspended == reason and "signed resume" in reason
        # swapping the order id no longer lifts it
        ledger.begin(replace(order, order_id="DO-2026-099", order_seq=2), T0 + timedelta(hours=1))
        assert ledger.suspended == reason
        current = ledger.order
        assert current is not None

        def resume(seq: int, order_id: str = "DO-2026-099", device: str = "cam-north") -> bytes:
            return resume_document(device, order_id, seq, T0, "duty-inspector-3",
                                   "model retrained; budget reviewed").sign(w.order).encode()

        with pytest.raises(UntrustedKeyError):
            by_watch = resume_document("cam-north", "DO-2026-099", 1, T0, "x", "y").sign(w.watch)
            store.admit_resume(by_watch.encode(), trust, "cam-north", current)
        with pytest.raises(OrderError, match="DO-2026-041"):  # for another order than the running one
            store.admit_resume(resume(1, "DO-2026-041"), trust, "cam-north", current)
        with pytest.raises(WrongDeviceError):
            store.admit_resume(resume(1, device="cam-south"), trust, "cam-north", current)
        assert ledger.suspended == reason
        ledger.resume(store.admit_resume(resume(1), trust, "cam-north", current), T0 + timedelta(hours=2))
        assert ledger.suspended is None
        resumed = records_of(audit, "matching_resumed")
        assert resumed[-1]["reason"].startswith("signed resume 1 by duty-inspector-3")
        with pytest.raises(ReplayError):  # a resume works once
            store.admit_resume(resume(1), trust, "cam-north", current)


def test_revoke_and_resume_are_signed_by_the_order_tools(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`edge order revoke|resume` write documents the device's store accepts (real key files)."""
    import json

    from edge.cli import main
    from edge.watchlist.keys import load_signer
    from edge.watchlist.trust import load_pinned
    from tests.watchlist_world import pub

    key = tmp_path / "ops.key"
    assert main(["keys", "generate", "--kind", "signer", "--name", "ops", "--out", str(key)]) == 0
    ops = load_signer(key)
    w = World(order=ops)
    trust = load_pinned(w.trust_envelope().encode())
    assert trust.keys[next(iter(trust.roles["order"].keyids))] == pub(ops)
    capsys.readouterr()
    assert main(["order", "revoke", "DO-7", "--fleet", FLEET, "--list-seq", "3", "--key", str(key),
                 "--out", str(tmp_path / "rev.bin")]) == 0
    assert json.loads(capsys.readouterr().out)["signatures"]
    assert main(["order", "resume", "--device-id", "cam-north", "--order-id", "DO-8", "--resume-seq", "1",
                 "--decided-by", "inspector-3", "--reason", "budget reviewed", "--key", str(key),
                 "--out", str(tmp_path / "resume.bin")]) == 0
    store = OrderStore(tmp_path / "orders")
    assert store.admit_revocations((tmp_path / "rev.bin").read_bytes(), trust, FLEET).list_seq == 3
    order = store.admit_order(signed(w, order_id="DO-8", order_seq=8), trust, FLEET)
    resume = store.admit_resume((tmp_path / "resume.bin").read_bytes(), trust, "cam-north", order)
    assert (resume.order_id, resume.decided_by) == ("DO-8", "inspector-3")
