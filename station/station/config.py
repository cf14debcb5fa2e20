"""The station's TOML configuration, validated at start with errors naming the key.

```toml
[station]
database = "sqlite:////var/lib/edge-station/station.db"   # or postgresql://user@host/db
listen = "127.0.0.1:8080"
state_dir = "/var/lib/edge-station"   # cookie secret, operators' review keys
secure_cookies = true                 # false only for plain-HTTP local demos
incident_window_s = 300
quiet_after_s = 45                    # flagged quiet after this long without a message
references_dir = ""                   # optional: enrolment photos <subject_ref>.jpg
bundles_dir = ""                      # optional: the authority's signed bundles (entry details)
trust_file = ""                       # the trust root that verifies them (needed with bundles_dir)

[broker]
host = "broker.example"
port = 8883
client_id = "edge-station"
prefix = "edge"
session_expiry_days = 7
tls = true
ca_file = ""
cert_file = ""
key_file = ""
```
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import ConfigError


@dataclass(frozen=True)
class BrokerConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "edge-station"
    prefix: str = "edge"
    session_expiry_days: int = 7
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


@dataclass(frozen=True)
class StationConfig:
    database: str
    state_dir: Path
    listen: str = "127.0.0.1:8080"
    secure_cookies: bool = True
    incident_window_s: float = 300.0
    quiet_after_s: float = 45.0  # devices publish status every 30 s by default
    retention_days_default: int = 31
    references_dir: str = ""
    bundles_dir: str = ""
    trust_file: str = ""
    broker: BrokerConfig = BrokerConfig()

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host or "127.0.0.1", int(port)

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "operator-keys"


def _section(obj: dict[str, Any], name: str, cls: type[Any], path: str, **fixed: Any) -> Any:
    fields = cls.__dataclass_fields__
    values: dict[str, Any] = dict(fixed)
    for k, v in obj.items():
        if k not in fields or k in fixed:
            raise ConfigError(f"{path}:{name}.{k}", "unknown key")
        want = fields[k].type
        if want in ("int",) and not (isinstance(v, int) and not isinstance(v, bool)):
            raise ConfigError(f"{path}:{name}.{k}", "must be an integer")
        if want in ("float",) and not (isinstance(v, int | float) and not isinstance(v, bool)):
            raise ConfigError(f"{path}:{name}.{k}", "must be a number")
        if want in ("str", "Path") and not isinstance(v, str):
            raise ConfigError(f"{path}:{name}.{k}", "must be a string")
        if want == "bool" and not isinstance(v, bool):
            raise ConfigError(f"{path}:{name}.{k}", "must be true or false")
        values[k] = Path(v) if want == "Path" else float(v) if want == "float" else v
    return cls(**values)


def load(path: Path) -> StationConfig:
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read the station config: {exc}") from exc
    unknown = set(doc) - {"station", "broker"}
    if unknown:
        raise ConfigError(f"{path}:{sorted(unknown)[0]}", "unknown section")
    st = dict(doc.get("station", {}))
    for key in ("database", "state_dir"):
        if key not in st:
            raise ConfigError(f"{path}:station.{key}", "missing")
    broker = _section(doc.get("broker", {}), "broker", BrokerConfig, str(path))
    cfg: StationConfig = _section(st, "station", StationConfig, str(path), broker=broker)
    if cfg.bundles_dir and not cfg.trust_file:
        raise ConfigError(f"{path}:station.trust_file", "needed to verify the bundles in station.bundles_dir")
    try:
        cfg.host_port  # noqa: B018 - validates listen
    except ValueError as exc:
        raise ConfigError(f"{path}:station.listen", "must be HOST:PORT") from exc
    return cfg
