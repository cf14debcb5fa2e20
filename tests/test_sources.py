"""Frame sources: timestamps, drop counting, clean EOF, clear errors, stream reconnects."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import CameraError
from edge.perception.types import Frame
from edge.sources import ImageFolderSource, LatestFrames, Pacer, StreamSource, VideoFileSource
from edge.sources.base import ThreadedCapture
from edge.sources.folder import RenderedSource
from edge.sources.video import parse_stream_url

START = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def coloured(i: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    """A BGR frame: red, with the frame number as the green level."""
    img = np.zeros((size[1], size[0], 3), np.uint8)
    img[..., 2] = 200
    img[..., 1] = (10 * i) % 250
    return img


def write_video(path: Path, n: int, fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (160, 120))
    assert writer.isOpened()
    for i in range(n):
        writer.write(coloured(i))
    writer.release()
    return path


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


# --- video file --------------------------------------------------------------------


def test_video_file_timestamps_rgb_and_clean_eof(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", 12, fps=10.0)
    src = VideoFileSource(path, start_time=START)
    frames = list(src)
    assert [f.index for f in frames] == list(range(12))
    assert frames[5].captured_at == START + timedelta(seconds=0.5)
    assert frames[5].ts == pytest.approx(0.5)
    r, g, b = frames[7].image[60, 80].astype(int)
    assert r > 150 and b < 60 and abs(g - 70) < 12  # RGB order, not OpenCV's BGR
    assert src.dropped == 0
    assert list(src) == []  # closed at EOF; iterating again gives nothing, no error


def test_video_file_realtime_drops_frames_for_a_slow_consumer(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", 30, fps=10.0)
    clock = FakeClock()
    src = VideoFileSource(path, start_time=START, pacer=Pacer(10.0, clock, clock.sleep))
    got = []
    for frame in src:
        got.append(frame.index)
        clock.t += 0.25  # the consumer needs 2.5 frame periods per frame
    assert src.dropped > 0
    assert len(got) + src.dropped == 30
    assert got == sorted(got) and got[0] == 0


@pytest.mark.parametrize("name,content", [("missing.mp4", None), ("garbage.mp4", b"not video")])
def test_unreadable_video_raises_camera_error_with_fix(tmp_path: Path, name: str,
                                                       content: bytes | None) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CameraError, match="fix") as err:
        VideoFileSource(path)
    assert str(path) in str(err.value)


# --- image folder ------------------------------------------------------------------


def test_image_folder_natural_order_fixed_fps_and_bad_files(tmp_path: Path) -> None:
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), coloured(i))
    (tmp_path / "frame3.png").write_bytes(b"broken")
    (tmp_path / "notes.txt").write_text("ignored")
    src = ImageFolderSource(tmp_path, fps=4.0, start_time=START)
    frames = list(src)
    greens = [int(f.image[0, 0, 1]) for f in frames]
    assert greens == [10, 20, 100]  # frame1, frame2, frame10 (frame3 unreadable)
    assert [f.captured_at for f in frames] == [START + timedelta(seconds=s)
                                               for s in (0.0, 0.25, 0.75)]
    assert src.dropped == 1


def test_empty_or_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="holds no images"):
        ImageFolderSource(tmp_path)
    with pytest.raises(CameraError, match="does not exist"):
        ImageFolderSource(tmp_path / "nope")


def test_rendered_source_counts_and_times_frames() -> None:
    src = RenderedSource(lambda i: np.full((4, 4, 3), i, np.uint8), 5, fps=5.0, start_time=START)
    frames = list(src)
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 1, 2, 3, 4]
    assert frames[-1].captured_at == START + timedelta(seconds=0.8)


# --- live streams (fake capture at the camera edge) --------------------------------


class FakeCapture:
    """Gives ``frames`` frames then reports the stream lost (read -> False)."""

    def __init__(self, frames: int, opened: bool = True, delay: float = 0.0) -> None:
        self.left = frames
        self.opened = opened
        self.released = False
        self.delay = delay

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.delay:
            time.sleep(self.delay)
        if self.left <= 0 or self.released:
            return False, None
        self.left -= 1
        return True, coloured(0)

    def grab(self) -> bool:
        return self.read()[0]

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


class FakeOpener:
    """Each call hands out the next planned capture (None: the open attempt fails)."""

    def __init__(self, plan: list[FakeCapture | None]) -> None:
        self.plan = plan
        self.calls: list[tuple[str | int, int]] = []

    def __call__(self, target: str | int, api: int) -> FakeCapture:
        self.calls.append((target, api))
        cap = self.plan.pop(0) if self.plan else None
        return cap if cap is not None else FakeCapture(0, opened=False)


def test_stream_reconnects_with_backoff_and_keeps_counting() -> None:
    clock = FakeClock()
    opener = FakeOpener([FakeCapture(3), None, None, FakeCapture(2)])
    src = StreamSource("rtsp://cam/stream", opener=opener, threaded=False, sleep=clock.sleep,
                       max_failures=5, backoff_initial=0.5)
    frames: list[Frame] = []
    with pytest.raises(CameraError, match="not back after 5 attempts"):
        for f in src:
            frames.append(f)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert src.reconnects == 1
    # 3 frames, lost: 2 failed attempts then success; 2 frames, lost: 5 failed attempts.
    assert clock.sleeps == [0.5, 1.0, 2.0, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert src.failed_attempts == 7


def test_stream_backoff_is_capped() -> None:
    clock = FakeClock()
    opener = FakeOpener([FakeCapture(1), *[None] * 8, FakeCapture(1)])
    src = StreamSource("/dev/video0", opener=opener, threaded=False, sleep=clock.sleep,
                       backoff_initial=1.0, backoff_max=4.0, max_failures=20)
    frames: list[Frame] = []
    with pytest.raises(CameraError):
        frames.extend(src)
    assert len(frames) == 2
    assert max(clock.sleeps) == 4.0
    assert opener.calls[0] == (0, cv2.CAP_V4L2)


def test_unreachable_stream_raises_with_fix_and_hides_password() -> None:
    opener = FakeOpener([None])
    with pytest.raises(CameraError, match="fix") as err:
        StreamSource("rtsp://admin:secret@10.0.0.9/live", opener=opener)
    assert "secret" not in str(err.value) and "10.0.0.9" in str(err.value)


def test_real_opencv_on_a_dead_url_raises_camera_error() -> None:
    with pytest.raises(CameraError):
        StreamSource("rtsp://127.0.0.1:9/none")


def test_threaded_stream_drops_oldest_for_a_slow_consumer() -> None:
    opener = FakeOpener([FakeCapture(60, delay=0.002)])
    src = StreamSource("rtsp://cam/x", opener=opener, buffer_size=2, max_failures=1,
                       backoff_initial=0.01)
    got: list[int] = []
    with pytest.raises(CameraError):
        for f in src:
            got.append(f.index)
            time.sleep(0.02)
    assert src.dropped > 0
    assert got == sorted(got) and len(got) + src.dropped == 60


def test_close_from_the_consumer_stops_the_capture_thread() -> None:
    opener = FakeOpener([FakeCapture(10**9, delay=0.001)])
    src = StreamSource("rtsp://cam/y", opener=opener)
    it = iter(src)
    next(it)
    src.close()
    alive = [t for t in threading.enumerate() if t.name.startswith("capture:rtsp://cam/y")]
    assert not alive


def test_parse_stream_url() -> None:
    assert parse_stream_url("/dev/video2") == (2, cv2.CAP_V4L2)
    assert parse_stream_url("v4l2:1") == (1, cv2.CAP_V4L2)
    assert parse_stream_url("rtsp://h/s") == ("rtsp://h/s", cv2.CAP_FFMPEG)


def test_latest_frames_buffer_is_bounded_and_counts_drops() -> None:
    buf = LatestFrames(maxsize=2)
    for i in range(5):
        buf.put(Frame(i, START, float(i), np.zeros((1, 1, 3), np.uint8)))
    buf.end()
    out = []
    while (f := buf.get()) is not None:
        out.append(f.index)
    assert out == [3, 4] and buf.dropped == 3


def test_the_capture_threads_drop_figure_counts_every_drop() -> None:
    """Frames lost upstream (a pacer) and in the hand-off buffer are one figure."""
    frames = [Frame(i, datetime(2026, 1, 1, tzinfo=UTC), i / 15, np.zeros((2, 2, 3), np.uint8))
              for i in range(5)]
    cap = ThreadedCapture(lambda: iter(frames), "t", maxsize=1, upstream_dropped=lambda: 3)
    cap.buffer.put(frames[0])
    cap.buffer.put(frames[1])  # a full buffer drops the oldest
    assert cap.buffer.dropped == 1 and cap.dropped == 1 + 3
