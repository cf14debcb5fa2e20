"""Scene plan: who walks where and when. Pure, seeded, no images.

Each person makes one or more passes across the frame at a random depth: a far
person is higher in the frame with a smaller face, a near one lower and larger,
so face size and position follow a simple perspective. Passes are placed so
that no face is ever hidden behind a nearer person, and the passes of one person
are at least ``repeat_gap`` seconds apart (so a per-subject cooldown shorter
than that never merges two real passes).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import ConfigError
from edge.scenario.catalogue import DEFAULT_OTHERS, DEFAULT_WATCHLISTED, IDENTITIES
from edge.scenario.sprites import ABOVE, BELOW, SIDE

# Face centre height as a fraction of the frame height, far (smallest) to near.
Y_FAR, Y_NEAR = 0.42, 0.72
BOB = 0.03  # vertical walking bob, in face heights
BOB_PERIOD = 1.0  # seconds per step cycle


@dataclass(frozen=True)
class ScenarioSpec:
    seconds: float = 60.0
    fps: float = 15.0
    size: tuple[int, int] = (1920, 1080)
    seed: int = 1
    watchlisted: tuple[str, ...] = DEFAULT_WATCHLISTED
    others: tuple[str, ...] = DEFAULT_OTHERS[:5]
    face_min: float = 40.0
    face_max: float = 120.0
    # Smallest face width of a watchlisted pass (None: face_min). A device counts faces
    # narrower than its model card's reliable width and does not match them, so a scene
    # that expects an alert per listed pass plans listed faces at or above that width.
    listed_min: float | None = None
    speed_min: float = 120.0  # pixels per second
    speed_max: float = 240.0
    passes_per_person: int = 1
    repeat_gap: float = 20.0  # seconds between two passes of the same person
    background: str = "boulevard"  # or "plain"
    noise: float = 2.0  # sensor noise, grey levels (sigma)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return round(self.seconds * self.fps)

    def validate(self) -> None:
        w, h = self.size
        checks: list[tuple[str, bool, str]] = [
            ("seconds", self.seconds > 0, "must be positive"),
            ("fps", self.fps > 0, "must be positive"),
            ("size", w >= 320 and h >= 240, "must be at least 320x240"),
            ("face_min", 16 <= self.face_min <= self.face_max,
             "must be >= 16 and <= face_max"),
            ("face_max", self.face_max * (1 + ABOVE + BELOW) <= h * (1 - Y_NEAR) * 2.5,
             "too large for the frame height"),
            ("listed_min", self.listed_min is None or self.face_min <= self.listed_min <= self.face_max,
             "must be between face_min and face_max"),
            ("speed_min", 0 < self.speed_min <= self.speed_max, "must be > 0 and <= speed_max"),
            ("passes_per_person", self.passes_per_person >= 1, "must be >= 1"),
            ("background", self.background in ("boulevard", "plain"),
             "must be 'boulevard' or 'plain'"),
            ("noise", self.noise >= 0, "must be >= 0"),
        ]
        for key, ok, why in checks:
            if not ok:
                raise ConfigError(key, why)
        names = [*self.watchlisted, *self.others]
        for name in names:
            if name not in IDENTITIES:
                raise ConfigError("watchlisted" if name in self.watchlisted else "others",
                                  f"unknown identity {name!r}; known: "
                                  f"{', '.join(sorted(IDENTITIES))}")
        if len(set(names)) != len(names):
            raise ConfigError("others", "an identity is listed twice")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        d["watchlisted"] = list(self.watchlisted)
        d["others"] = list(self.others)
        return d

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ScenarioSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(sorted(unknown)[0], "unknown scenario key")
        d = dict(raw)
        if "size" in d:
            d["size"] = (int(d["size"][0]), int(d["size"][1]))
        for key in ("watchlisted", "others"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


@dataclass(frozen=True)
class Pass:
    """One walk of one person across the frame; geometry of the face centre."""

    person: str  # "p01"...
    identity: str
    watchlisted: bool
    pass_index: int  # 0-based, per person
    source: int  # which of the identity's scene photos
    depth: float  # 0 far .. 1 near
    face_width: float  # pixels
    face_height: float
    direction: int  # +1 left to right, -1 right to left
    speed: float  # pixels per frame
    enter_frame: int  # the cut-out starts to enter the frame
    exit_frame: int  # the cut-out has fully left (exclusive)
    face_y: float  # face centre height, before the walking bob
    frame_w: float = 0.0  # frame width, pixels
    bob_frames: float = 15.0  # frames per step cycle

    def face_centre(self, frame: float) -> tuple[float, float]:
        width = 2 * SIDE * self.face_width
        x0 = -width / 2 if self.direction > 0 else self.frame_w + width / 2
        x = x0 + self.direction * self.speed * (frame - self.enter_frame)
        y = self.face_y + BOB * self.face_height * math.sin(2 * math.pi * frame / self.bob_frames)
        return x, y

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Pass:
        return cls(**raw)


def _rects(p: Pass, frames: npt.NDArray[Any], face_only: bool) -> npt.NDArray[Any]:
    """(N, 4) face boxes (grown by 30%) or whole cut-out rectangles of ``p`` at ``frames``."""
    width = 2 * SIDE * p.face_width
    x = (-width / 2 if p.direction > 0 else p.frame_w + width / 2) \
        + p.direction * p.speed * (frames - p.enter_frame)
    y = p.face_y + BOB * p.face_height * np.sin(2 * np.pi * frames / p.bob_frames)
    fw, fh = p.face_width, p.face_height
    if face_only:
        hw, hh = 0.65 * fw, 0.65 * fh
        return np.stack([x - hw, y - hh, x + hw, y + hh], axis=1)
    return np.stack([x - SIDE * fw, y - fh / 2 - ABOVE * fh, x + SIDE * fw,
                     y + fh / 2 + BELOW * fh], axis=1)


def _hides(far: Pass, near: Pass) -> bool:
    lo, hi = max(far.enter_frame, near.enter_frame), min(far.exit_frame, near.exit_frame)
    if lo >= hi:
        return False
    frames = np.arange(lo, hi, dtype=np.float64)
    a, b = _rects(far, frames, True), _rects(near, frames, False)
    overlap = (np.minimum(a[:, 2], b[:, 2]) > np.maximum(a[:, 0], b[:, 0])) & \
              (np.minimum(a[:, 3], b[:, 3]) > np.maximum(a[:, 1], b[:, 1]))
    return bool(overlap.any())


def conflicts(p: Pass, q: Pass) -> bool:
    """True if either face is ever covered by the other (nearer) person's cut-out."""
    far, near = (p, q) if p.depth <= q.depth else (q, p)
    return _hides(far, near) or (p.depth == q.depth and _hides(near, far))


