"""Scene rendering and ground truth: plan + cut-outs -> frames, video, JSON.

A :class:`Scene` renders any frame index on demand, so the same scene can be a
video file (``edge scenario``) or a frame source fed straight to the pipeline
(:func:`scenario_source`, re-built from the ground-truth JSON alone: the JSON
records the spec, the plan and each cut-out's source box, so no detector runs).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.errors import ImageError
from edge.fsutil import atomic_write, fsync_dir
from edge.perception.types import RGBImage
from edge.scenario.catalogue import IDENTITIES, FaceRef
from edge.scenario.plan import Pass, ScenarioSpec, plan_passes
from edge.scenario.sprites import (
    Box,
    FaceFinder,
    Sprite,
    cut_sprite,
    faces_left_to_right,
    load_rgb,
    put_on_mask,
)

SCHEMA = "edge.scenario/1"
NOISE_BANK = 4  # distinct noise fields cycled over the frames


def source_key(ref: FaceRef) -> str:
    return ref.file if ref.index is None else f"{ref.file}#{ref.index}"


def locate_faces(spec: ScenarioSpec, faces_dir: Path, find: FaceFinder) -> dict[str, Box]:
    """Face box of every photo the scene's people are cut from (and their enrolment photos)."""
    boxes: dict[str, Box] = {}
    per_file: dict[str, list[Box]] = {}
    for name in (*spec.watchlisted, *spec.others):
        ident = IDENTITIES[name]
        for ref in (*ident.scene, *ident.enrol):
            if ref.file not in per_file:
                per_file[ref.file] = faces_left_to_right(find, load_rgb(faces_dir / ref.file))
            found = per_file[ref.file]
            if not found or (ref.index is not None and ref.index >= len(found)):
                raise ImageError(f"the detector finds {len(found)} face(s) in {ref.file}, "
                                 f"the catalogue needs face #{ref.index or 0} ({name})")
            if ref.index is None:
                x0, y0, x1, y1 = max(found, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
            else:
                x0, y0, x1, y1 = found[ref.index]
            boxes[source_key(ref)] = (float(x0), float(y0), float(x1), float(y1))
    return boxes


def _tile(texture: npt.NDArray[Any], w: int, h: int) -> npt.NDArray[Any]:
    ry, rx = math.ceil(h / texture.shape[0]), math.ceil(w / texture.shape[1])
    return np.tile(texture, (ry, rx))[:h, :w].astype(np.float32)


def _grey(faces_dir: Path, name: str) -> npt.NDArray[Any] | None:
    image = cv2.imread(str(faces_dir / name), cv2.IMREAD_GRAYSCALE)
    return None if image is None else image


def make_background(spec: ScenarioSpec, faces_dir: Path) -> RGBImage:
    """A boulevard: brick wall, a grass verge, gravel paving (testdata textures), or,
    with ``background='plain'`` or without the textures, a generated one."""
    w, h = spec.size
    wall_h, verge_h = int(0.30 * h), int(0.05 * h)
    textures = [_grey(faces_dir, n) for n in ("brick.png", "grass.png", "gravel.png")]
    out = np.empty((h, w, 3), np.float32)
    if spec.background == "boulevard" and all(t is not None for t in textures):
        brick, grass, gravel = (t for t in textures if t is not None)
        out[:wall_h] = _tile(brick, w, wall_h)[..., None] * np.array([0.95, 0.6, 0.5], np.float32)
        out[wall_h:wall_h + verge_h] = _tile(grass, w, verge_h)[..., None] \
            * np.array([0.45, 0.75, 0.35], np.float32)
        paving = _tile(gravel, w, h - wall_h - verge_h)
        paving = 0.45 * paving + 0.55 * float(paving.mean())  # calmer than raw gravel
        out[wall_h + verge_h:] = paving[..., None] * np.array([0.85, 0.82, 0.78], np.float32)
    else:
        ys = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        out[:] = (110 + 60 * ys) * np.array([0.9, 0.88, 0.85], np.float32)
        out[:wall_h] = np.array([150, 120, 105], np.float32)
        out[wall_h + verge_h:, ::160] *= 0.8  # paving joints
        out[wall_h + verge_h::90] *= 0.8
    # Darker towards the bottom, like a slightly vignetted lens.
    out *= np.linspace(1.05, 0.9, h, dtype=np.float32)[:, None, None]
    return np.clip(out, 0, 255).astype(np.uint8)


@dataclass
class Scene:
    spec: ScenarioSpec
    passes: list[Pass]
    sources: dict[str, Box]  # source key -> face box in that photo
    faces_dir: Path

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.spec.seed + 7919)
        base = make_background(self.spec, self.faces_dir).astype(np.int16)
        self._backgrounds = [
            np.clip(base + rng.normal(0, self.spec.noise, base.shape).round().astype(np.int16),
                    0, 255).astype(np.uint8) if self.spec.noise > 0 else base.astype(np.uint8)
            for _ in range(NOISE_BANK)
        ]
        cut: dict[tuple[str, str | None], Sprite] = {}
        self._sprites: list[Sprite] = []
        for p in self.passes:
            key = self.source_of(p)
            mask = IDENTITIES[p.identity].mask
            if (key, mask) not in cut:
                ref_file = key.split("#", 1)[0]  # "t1.jpg#3" -> "t1.jpg"
                photo = load_rgb(self.faces_dir / ref_file)
                if mask is not None:
                    photo = put_on_mask(photo, self.sources[key], load_rgb(self.faces_dir / mask))
                cut[(key, mask)] = cut_sprite(photo, self.sources[key])
            self._sprites.append(cut[(key, mask)].scaled(p.face_width))

    @property
    def frames(self) -> int:
        return self.spec.frames

    def source_of(self, p: Pass) -> str:
        return source_key(IDENTITIES[p.identity].scene[p.source])

    def _placement(self, i: int, frame: int) -> tuple[int, int]:
        p, sprite = self.passes[i], self._sprites[i]
        cx, cy = p.face_centre(frame)
        f = sprite.face
        return round(cx - (f[0] + f[2]) / 2), round(cy - (f[1] + f[3]) / 2)

    def face_box(self, i: int, frame: int) -> Box:
        x, y = self._placement(i, frame)
        f = self._sprites[i].face
        return (f[0] + x, f[1] + y, f[2] + x, f[3] + y)

    def render(self, frame: int) -> RGBImage:
        image = self._backgrounds[frame % NOISE_BANK].copy()
        h, w = image.shape[:2]
        # Far people first, so nearer ones are drawn over them.
        order = sorted((i for i, p in enumerate(self.passes)
                        if p.enter_frame <= frame < p.exit_frame),
                       key=lambda i: (self.passes[i].depth, i))
        for i in order:
            sprite = self._sprites[i]
            x, y = self._placement(i, frame)
            sw, sh = sprite.size
            x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + sw, w), min(y + sh, h)
            if x1 <= x0 or y1 <= y0:
                continue
            a = sprite.alpha[y0 - y:y1 - y, x0 - x:x1 - x, None]
            rgb = sprite.rgb[y0 - y:y1 - y, x0 - x:x1 - x] * 255.0
            region = image[y0:y1, x0:x1].astype(np.float32)
            image[y0:y1, x0:x1] = (a * rgb + (1.0 - a) * region + 0.5).astype(np.uint8)
        return image

    def iter_frames(self) -> Iterator[RGBImage]:
        for frame in range(self.frames):
            yield self.render(frame)

    def ground_truth(self, video: str | None = None) -> dict[str, Any]:
        w, h = self.spec.size
        passes = []
        for i, p in enumerate(self.passes):
            boxes = []
            for frame in range(max(p.enter_frame, 0), min(p.exit_frame, self.frames)):
                b = self.face_box(i, frame)
                if b[0] >= 0 and b[1] >= 0 and b[2] <= w and b[3] <= h:  # fully in view
                    boxes.append([frame, *(round(v, 1) for v in b)])
            passes.append({
                "person": p.person, "identity": p.identity, "watchlisted": p.watchlisted,
                "pass_index": p.pass_index, "source": self.source_of(p),
                "start_frame": boxes[0][0] if boxes else None,
                "end_frame": boxes[-1][0] if boxes else None,
                "face_width": round(self._sprites[i].face[2] - self._sprites[i].face[0], 1),
                "boxes": boxes, "plan": p.to_json(),
            })
        people: dict[str, dict[str, Any]] = {}
        for p in self.passes:
            people.setdefault(p.person, {
                "person": p.person, "identity": p.identity, "watchlisted": p.watchlisted,
                "enrol": [source_key(r) for r in IDENTITIES[p.identity].enrol],
                "passes": 0,
            })["passes"] += 1
        return {
            "schema": SCHEMA, "video": video, "fps": self.spec.fps, "frames": self.frames,
            "size": list(self.spec.size), "spec": self.spec.to_json(),
            "faces_dir": str(self.faces_dir),
            "sources": {k: [round(v, 2) for v in b] for k, b in self.sources.items()},
            "people": list(people.values()), "passes": passes,
        }


