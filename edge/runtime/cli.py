"""``edge run --config /etc/edge/edge.toml``: the appliance's main job."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from edge import config


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("run", help="run recognition: camera to alerts on the broker")
    p.add_argument("--config", type=Path, default=Path("/etc/edge/edge.toml"))
    p.add_argument("--check-config", action="store_true", help="validate the config and exit")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    if args.check_config:
        print(f"{args.config}: OK")
        return 0
    logging.getLogger().setLevel(logging.INFO)
    from edge.runtime.runner import Runner  # models and threads only when we really run

    return Runner(cfg).run()