def plan_passes(spec: ScenarioSpec, aspects: dict[str, float], *, attempts: int = 400
                ) -> list[Pass]:
    """Place every pass; ``aspects`` gives each identity's face height/width ratio."""
    spec.validate()
    rng = np.random.default_rng(spec.seed)
    w, h = spec.size
    n = spec.frames
    placed: list[Pass] = []
    people = [(name, True) for name in spec.watchlisted] + [(name, False) for name in spec.others]
    for number, (name, listed) in enumerate(people, start=1):
        person = f"p{number:02d}"
        not_before = 0
        sources = len(IDENTITIES[name].scene)
        # Listed people walk no farther than the depth where their face is listed_min wide.
        nearest = 0.0
        if listed and spec.listed_min is not None and spec.face_max > spec.face_min:
            nearest = (spec.listed_min - spec.face_min) / (spec.face_max - spec.face_min)
        for k in range(spec.passes_per_person):
            for _ in range(attempts):
                depth = float(rng.uniform(nearest, 1))
                fw = spec.face_min + depth * (spec.face_max - spec.face_min)
                speed = float(rng.uniform(spec.speed_min, spec.speed_max)) / spec.fps
                duration = math.ceil((w + 2 * SIDE * fw) / speed)
                latest = n - duration
                if latest < not_before:
                    continue
                start = int(rng.integers(not_before, latest + 1))
                candidate = Pass(
                    person=person, identity=name, watchlisted=listed, pass_index=k,
                    source=(k + number) % sources, depth=round(depth, 4),
                    face_width=fw, face_height=fw * aspects.get(name, 1.0),
                    direction=1 if rng.uniform() < 0.5 else -1, speed=speed,
                    enter_frame=start, exit_frame=start + duration,
                    face_y=h * (Y_FAR + depth * (Y_NEAR - Y_FAR)),
                    frame_w=float(w), bob_frames=BOB_PERIOD * spec.fps,
                )
                if not any(conflicts(candidate, other) for other in placed):
                    placed.append(candidate)
                    not_before = candidate.exit_frame + math.ceil(spec.repeat_gap * spec.fps)
                    break
            else:
                raise ConfigError(
                    "seconds", f"cannot fit pass {k + 1} of {name} into {spec.seconds:g} s "
                    "without hiding a face; raise --seconds, lower the number of people or "
                    "passes, or raise the speeds")
    return placed
