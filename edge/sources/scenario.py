"""A generated boulevard scene as a frame source (``[source] kind = "scenario"``).

The scene is re-rendered in memory from the ground-truth JSON that ``edge scenario``
wrote; nothing is read from video. The scene generator (``edge.scenario``) knows
nothing about sources; only this adapter knows both.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from edge.scenario.render import load_truth, scene_from_truth
from edge.sources.folder import RenderedSource


def scenario_source(truth_path: Path, *, start_time: datetime | None = None,
                    realtime: bool = False, faces_dir: Path | None = None) -> RenderedSource:
    """Frames of a generated scene, rendered in memory from its ground-truth JSON."""
    scene = scene_from_truth(load_truth(truth_path), faces_dir)
    return RenderedSource(scene.render, scene.frames, fps=scene.spec.fps,
                          start_time=start_time, realtime=realtime)
