"""OpenCV-backed sources: video files, and RTSP/HTTP/V4L2 streams with reconnect.

OpenCV is the adapter here: its BGR frames become RGB at this edge, and its silent
failures (``isOpened() == False``, ``read() -> (False, None)``) become a
:class:`~edge.errors.CameraError` naming the fix, or a counted reconnect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from edge.backoff import backoff_delay
from edge.errors import CameraError
from edge.perception.types import Frame, RGBImage
from edge.sources.base import (
    EndOfSource,
    LiveSource,
    Pacer,
    ThreadedCapture,
    TimelineSource,
    utc_now,
)

log = logging.getLogger(__name__)


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` we use; fakes implement it in tests."""

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name

    def read(self) -> tuple[bool, npt.NDArray[np.uint8] | None]: ...

    def grab(self) -> bool: ...

    def get(self, prop: int) -> float: ...

    def release(self) -> None: ...


Opener = Callable[[str | int, int], Capture]


def open_capture(target: str | int, api: int) -> Capture:
    """Open with bounded open/read timeouts so a dead camera cannot hang the pipeline."""
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]
    cap: Capture = cv2.VideoCapture(target, api, params)
    return cap


def bgr_to_rgb(image: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    code = cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB
    return np.ascontiguousarray(cv2.cvtColor(image, code), dtype=np.uint8)


class VideoFileSource(TimelineSource):
    """Frames of a video file, timestamped from their position and a start time.

    ``realtime=True`` replays at the file's frame rate and drops (counts) frames the
    consumer is too slow for, like a camera would; otherwise every frame is given.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        start_time: datetime | None = None,
        fps: float | None = None,
        realtime: bool = False,
        opener: Opener = open_capture,
        pacer: Pacer | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CameraError(
                f"video file {self.path} does not exist; fix the source path in the config "
                "(or generate a scene with `edge scenario --out DIR`)"
            )
        self._cap = opener(str(self.path), cv2.CAP_ANY)
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraError(
                f"cannot decode video file {self.path}; fix: give a file OpenCV's FFmpeg "
                "backend reads (MP4 with mp4v/H.264, MJPEG AVI) or convert it with ffmpeg"
            )
        chosen = fps if fps else self._cap.get(cv2.CAP_PROP_FPS)
        if not chosen or chosen <= 0 or not np.isfinite(chosen):
            self._cap.release()
            raise CameraError(f"video file {self.path} has no frame rate; fix: set the source fps")
        super().__init__(chosen, start_time, realtime, pacer)

    def _read(self, _index: int) -> RGBImage:
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise EndOfSource
        return bgr_to_rgb(bgr)

    def __iter__(self) -> Iterator[Frame]:
        # A frame the pacer drops is grabbed, not decoded.
        return self._timeline(None, self._read, skip=lambda _i: bool(self._cap.grab()))

    def close(self) -> None:
        if not self._closed:
            super().close()
            self._cap.release()


def parse_stream_url(url: str) -> tuple[str | int, int]:
    """``/dev/videoN``, ``v4l2:N`` or ``N`` -> V4L2 device index; anything else -> FFmpeg URL."""
    text = url.strip()
    for prefix in ("v4l2:", "/dev/video"):
        if text.startswith(prefix) and text[len(prefix):].isdigit():
            return int(text[len(prefix):]), cv2.CAP_V4L2
    if text.isdigit():
        return int(text), cv2.CAP_V4L2
    return text, cv2.CAP_FFMPEG


def redact(url: str) -> str:
    """Hide credentials (rtsp://user:pass@host) in messages and logs."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


class StreamSource(LiveSource):
    """A live RTSP/HTTP stream or V4L2 device, reconnecting with backoff when lost.

    The first open must succeed (a wrong URL is a configuration error, raised at
    once); later losses are counted in ``reconnects`` and retried with exponential
    backoff up to ``backoff_max`` seconds, giving up after ``max_failures``
    consecutive failed attempts (None: never). Capture runs on its own thread
    (``threaded``) feeding a bounded buffer, so a slow consumer drops old frames.
    """

    def __init__(
        self,
        url: str,
        *,
        opener: Opener = open_capture,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        max_failures: int | None = None,
        threaded: bool = True,
        buffer_size: int = 2,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self._target, self._api = parse_stream_url(url)
        self._opener = opener
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._max_failures = max_failures
        self._clock = clock
        self._wall = wall_clock
        self._sleep = sleep
        self.reconnects = 0  # streams lost and re-opened
        self.failed_attempts = 0  # reconnect attempts that failed, in total
        self._closed = False
        self._cap: Capture | None = self._open()
        if self._cap is None:
            raise CameraError(
                f"cannot open stream {redact(url)}; fix: check the URL, credentials and network "
                "(try `ffprobe URL`), or for a USB camera use /dev/videoN and check permissions"
            )
        reported = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(reported) if reported and np.isfinite(reported) else 0.0  # 0: unknown
        self._thread = ThreadedCapture(self._frames, f"capture:{redact(url)}", buffer_size) \
            if threaded else None

    def _open(self) -> Capture | None:
        try:
            cap = self._opener(self._target, self._api)
        except Exception as exc:  # an opener error is just a failed attempt
            log.warning("opening %s failed: %s", redact(self.url), exc)
            return None
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _reopen(self) -> Capture:
        failures = 0
        while not self._closed:
            self._sleep(backoff_delay(failures, self._backoff_initial, self._backoff_max, 1.0))
            cap = self._open()
            if cap is not None:
                self.reconnects += 1
                log.warning("stream %s re-opened after %d failed attempts", redact(self.url),
                            failures)
                return cap
            failures += 1
            self.failed_attempts += 1
            if self._max_failures is not None and failures >= self._max_failures:
                raise CameraError(
                    f"stream {redact(self.url)} lost and not back after {failures} attempts; "
                    "fix: check the camera's power and network"
                )
        raise CameraError("source closed")

    def _frames(self) -> Iterator[Frame]:
        index = 0
        while not self._closed:
            cap = self._cap
            if cap is None:
                return
            ok, bgr = cap.read()
            if not ok or bgr is None:
                if self._closed:
                    return
                log.warning("stream %s lost; reconnecting", redact(self.url))
                cap.release()
                self._cap = None
                try:
                    self._cap = self._reopen()
                except CameraError:
                    if self._closed:
                        return
                    raise
                continue
            yield Frame(index=index, captured_at=self._wall(), ts=self._clock(),
                        image=bgr_to_rgb(bgr))
            index += 1

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