def build_scene(spec: ScenarioSpec, faces_dir: Path, find: FaceFinder) -> Scene:
    sources = locate_faces(spec, faces_dir, find)
    aspects: dict[str, float] = {}
    for name in (*spec.watchlisted, *spec.others):
        x0, y0, x1, y1 = sources[source_key(IDENTITIES[name].scene[0])]
        aspects[name] = (y1 - y0) / (x1 - x0)
    return Scene(spec, plan_passes(spec, aspects), sources, faces_dir)


def scene_from_truth(truth: dict[str, Any], faces_dir: Path | None = None) -> Scene:
    if truth.get("schema") != SCHEMA:
        raise ImageError(f"not a scenario ground truth (schema {truth.get('schema')!r})")
    spec = ScenarioSpec.from_json(truth["spec"])
    passes = [Pass.from_json(p["plan"]) for p in truth["passes"]]
    sources = {k: (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
               for k, b in truth["sources"].items()}
    return Scene(spec, passes, sources, Path(faces_dir or truth["faces_dir"]))


def load_truth(path: Path) -> dict[str, Any]:
    try:
        truth: dict[str, Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot read scenario ground truth {path}: {exc}") from exc
    return truth


def watchlisted_passes(truth: dict[str, Any]) -> list[dict[str, Any]]:
    """The passes that must each give exactly one alert (identity, start/end frames, boxes)."""
    return [p for p in truth["passes"] if p["watchlisted"] and p["start_frame"] is not None]


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(data, indent=1).encode(), 0o644)


def write_video(scene: Scene, path: Path) -> None:
    """MP4 (``mp4v``) of every frame, written to a temporary name then renamed."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    w, h = scene.spec.size
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), scene.spec.fps, (w, h))
    if not writer.isOpened():
        raise ImageError(f"OpenCV cannot write {path} with the mp4v codec")
    try:
        for image in scene.iter_frames():
            writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_scenario(scene: Scene, out_dir: Path, *, video: bool = True,
                   name: str = "scene") -> tuple[Path | None, Path]:
    """Write ``<name>.mp4`` (unless ``video`` is False) and ``<name>.json`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    video_path = out_dir / f"{name}.mp4" if video else None
    if video_path is not None:
        write_video(scene, video_path)
    truth_path = out_dir / f"{name}.json"
    write_json_atomic(truth_path, scene.ground_truth(video_path.name if video_path else None))
    return video_path, truth_path
