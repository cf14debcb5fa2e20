"""The frame-source port: what every camera, file or generator hands to the pipeline.

Live sources (camera, stream) capture on their own thread into a small
:class:`LatestFrames` buffer that drops the oldest frame when the consumer is
slow; file-like sources can be paced to their nominal frame rate with
:class:`Pacer`, which drops late frames instead of falling ever further behind.
Both count what they drop, so the pipeline can report it.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Protocol

from edge.errors import CameraError
from edge.perception.types import Frame, RGBImage


class FrameSource(Protocol):
    """Iterate frames until the source ends; ``dropped`` counts frames lost to a slow consumer."""

    @property
    def dropped(self) -> int: ...

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


class Pacer:
    """Releases frame *i* at ``start + i / fps`` and drops frames already a frame late.

    Used to replay files and generated scenes at camera speed: a slow consumer then
    loses frames (counted) as with a real camera instead of slowing the clock down.
    ``clock``/``sleep`` are injectable so the policy is testable without waiting.
    """

    def __init__(
        self,
        fps: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.period = 1.0 / fps
        self._clock = clock
        self._sleep = sleep
        self._start: float | None = None

    def admit(self, index: int) -> bool:
        """Wait until frame ``index`` is due; False if it is already too late (drop it)."""
        now = self._clock()
        if self._start is None:
            self._start = now - index * self.period
        due = self._start + index * self.period
        if now > due + self.period:
            return False
        if due > now:
            self._sleep(due - now)
        return True


class LatestFrames:
    """Bounded hand-off between a capture thread and the consumer.

    ``put`` never blocks: when the buffer is full the oldest frame is discarded and
    counted, so a slow consumer always gets the freshest frames and memory stays
    bounded. ``get`` blocks until a frame, the end, or an error arrives.
    """

    def __init__(self, maxsize: int = 2, lossless: bool = False) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self._frames: deque[Frame] = deque()
        self._maxsize = maxsize
        # Lossless: ``put`` waits for room instead of dropping. Only for sources that
        # can wait (a file replayed as fast as possible), never for a live camera.
        self._lossless = lossless
        self._cond = threading.Condition()
        self._ended = False
        self._error: BaseException | None = None
        self.dropped = 0

    def put(self, frame: Frame, cancel: threading.Event | None = None) -> None:
        with self._cond:
            while self._lossless and len(self._frames) >= self._maxsize:
                if cancel is not None and cancel.is_set():
                    return
                self._cond.wait(0.1)
            if len(self._frames) >= self._maxsize:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self._cond.notify_all()

    def end(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._ended = True
            self._error = error
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Frame | None:
        """Next frame, or None once the producer ended and the buffer is empty.

        Re-raises the producer's error (after the frames captured before it).
        """
        with self._cond:
            while not self._frames and not self._ended:
                if not self._cond.wait(timeout):
                    raise TimeoutError("no frame within timeout")
            if self._frames:
                frame = self._frames.popleft()
                self._cond.notify_all()
                return frame
            if self._error is not None:
                raise self._error
            return None


class ThreadedCapture:
    """Runs a blocking frame generator on a daemon thread feeding a :class:`LatestFrames`.

    ``upstream_dropped`` reports frames the producer itself lost (a pacer's late
    frames); :attr:`dropped` is the one figure of every frame lost on the way.
    """

    def __init__(self, produce: Callable[[], Iterator[Frame]], name: str, maxsize: int = 2,
                 lossless: bool = False, upstream_dropped: Callable[[], int] = lambda: 0) -> None:
        self.buffer = LatestFrames(maxsize, lossless)
        self._produce = produce
        self._upstream_dropped = upstream_dropped
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def dropped(self) -> int:
        return self.buffer.dropped + self._upstream_dropped()

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            for frame in self._produce():
                if self._stop.is_set():
                    break
                self.buffer.put(dataclasses.replace(frame, received=time.monotonic()), self._stop)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            error = exc
        finally:
            self.buffer.end(error)

    def frames(self) -> Iterator[Frame]:
        if not self._started:
            self._started = True
            self._thread.start()
        while True:
            frame = self.buffer.get()
            if frame is None:
                return
            yield frame

    def stop(self, join_timeout: float = 5.0) -> None:
        self._stop.set()
        if self._started and threading.current_thread() is not self._thread:
            self._thread.join(join_timeout)


class LiveSource(ABC):
    """A camera or stream read by ``_frames`` until closed, through ``_thread`` when threaded.

    A subclass sets ``_closed`` (False) and ``_thread`` (a :class:`ThreadedCapture` over
    ``_frames``, or None to read on the consumer's thread) when it opens the device, and
    hands the device back in ``_release``, which ``close`` calls once, after stopping the thread.
    """

    _closed: bool
    _thread: ThreadedCapture | None

    @abstractmethod
    def _frames(self) -> Iterator[Frame]: ...

    @abstractmethod
    def _release(self) -> None: ...

    @property
    def dropped(self) -> int:
        return self._thread.buffer.dropped if self._thread is not None else 0

    def __iter__(self) -> Iterator[Frame]:
        try:
            yield from (self._thread.frames() if self._thread is not None else self._frames())
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._thread.stop()
        self._release()


class EndOfSource(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a timeline's ``render`` when the source has no more frames."""


class TimelineSource:
    """Frame i is captured at ``start + i / fps``: files, folders and rendered scenes.

    ``_timeline(count, render, skip)`` paces (when ``realtime``) by dropping late
    frames and counting them; ``skip(i)`` moves past a dropped frame cheaply (a
    video grabs without decoding) and returns False at the end; ``render(i)``
    returns the image, None for an unreadable frame (skipped), or raises
    :class:`EndOfSource`.
    """

    def __init__(self, fps: float, start_time: datetime | None, realtime: bool,
                 pacer: Pacer | None) -> None:
        if not fps or fps <= 0 or math.isnan(fps):
            raise CameraError(f"frame rate must be positive, got {fps}; fix: set the source fps")
        self.fps = float(fps)
        self.start_time = start_time or utc_now()
        self._pacer = pacer or (Pacer(self.fps) if realtime else None)
        self._dropped = 0
        self._closed = False

    @property
    def dropped(self) -> int:
        return self._dropped

    def close(self) -> None:
        self._closed = True

    def _timeline(self, count: int | None, render: Callable[[int], RGBImage | None],
                  skip: Callable[[int], bool] | None = None) -> Iterator[Frame]:
        index = 0
        try:
            while not self._closed and (count is None or index < count):
                if self._pacer is not None and not self._pacer.admit(index):
                    if skip is not None and not skip(index):
                        return
                    self._dropped += 1
                    index += 1
                    continue
                try:
                    image = render(index)
                except EndOfSource:
                    return
                if image is not None:
                    offset = index / self.fps
                    yield Frame(index=index, ts=offset, image=image,
                                captured_at=self.start_time + timedelta(seconds=offset))
                index += 1
        finally:
            self.close()
