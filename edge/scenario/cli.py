"""``edge scenario``: generate a boulevard scene (video + ground truth) from the test faces."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from edge.errors import ConfigError
from edge.scenario.catalogue import DEFAULT_OTHERS, DEFAULT_WATCHLISTED, IDENTITIES

_REPO_TESTDATA = Path(__file__).resolve().parents[2] / ".cache" / "testdata"


def default_faces_dir() -> Path:
    env = os.environ.get("EDGE_TESTDATA")
    return Path(env) if env else _REPO_TESTDATA


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1920x1080, not {text!r}") from None
    return w, h


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "scenario", help="generate a test scene: real faces walking, video + ground truth",
        description=__doc__)
    p.add_argument("--out", type=Path, help="output folder (scene.mp4, scene.json)")
    p.add_argument("--name", default="scene", help="file name stem (default: scene)")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--size", type=_size, default=(1920, 1080), help="WxH (default 1920x1080)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--watchlisted", type=_names, default=DEFAULT_WATCHLISTED,
                   help="identities to mark as watchlisted (default: %(default)s)")
    p.add_argument("--others", type=_names, default=None,
                   help="other identities (default: the first --n-others of the catalogue)")
    p.add_argument("--n-others", type=int, default=5)
    p.add_argument("--face-min", type=float, default=40.0, help="face width, pixels")
    p.add_argument("--face-max", type=float, default=120.0)
    p.add_argument("--listed-min", type=float, default=None,
                   help="smallest face width of a watchlisted pass (default: --face-min)")
    p.add_argument("--speed-min", type=float, default=120.0, help="pixels per second")
    p.add_argument("--speed-max", type=float, default=240.0)
    p.add_argument("--passes", type=int, default=1, help="passes per person")
    p.add_argument("--repeat-gap", type=float, default=20.0,
                   help="seconds between passes of one person")
    p.add_argument("--background", choices=("boulevard", "plain"), default="boulevard")
    p.add_argument("--noise", type=float, default=2.0, help="sensor noise sigma, grey levels")
    p.add_argument("--faces", type=Path, default=None,
                   help="folder of test images (default: $EDGE_TESTDATA or .cache/testdata)")
    p.add_argument("--models", type=Path, default=None, help="models folder for the detector")
    p.add_argument("--no-video", action="store_true",
                   help="ground truth only (render frames later with the scenario source)")
    p.add_argument("--list", action="store_true", help="print the identity catalogue and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        for ident in IDENTITIES.values():
            walks = ", ".join(r.file if r.index is None else f"{r.file}#{r.index}"
                              for r in ident.scene)
            enrol = ", ".join(r.file if r.index is None else f"{r.file}#{r.index}"
                              for r in ident.enrol)
            print(f"{ident.name:10s} scene: {walks:28s} enrol: {enrol:18s} {ident.note}")
        return 0
    if args.out is None:
        raise ConfigError("out", "give an output folder with --out DIR")
    from edge.scenario.plan import ScenarioSpec
    from edge.scenario.render import build_scene, write_scenario
    from edge.scenario.sprites import detector_finder

    others = args.others
    if others is None:
        pool = [n for n in DEFAULT_OTHERS if n not in args.watchlisted]
        if args.n_others > len(pool):
            raise ConfigError("n_others", f"at most {len(pool)} other identities are available")
        others = tuple(pool[: args.n_others])
    spec = ScenarioSpec(
        seconds=args.seconds, fps=args.fps, size=args.size, seed=args.seed,
        watchlisted=args.watchlisted, others=others, face_min=args.face_min,
        face_max=args.face_max, listed_min=args.listed_min, speed_min=args.speed_min,
        speed_max=args.speed_max,
        passes_per_person=args.passes, repeat_gap=args.repeat_gap,
        background=args.background, noise=args.noise,
    )
    spec.validate()
    faces_dir = (args.faces or default_faces_dir()).resolve()
    scene = build_scene(spec, faces_dir, detector_finder(args.models))
    video_path, truth_path = write_scenario(scene, args.out, video=not args.no_video,
                                            name=args.name)
    for p in scene.ground_truth()["passes"]:
        mark = "WATCHLISTED" if p["watchlisted"] else ""
        print(f"{p['person']} {p['identity']:10s} frames {p['start_frame']}-{p['end_frame']} "
              f"face {p['face_width']:.0f}px {mark}")
    print(f"wrote {video_path or '(no video)'} and {truth_path}")
    return 0
