"""Config validation: unknown keys, bad types and missing keys are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge import config
from edge.errors import ConfigError

MINIMAL = """
[device]
id = "dev-a"
camera_id = "cam-1"
site = "Boulevard North"

[source]
kind = "file"
target = "scene/scene.mp4"

[broker]
tls = false
port = 1883
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "edge.toml"
    p.write_text(text)
    return p


def test_minimal_config_loads_with_defaults_and_resolves_paths(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, MINIMAL))
    assert cfg.device.id == "dev-a"
    assert cfg.source.target == str(tmp_path / "scene" / "scene.mp4")
    assert cfg.tracking.k == 2
    assert cfg.topics.prefix == "edge/dev-a" and cfg.topics.alerts == "edge/dev-a/alerts"
    assert cfg.broker.port == 1883


def test_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, MINIMAL + "\n[tracking]\ncooldown = 3\n"))
    assert e.value.key == "tracking.cooldown"
    assert "cooldown_s" in str(e.value)


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, MINIMAL + "\n[camera]\nfps = 3\n"))
    assert e.value.key == "camera"


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, MINIMAL.replace("port = 1883", 'port = "x"')))
    assert e.value.key == "broker.port"


def test_missing_required_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, MINIMAL.replace('site = "Boulevard North"', "")))
    assert e.value.key == "device.site"


def test_cross_field_rules(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, MINIMAL.replace("tls = false", "tls = true")))
    assert e.value.key == "broker.ca"
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, MINIMAL.replace('target = "scene/scene.mp4"', "")))
    assert e.value.key == "source.target"
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, MINIMAL + "\n[detection]\nroi = [10, 10, 5, 20]\n"))
    assert e.value.key == "detection.roi"


def test_tile_workers_auto_is_one_per_cpu_on_the_cpu_and_one_on_the_tpu(tmp_path: Path) -> None:
    auto = config.load(write(tmp_path, MINIMAL)).detection
    assert [auto.tile_workers(n, "cpu") for n in (1, 2, 4)] == [1, 2, 4]
    assert auto.tile_workers(4, "edgetpu") == 1
    fixed = config.load(write(tmp_path, MINIMAL + "\n[detection]\nworkers = 3\n")).detection
    assert fixed.tile_workers(1, "cpu") == 3 and fixed.tile_workers(4, "edgetpu") == 3
    for bad in ('"half"', "0"):
        with pytest.raises(ConfigError) as e:
            config.load(write(tmp_path, MINIMAL + f"\n[detection]\nworkers = {bad}\n"))
        assert e.value.key == "detection.workers"


def test_layout_auto_is_strips_on_the_cpu_and_tiles_on_the_tpu(tmp_path: Path) -> None:
    auto = config.load(write(tmp_path, MINIMAL)).detection
    assert auto.tile_layout("cpu") == "strips" and auto.tile_layout("edgetpu") == "tiles"
    tiles = config.load(write(tmp_path, MINIMAL + '\n[detection]\nlayout = "tiles"\n')).detection
    assert tiles.tile_layout("cpu") == "tiles"
    strips = config.load(write(tmp_path, MINIMAL + '\n[detection]\nlayout = "strips"\n')).detection
    assert strips.tile_layout("cpu") == "strips"
    with pytest.raises(ConfigError, match="compiled for its square") as e:
        strips.tile_layout("edgetpu")
    assert e.value.key == "detection.layout"
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path, MINIMAL + '\n[detection]\nlayout = "rows"\n'))
    assert e.value.key == "detection.layout"


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "[device\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "absent.toml")


def test_example_config_names_a_checkpoint_key_that_the_documented_command_makes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Issue 11 item 20: a device set up from the example published no signed checkpoints.
    import json
    import shutil

    from edge.audit import sign_checkpoint, verify_checkpoint
    from edge.cli import main
    from edge.watchlist.keys import load_signer

    example = Path(__file__).resolve().parents[1] / "deploy/config/edge.toml.example"
    shutil.copy(example, tmp_path / "edge.toml")
    cfg = config.load(tmp_path / "edge.toml")
    assert cfg.trust.signing_key == tmp_path / "keys" / "device.ed25519"
    # The command the example's comment gives, run as written.
    command = next(line.split("#", 1)[1].split() for line in example.read_text().splitlines()
                   if "keys generate" in line)
    argv = [a.replace("<device", "dev-0001").replace("id>", "") for a in command[1:]]
    argv = [a for a in argv if a]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        assert main(argv) == 0
    public = json.loads(capsys.readouterr().out)["public_key"]
    statement = sign_checkpoint(load_signer(cfg.trust.signing_key), "dev-0001", 1, "0" * 64,
                                "2026-12-02T00:00:00.000Z")
    verify_checkpoint(statement, bytes.fromhex(public))
