"""Image folder and in-memory sources: fixed frame rate, timeline from a start time."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import cv2

from edge.errors import CameraError
from edge.perception.types import Frame, RGBImage
from edge.sources.base import Pacer, TimelineSource
from edge.sources.video import bgr_to_rgb

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def natural_key(path: Path) -> list[int | str]:
    """``frame2.png`` before ``frame10.png``: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower()
            for part in re.split(r"(\d+)", path.name)]


class ImageFolderSource(TimelineSource):
    """Images of a folder in natural order, played at a fixed frame rate.

    An unreadable image is skipped, logged and counted in ``dropped``.
    """

    def __init__(self, folder: str | Path, *, fps: float = 15.0,
                 start_time: datetime | None = None, realtime: bool = False,
                 pacer: Pacer | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise CameraError(f"image folder {self.folder} does not exist; fix the source path")
        self.paths = sorted((p for p in self.folder.iterdir()
                             if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                            key=natural_key)
        if not self.paths:
            raise CameraError(
                f"image folder {self.folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
                "; fix the source path"
            )
        super().__init__(fps, start_time, realtime, pacer)

    def _read(self, index: int) -> RGBImage | None:
        bgr = cv2.imread(str(self.paths[index]), cv2.IMREAD_COLOR)
        if bgr is None:
            log.warning("skipping unreadable image %s", self.paths[index])
            self._dropped += 1
            return None
        return bgr_to_rgb(bgr)

    def __iter__(self) -> Iterator[Frame]:
        return self._timeline(len(self.paths), self._read)


class RenderedSource(TimelineSource):
    """Frames produced by a function of the frame index (the scenario generator).

    Nothing touches the disk: the scene is rendered as it is consumed.
    """

    def __init__(self, render: Callable[[int], RGBImage], count: int, *, fps: float,
                 start_time: datetime | None = None, realtime: bool = False,
                 pacer: Pacer | None = None) -> None:
        super().__init__(fps, start_time, realtime, pacer)
        self._render = render
        self.count = count

    def __iter__(self) -> Iterator[Frame]:
        return self._timeline(self.count, self._render)

