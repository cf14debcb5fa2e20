"""Raspberry Pi camera through picamera2 (Raspberry Pi OS package, imported lazily).

Two streams from one request: ``main`` in ``BGR888`` (whose numpy layout is R, G, B
per pixel, i.e. our RGB) for the face crops, and a small ``lores`` ``YUV420``
stream whose Y plane is the grey image for the motion gate. Timestamps come from
the request's ``SensorTimestamp`` (ns on the kernel's monotonic clock), mapped to
UTC through the current offset between the two clocks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from edge.errors import CameraError, CameraStackError
from edge.perception.types import Frame
from edge.sources.base import LiveSource, ThreadedCapture, utc_now


class PiCameraSource(LiveSource):
    """Capture thread over ``Picamera2.capture_request()``; drops oldest when behind."""

    def __init__(
        self,
        *,
        camera_num: int = 0,
        size: tuple[int, int] = (1920, 1080),
        lores_size: tuple[int, int] = (320, 180),
        fps: float = 15.0,
        buffer_size: int = 2,
        threaded: bool = True,
        wall_clock: Callable[[], datetime] = utc_now,
        mono_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        try:
            from picamera2 import Picamera2
        except (ImportError, ValueError) as exc:
            # simplejpeg raises ValueError ("numpy.dtype size changed") when the venv
            # holds another numpy than the one apt built picamera2 against.
            from edge.stack import FIX, is_numpy_abi_error

            if is_numpy_abi_error(exc):
                raise CameraStackError(
                    f"picamera2 does not import with this numpy ({exc}): not a camera problem; "
                    f"fix: {FIX}"
                ) from exc
            raise CameraError(
                "picamera2 is not importable; fix: `sudo apt install python3-picamera2` and "
                "create the venv with --system-site-packages (the installer does this)"
            ) from exc
        self.size = size
        self.lores_size = lores_size
        self.fps = fps
        self._wall = wall_clock
        self._mono_ns = mono_ns
        self._closed = False
        try:
            self._cam: Any = Picamera2(camera_num)
            config = self._cam.create_video_configuration(
                main={"size": size, "format": "BGR888"},
                lores={"size": lores_size, "format": "YUV420"},
                controls={"FrameRate": fps},
            )
            self._cam.configure(config)
            self._cam.start()
        except Exception as exc:
            raise CameraError(
                f"cannot start camera {camera_num}: {exc}; fix: check the ribbon cable, run "
                "`rpicam-hello --list-cameras`, and stop any other process using the camera"
            ) from exc
        self._thread = ThreadedCapture(self._frames, f"picamera{camera_num}", buffer_size) \
            if threaded else None

    def _frames(self) -> Iterator[Frame]:
        index = 0
        lw, lh = self.lores_size
        while not self._closed and not (self._thread is not None and self._thread.stopping):
            request = self._cam.capture_request()
            try:
                metadata = request.get_metadata()
                rgb = np.ascontiguousarray(request.make_array("main"))
                yuv = request.make_array("lores")
            finally:
                request.release()  # hand the buffer back to libcamera at once
            grey = np.ascontiguousarray(yuv[:lh, :lw])  # Y plane, stride padding cut
            sensor_ns = int(metadata.get("SensorTimestamp", self._mono_ns()))
            age = (self._mono_ns() - sensor_ns) / 1e9
            yield Frame(index=index, captured_at=self._wall() - timedelta(seconds=max(age, 0.0)),
                        ts=sensor_ns / 1e9, image=rgb, lores=grey)
            index += 1

    def _release(self) -> None:
        try:
            self._cam.stop()
            self._cam.close()
        except Exception as exc:
            raise CameraError(f"camera did not close cleanly: {exc}") from exc
