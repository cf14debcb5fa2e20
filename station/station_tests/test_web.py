"""The review web application through HTTP: login, roles, CSRF, rate limit, decisions, pages."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from station import db
from station.cli import add_user
from station.config import StationConfig
from station.store import Store
from station.web import StationApp
from station_tests.world import T0, alert, crop_jpeg, open_store

HTML = {"accept": "text/html"}
PASSWORDS = {"olga": "olga-password-1", "sam": "sam-password-22"}


def setup(tmp_path: Path, database: str, secure: bool = False) -> tuple[StationConfig, Store, TestClient]:
    cfg = StationConfig(database=database, state_dir=tmp_path / "state", secure_cookies=secure)
    add_user(cfg, "olga", "operator", PASSWORDS["olga"])
    add_user(cfg, "sam", "supervisor", PASSWORDS["sam"])
    store = open_store(database)
    return cfg, store, TestClient(StationApp(cfg, store).app, base_url="http://127.0.0.1")


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m is not None
    return m.group(1)


def login(client: TestClient, user: str, password: str | None = None) -> int:
    token = csrf_of(client.get("/login").text)
    r = client.post("/login", data={"csrf": token, "username": user, "password": password or PASSWORDS[user]},
                    follow_redirects=False)
    return r.status_code


def decisions(store: Store) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(db.decisions)).scalar() or 0)


def test_nothing_without_a_login_but_the_health_check(tmp_path: Path) -> None:
    _cfg, _store, client = setup(tmp_path, f"sqlite:///{tmp_path / 's.db'}")
    assert client.get("/healthz").json() == {"ok": True}
    for path in ("/", "/health", "/transparency", "/audit", "/incident/1", "/events", "/crop/x",
                 "/transparency/chart.svg"):
        r = client.get(path, headers=HTML, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
        assert client.get(path).status_code == 401, path


def test_wrong_passwords_are_rate_limited(tmp_path: Path) -> None:
    _cfg, store, client = setup(tmp_path, f"sqlite:///{tmp_path / 's.db'}")
    assert [login(client, "olga", "wrong-password-x") for _ in range(5)] == [401] * 5
    assert login(client, "olga") == 429, "locked out even with the right password"
    assert client.get("/", headers=HTML, follow_redirects=False).status_code == 303
    actions = [a["action"] for a in store.actions()]
    assert actions.count("login_failed") == 5 and actions[0] == "login_rate_limited"


def test_session_cookie_is_secure_httponly_strict(tmp_path: Path) -> None:
    _cfg, _store, client = setup(tmp_path, f"sqlite:///{tmp_path / 's.db'}", secure=True)
    cookie = client.get("/login").headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie


def test_roles_csrf_and_a_decision(database: str, tmp_path: Path, testdata: Path) -> None:
    _cfg, store, client = setup(tmp_path, database)
    got = store.alert("cam-1", alert("cam-1", 1, T0, crop=crop_jpeg(testdata)), T0.timestamp())
    assert got is not None
    assert login(client, "olga") == 303
    queue = client.get("/").text
    assert f"/incident/{got.incident_id}" in queue and "subj-obama" in queue
    assert client.get(f"/crop/{got.event_id}").headers["content-type"] == "image/jpeg"
    # An operator on a supervisor page: refused and logged.
    assert client.get("/health", headers=HTML).status_code == 403
    assert client.get("/audit", headers=HTML).status_code == 403
    page = client.get(f"/incident/{got.incident_id}").text
    # A forged form (no token, or another token): refused, nothing recorded.
    for data in ({"outcome": "confirmed"}, {"outcome": "confirmed", "csrf": "forged"}):
        r = client.post(f"/incident/{got.incident_id}/decide", data=data, follow_redirects=False)
        assert r.status_code == 403
    assert decisions(store) == 0
    r = client.post(f"/incident/{got.incident_id}/decide", follow_redirects=False,
                    data={"outcome": "inconclusive", "note": "face half hidden", "csrf": csrf_of(page)})
    assert r.status_code == 303 and decisions(store) == 1
    assert len(store.unpublished()) == 1
    assert "inconclusive" in client.get(f"/incident/{got.incident_id}").text
    # The supervisor sees health and the action log with every operator id.
    client.post("/logout", data={"csrf": csrf_of(page)})
    assert login(client, "sam") == 303
    assert client.get("/health").status_code == 200
    audit = client.get("/audit").text
    for needle in ("olga", "forbidden", "csrf_refused", "decision", "sam"):
        assert needle in audit, needle
    assert client.get("/transparency/chart.svg").content.startswith(b"<?xml")


@pytest.mark.parametrize("bad", ["not-an-outcome", "confirmed"])
def test_decision_refusals_are_logged(tmp_path: Path, bad: str) -> None:
    _cfg, store, client = setup(tmp_path, f"sqlite:///{tmp_path / 's.db'}")
    got = store.alert("cam-1", alert("cam-1", 1, T0), T0.timestamp())
    assert got is not None and login(client, "olga") == 303
    page = client.get(f"/incident/{got.incident_id}").text
    note = "x" * 300 if bad == "confirmed" else ""
    r = client.post(f"/incident/{got.incident_id}/decide", data={"outcome": bad, "note": note,
                                                                  "csrf": csrf_of(page)})
    assert r.status_code == 409 and decisions(store) == 0
    assert store.actions()[0]["action"] == "decision_refused"


def test_the_entry_beside_the_crop_comes_from_a_verified_bundle(tmp_path: Path, testdata: Path) -> None:
    from edge.scenario.demo import prepare

    dep = prepare(tmp_path / "dev", testdata, port=1883, scenario=("--seconds", "20", "--seed", "3"))
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    shutil.copy(dep.bundle, bundles / "bundle.bin")
    (bundles / "forged.bin").write_bytes(dep.bundle.read_bytes()[:-10] + b"x" * 10)
    database = f"sqlite:///{tmp_path / 's.db'}"
    cfg = StationConfig(database=database, state_dir=tmp_path / "state", secure_cookies=False,
                        bundles_dir=str(bundles), trust_file=str(dep.trust))
    add_user(cfg, "olga", "operator", PASSWORDS["olga"])
    store = open_store(database)
    client = TestClient(StationApp(cfg, store).app, base_url="http://127.0.0.1")
    got = store.alert("cam-1", alert("cam-1", 1, T0, "SUBJ-0001"), T0.timestamp())
    assert got is not None and login(client, "olga") == 303
    page = client.get(f"/incident/{got.incident_id}").text
    assert "WARRANT-2026-0042" in page and "Entry expires" in page
