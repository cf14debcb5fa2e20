"""Two devices, a real Mosquitto, the station and a real browser (Debian's chromium via Selenium).

The same two watchlisted people walk past camera 1 (device cam-north) and then
camera 2 (cam-south), both under an order requiring two verifiers. The review
queue, open in the browser, shows the incidents arrive without a reload; one
operator confirms the first person, a supervisor confirms as the second
verifier; the second person is marked a false alert. The devices, back online
with scenes of other people, receive the signed reviews, and their audit logs
show the outcomes; the false alert's crops are gone from the station and from
both devices. Screenshots of the review and health pages go to
.cache/screenshots/.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from edge.accountability.evidence import EvidenceStore
from edge.scenario.demo import Deployment, prepare
from station_tests.run import Station, add_user, write_config
from station_tests.world import open_store
from tests.broker import Broker
from tests.e2e import add_reviewers, edge_cli, start_firmware, stop_firmware, use_scene, wait_exit

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".cache" / "screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--window-size=1400,1000")
SCENE = ("--seconds", "20", "--seed", "3", "--face-min", "40", "--face-max", "120", "--n-others", "3",
         "--watchlisted", "obama,biden")
OTHERS = ("--seconds", "25", "--seed", "9", "--face-min", "40", "--face-max", "120", "--n-others", "3",
          "--watchlisted", "")
FAST_STATUS = "\n[stats]\nstatus_interval_s = 2.0\n"
PASSWORDS = {"olga": "olga-password-1", "sam": "sam-password-22"}


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    if shutil.which(CHROMIUM) is None or shutil.which(CHROMEDRIVER) is None:
        pytest.fail("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def wait(b: WebDriver, seconds: float) -> WebDriverWait[WebDriver]:
    """Live parts of a page are replaced when the server pushes a change: retry stale reads."""
    return WebDriverWait(b, seconds, ignored_exceptions=(StaleElementReferenceException,))


def login(b: WebDriver, url: str, user: str) -> None:
    b.get(url + "/login")
    b.find_element(By.ID, "username").send_keys(user)
    b.find_element(By.ID, "password").send_keys(PASSWORDS[user])
    b.find_element(By.ID, "login").click()
    wait(b, 10).until(lambda d: d.find_elements(By.ID, "logout"))


def logout(b: WebDriver) -> None:
    b.find_element(By.ID, "logout").click()
    wait(b, 10).until(lambda d: d.find_elements(By.ID, "login"))


def row(b: WebDriver, subject: str) -> Any:
    found = b.find_elements(By.CSS_SELECTOR, f'tr.incident[data-subject="{subject}"]')
    return found[0] if found else None


def device(tmp: Path, testdata: Path, broker: Broker, name: str, camera: str, site: str,
           keys: dict[str, Path]) -> Deployment:
    dep = prepare(tmp / name, testdata, port=broker.port, device_id=name, camera_id=camera, site=site,
                  scenario=SCENE, realtime=False, require_two_verifiers=True, extra_config=FAST_STATUS)
    add_reviewers(dep, keys)
    return dep


def run_scene(dep: Deployment, testdata: Path, log: str) -> None:
    proc = start_firmware(dep, testdata, log)
    try:
        assert wait_exit(proc, 300) == 0, (dep.work / log).read_text()[-3000:]
    finally:
        stop_firmware(proc)


def audit(dep: Deployment, kind: str) -> list[dict[str, Any]]:
    r = edge_cli("audit", "show", "--dir", str(dep.state / "audit"), "--json", "--kind", kind)
    assert r.returncode == 0, r.stderr
    return [json.loads(line)["data"] for line in r.stdout.splitlines() if line.strip()]


def test_two_cameras_reviewed_in_a_browser(tmp_path: Path, testdata: Path, broker: Broker,
                                           browser: WebDriver) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{tmp_path / 'station.db'}"
    bundles, authority = tmp_path / "bundles", tmp_path / "authority-trust.json"
    cfg = write_config(tmp_path / "station", db_url, broker, window_s=900, bundles=(bundles, authority))
    keys = {"olga": add_user(cfg, "olga", "operator", PASSWORDS["olga"]),
            "sam": add_user(cfg, "sam", "supervisor", PASSWORDS["sam"])}
    north = device(tmp_path, testdata, broker, "cam-north", "cam-1", "Boulevard, north end", keys)
    south = device(tmp_path, testdata, broker, "cam-south", "cam-2", "Boulevard, south end", keys)
    bundles.mkdir()  # the authority gives the station its signed bundle and trust root
    shutil.copy(north.bundle, bundles / "bundle.bin")
    shutil.copy(north.trust, authority)
    station = Station(cfg, tmp_path / "station.log").start()
    store = open_store(db_url)
    b = browser
    try:
        login(b, station.url, "olga")
        b.get(station.url + "/")
        b.execute_script("window.__sameDocument = true;")
        # Camera 1, then camera 2: the queue fills while the page stays open.
        run_scene(north, testdata, "north.log")
        wait(b, 60).until(lambda d: all(row(d, s) is not None for s in ("SUBJ-0001", "SUBJ-0002")))
        run_scene(south, testdata, "south.log")
        wait(b, 60).until(lambda d: all(
            row(d, s) is not None and row(d, s).get_attribute("data-devices") == "cam-north,cam-south"
            for s in ("SUBJ-0001", "SUBJ-0002")))
        assert b.execute_script("return window.__sameDocument === true;"), "updated without a reload"
        obama = int(wait(b, 10).until(lambda d: row(d, "SUBJ-0001").get_attribute("data-id")))
        biden = int(wait(b, 10).until(lambda d: row(d, "SUBJ-0002").get_attribute("data-id")))

        # The first operator confirms: one decision recorded, waiting for a second operator.
        b.get(f"{station.url}/incident/{obama}")
        wait(b, 10).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".sighting img.crop")) >= 2)
        wait(b, 10).until(lambda d: d.find_element(By.ID, "authority-ref").text == "WARRANT-2026-0042")
        b.save_screenshot(str(SCREENSHOTS / "review.png"))
        b.find_element(By.ID, "note").send_keys("matches the listed entry")
        b.find_element(By.ID, "outcome-confirmed").click()
        wait(b, 10).until(lambda d: d.find_elements(By.ID, "awaiting"))
        # ... and marks the second person a false alert: the crops go at once.
        b.get(f"{station.url}/incident/{biden}")
        biden_events = wait(b, 10).until(lambda d: [
            e.get_attribute("data-event") for e in d.find_elements(By.CSS_SELECTOR, ".sighting")])
        b.find_element(By.ID, "outcome-false_alert").click()
        wait(b, 10).until(lambda d: d.find_element(By.ID, "state").text == "decided")
        assert len(biden_events) >= 2
        wait(b, 10).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".nocrop")) == len(biden_events))
        assert all(store.crop(e) is None for e in biden_events)
        status = b.execute_script(
            "return fetch(arguments[0]).then(r => r.status);", f"/crop/{biden_events[0]}")
        assert status == 404
        logout(b)

        # The second operator (a supervisor) confirms: the incident is decided.
        login(b, station.url, "sam")
        b.get(f"{station.url}/incident/{obama}")
        b.find_element(By.ID, "outcome-confirmed").click()
        wait(b, 10).until(lambda d: d.find_element(By.ID, "state").text == "decided")
        wait(b, 10).until(lambda d: d.find_element(By.ID, "outcome").text == "confirmed")

        # The devices come back (other people only); the station sends them the signed reviews.
        procs = []
        for dep, log in ((north, "north2.log"), (south, "south2.log")):
            use_scene(dep, testdata, "others", OTHERS, realtime=True)
            procs.append((dep, start_firmware(dep, testdata, log)))
        try:
            b.get(f"{station.url}/incident/{obama}")
            wait(b, 120).until(lambda d: (
                rows := d.find_elements(By.CSS_SELECTOR, "tr.review")) and all(
                r.get_attribute("data-applied") == "1" for r in rows))
            b.save_screenshot(str(SCREENSHOTS / "review-applied.png"))
            b.get(f"{station.url}/health")
            wait(b, 30).until(lambda d: len(d.find_elements(
                By.CSS_SELECTOR, 'tr.device[data-online="1"]')) == 2)
            b.save_screenshot(str(SCREENSHOTS / "health.png"))
            for dep, proc in procs:
                assert wait_exit(proc, 180) == 0, (dep.work / "north2.log").read_text()[-2000:]
        finally:
            for _dep, proc in procs:
                stop_firmware(proc)
    finally:
        station.stop()

    # The devices' audit logs show the outcomes, signed by the two operators' keys.
    incident = store.incident(obama)
    assert incident is not None
    for dep in (north, south):
        adjudications = audit(dep, "adjudication")
        mine = {t["event_id"] for t in incident["timeline"] if t["device_id"] == dep.work.name}
        confirmed = [a for a in adjudications if a["event_id"] in mine and a["outcome"] == "confirmed"]
        assert confirmed and all(a["verifier_ids"] in (["olga"], ["olga", "sam"]) for a in confirmed)
        assert {e: ["olga", "sam"] in [a["verifier_ids"] for a in confirmed if a["event_id"] == e]
                for e in mine} == dict.fromkeys(mine, True), "every sighting settled by two verifiers"
        falses = {a["event_id"] for a in adjudications if a["outcome"] == "false_alert"}
        assert falses and falses <= set(biden_events)
        # The false alert's crops are gone from the device too, with a deletion record each.
        held = set(EvidenceStore(dep.state / "evidence").event_ids())
        assert not held & falses
        deleted = {d["event_id"] for d in audit(dep, "deletion")}
        assert falses <= deleted
