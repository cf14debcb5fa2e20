"""build_device, fast: the real composition root on a provisioned folder, no broker, no camera.

The models are the real ones (CPU), the trust, order and bundle are signed as the
authority would; only the MQTT link is never started. What is checked is the
wiring itself: each part built from its config section, the one effective
threshold shared by the matcher, the alert provenance and the status, the topics,
and the refusals that must stop ``edge run`` before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge import config
from edge.errors import ThresholdFloorError
from edge.perception.manifest import load_manifest
from edge.runtime.emitter import provenance
from edge.runtime.wiring import Device, build_device, close_device
from edge.watchlist.keys import DEVICE, generate
from edge.watchlist.model import embedder_floor, embedder_ref
from tests.watchlist_world import FLEET, provision_documents

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
DEVICE_ID, CAMERA_ID = "cam-north", "cam0"
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Provisioned:
    base: Path
    bundle_threshold: float
    floor: float

    def config(self, **sections: dict[str, Any]) -> config.Config:
        table: dict[str, Any] = {
            "device": {"id": DEVICE_ID, "camera_id": CAMERA_ID, "site": "boulevard", "fleet_id": FLEET},
            "source": {"kind": "folder", "target": "frames", "realtime": False},
            "models": {"dir": str(MODELS), "edgetpu": False},
            "trust": {"trust_file": "trust.json", "device_key": "keys/device.x25519",
                      "order_file": "order.json", "bundle_file": "bundle.bin"},
            "state": {"dir": "state"},
            "broker": {"tls": False, "port": 1},  # never connected: the link is not started
        }
        for name, values in sections.items():
            table[name] = {**table.get(name, {}), **values}
        return config.parse(table, self.base)


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Provisioned:
    if not (MODELS / "manifest.json").is_file():
        pytest.skip("models not built: run `make models`")
    base = tmp_path_factory.mktemp("device")
    (base / "keys").mkdir()
    dkey = generate(DEVICE, DEVICE_ID, base / "keys" / "device.x25519")
    (base / "frames").mkdir()
    cv2.imwrite(str(base / "frames" / "0001.png"), np.zeros((64, 64, 3), np.uint8))
    threshold = provision_documents(base, DEVICE_ID, CAMERA_ID, "boulevard", NOW, dkey.public_key,
                                    MODELS)
    floor = embedder_floor(load_manifest(MODELS))
    return Provisioned(base, threshold, floor)


def build(p: Provisioned, tmp_path: Path, **sections: dict[str, Any]) -> Device:
    cfg = p.config(state={"dir": str(tmp_path / "state")}, **sections)
    return build_device(cfg, lambda: NOW, on_message=lambda _t, _p: None, on_ack=lambda _i: None)


def test_a_provisioned_device_is_ready_to_recognise(provisioned: Provisioned, tmp_path: Path) -> None:
    dev = build(provisioned, tmp_path)
    try:
        allowed, reason = dev.watch.allowed(NOW)
        assert allowed and "order order-1" in reason, reason
        assert dev.recognizer.matcher is dev.watch.active.matcher  # type: ignore[union-attr]
        # One threshold: the matcher's, in the alert provenance and in the status.
        threshold = dev.watch.active.matcher.threshold  # type: ignore[union-attr]
        assert threshold == provisioned.bundle_threshold
        assert provenance(dev).threshold == threshold == dev.watch.bundle_status()["threshold"]  # type: ignore[index]
        assert dev.backend == "detector:cpu/embedder:cpu"
        assert dev.link.config.topics.alerts == f"edge/{DEVICE_ID}/alerts"
        # Each part took its own section's values.
        tc = dev.cfg.tracking
        assert dev.recognizer.p.tracker.iou_threshold == tc.iou
        assert dev.recognizer.p.decider.cooldown_s == tc.cooldown_s
        assert dev.link.config.reconnect_max_s == dev.cfg.broker.reconnect_max_s
        assert dev.model.sha256 == embedder_ref(load_manifest(MODELS)).sha256
    finally:
        close_device(dev, NOW, "test over")


def test_a_config_threshold_raises_the_bundles_everywhere(provisioned: Provisioned, tmp_path: Path) -> None:
    raised = round(min(0.999, provisioned.bundle_threshold + 0.02), 4)
    dev = build(provisioned, tmp_path, matching={"threshold": raised})
    try:
        assert dev.watch.active is not None and dev.watch.active.matcher.threshold == raised
        assert provenance(dev).threshold == raised == dev.watch.bundle_status()["threshold"]  # type: ignore[index]
    finally:
        close_device(dev, NOW, "test over")


def test_a_config_threshold_below_the_floor_stops_the_build(provisioned: Provisioned,
                                                            tmp_path: Path) -> None:
    low = round(provisioned.floor - 0.05, 4)
    with pytest.raises(ThresholdFloorError, match=r"config matching\.threshold"):
        build(provisioned, tmp_path, matching={"threshold": low})
