"""Config range checks (issue 11, item 19): non-finite and out-of-range values are refused
at load, and the error names the dotted key. Each case passed `--check-config` before."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge import config
from edge.cli import main as edge_main
from edge.errors import ConfigError

BASE = '[device]\nid = "dev-a"\ncamera_id = "cam-1"\nsite = "gate"\n'

BAD = [
    ("matching", "threshold = nan", "matching.threshold"),
    ("matching", "threshold = 1.5", "matching.threshold"),
    ("detection", "score_threshold = inf", "detection.score_threshold"),
    ("detection", "motion_threshold = -0.1", "detection.motion_threshold"),
    ("tracking", "k = 5\nn = 4", "tracking.k"),
    ("tracking", "k = 0", "tracking.k"),
    ("tracking", "iou = nan", "tracking.iou"),
    ("tracking", "min_quality = 2.0", "tracking.min_quality"),
    ("tracking", "cooldown_s = -1.0", "tracking.cooldown_s"),
    ("tracking", "embed_every = 0", "tracking.embed_every"),
    ("outbox", "max_events = -5", "outbox.max_events"),
    ("outbox", "max_bytes = 0", "outbox.max_bytes"),
    ("outbox", "drain_timeout_s = nan", "outbox.drain_timeout_s"),
    ("alerts", "crop_quality = 100000", "alerts.crop_quality"),
    ("alerts", "crop_quality = 0", "alerts.crop_quality"),
    ("stats", "interval_s = 0.0", "stats.interval_s"),
    ("source", 'kind = "folder"\ntarget = "x"\nfps = inf', "source.fps"),
    ("models", "threads = 0", "models.threads"),
    ("broker", "tls = false\nreconnect_max_s = -inf", "broker.reconnect_max_s"),
]


@pytest.mark.parametrize(("section", "body", "key"), BAD, ids=[b[2] + ":" + b[1] for b in BAD])
def test_out_of_range_values_are_refused_naming_the_key(
        tmp_path: Path, section: str, body: str, key: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(f"{BASE}[{section}]\n{body}\n")
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert e.value.key == key
    assert edge_main(["run", "--config", str(path), "--check-config"]) == 1  # said, not "OK"
    assert f"config key '{key}'" in capsys.readouterr().err


def test_in_range_edges_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(BASE + "[tracking]\nk = 4\nn = 4\n[alerts]\ncrop_quality = 100\n"
                    "[outbox]\nmax_events = 1\n[matching]\nthreshold = 1.0\n")
    cfg = config.load(path)
    assert (cfg.tracking.k, cfg.alerts.crop_quality, cfg.outbox.max_events) == (4, 100, 1)
