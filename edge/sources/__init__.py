"""Frame sources behind one port (:class:`FrameSource`): files, streams, folders, camera, scene.

:func:`open_source` builds one from a kind and a target, so the runner's config
stays declarative. Hardware (picamera2) is imported only when that kind is asked for.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from edge.errors import CameraError
from edge.perception.types import Frame
from edge.sources.base import FrameSource, LatestFrames, Pacer
from edge.sources.folder import ImageFolderSource, RenderedSource
from edge.sources.video import StreamSource, VideoFileSource

__all__ = [
    "SOURCE_KINDS",
    "Frame",
    "FrameSource",
    "ImageFolderSource",
    "LatestFrames",
    "Pacer",
    "RenderedSource",
    "StreamSource",
    "VideoFileSource",
    "open_source",
]

SOURCE_KINDS = ("file", "stream", "folder", "picamera", "scenario")


def open_source(kind: str, target: str = "", *, fps: float | None = None,
                start_time: datetime | None = None, realtime: bool = False,
                threaded: bool = True) -> FrameSource:
    """``kind`` in :data:`SOURCE_KINDS`; ``target`` is a path, URL, camera number or,
    for ``scenario``, a ground-truth JSON written by ``edge scenario`` (re-rendered
    from its spec, nothing read from video). ``threaded=False``: a live source captures
    on the caller's thread; ``edge run`` wraps it in its one capture thread."""
    if kind == "file":
        return VideoFileSource(target, fps=fps, start_time=start_time, realtime=realtime)
    if kind == "stream":
        return StreamSource(target, threaded=threaded)
    if kind == "folder":
        return ImageFolderSource(target, fps=fps or 15.0, start_time=start_time,
                                 realtime=realtime)
    if kind == "picamera":
        from edge.sources.picamera import PiCameraSource

        return PiCameraSource(camera_num=int(target or 0), fps=fps or 15.0, threaded=threaded)
    if kind == "scenario":
        from edge.sources.scenario import scenario_source

        return scenario_source(Path(target), start_time=start_time, realtime=realtime)
    raise CameraError(f"unknown source kind {kind!r}; fix: use one of {', '.join(SOURCE_KINDS)}")
