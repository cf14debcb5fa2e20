"""``edge-station``: the operators' station (central side, never installed on a device).

    edge-station migrate  --config station.toml
    edge-station user add --config station.toml --name NAME --role operator|supervisor  (password on stdin)
    edge-station serve    --config station.toml
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from edge.errors import EdgeError
from station import config as config_mod
from station import db
from station.people import NAME, ROLES, create_key, hash_password, key_path
from station.store import Store

log = logging.getLogger("station")
RETENTION_EVERY_S = 600.0


def open_store(cfg: config_mod.StationConfig) -> Store:
    engine = db.connect(cfg.database)
    db.migrate(engine)
    return Store(engine, incident_window_s=cfg.incident_window_s,
                 default_retention_days=cfg.retention_days_default)


def add_user(cfg: config_mod.StationConfig, name: str, role: str, password: str) -> Path:
    """Create the account and its review key; returns the key file (its .pub goes to the authority)."""
    if NAME.fullmatch(name) is None:
        raise EdgeError(f"user name {name!r} must be 2-64 of a-z 0-9 . _ - starting with a letter")
    if role not in ROLES:
        raise EdgeError(f"role must be one of {ROLES}")
    store = open_store(cfg)
    if store.user(name) is not None:
        raise EdgeError(f"user {name} exists")
    path = key_path(cfg.keys_dir, name)
    if not path.exists():
        create_key(cfg.keys_dir, name)
    store.add_user(name, hash_password(password), role, time.time())
    store.log("-", "user_added", f"{name} ({role})", True, time.time())
    return path


def serve(cfg: config_mod.StationConfig) -> int:
    import uvicorn

    from station.ingest import Ingest
    from station.web import StationApp

    store = open_store(cfg)
    ingest = Ingest(cfg.broker, store).start()
    web = StationApp(cfg, store, wake_publisher=ingest.wake)
    stop = threading.Event()

    def housekeeping() -> None:
        while True:
            try:
                n = store.apply_retention(time.time())
                if n:
                    log.info("retention: %d crop(s) deleted", n)
            except (EdgeError, SQLAlchemyError) as exc:
                log.error("retention failed: %s", exc)
            if stop.wait(RETENTION_EVERY_S):
                return

    threading.Thread(target=housekeeping, name="station-retention", daemon=True).start()
    host, port = cfg.host_port
    log.info("station: serving http://%s:%d/", host, port)
    try:
        uvicorn.run(web.app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
    finally:
        stop.set()
        ingest.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edge-station", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("migrate", "serve"):
        s = sub.add_parser(name)
        s.add_argument("--config", type=Path, required=True)
    u = sub.add_parser("user").add_subparsers(dest="user_cmd", required=True).add_parser("add")
    u.add_argument("--config", type=Path, required=True)
    u.add_argument("--name", required=True)
    u.add_argument("--role", choices=ROLES, default="operator")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        cfg = config_mod.load(args.config)
        if args.cmd == "migrate":
            print(f"schema v{db.migrate(db.connect(cfg.database))}")
        elif args.cmd == "user":
            path = add_user(cfg, args.name, args.role, sys.stdin.readline().rstrip("\n"))
            print(f"user {args.name} added; give {path}.pub to the authority for the devices' review role")
        else:
            return serve(cfg)
    except EdgeError as exc:
        print(f"edge-station: {exc}", file=sys.stderr)
        return 2
    return 0
