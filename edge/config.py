"""The device configuration (``/etc/edge/edge.toml``), validated once at start.

The defaults below are the only ones: a component is built from its own section
(``wiring.build_device``), with keyword arguments named like the section's keys
where it can, and a component's own keyword defaults refer back to these fields
(e.g. ``IoUTracker(iou=TrackingConfig.iou)``, ``LinkConfig.reconnect_max_s``).
Relative paths are resolved against the config file's folder, so a config and its
keys can travel together.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge.configschema import build, check_range
from edge.delivery.topics import Topics
from edge.errors import ConfigError
from edge.perception.imageio import DEFAULT_MAX_PIXELS
from edge.perception.manifest import DEFAULT_EMBEDDER

DEFAULT_PATH = Path("/etc/edge/edge.toml")


@dataclass(frozen=True)
class DeviceConfig:
    id: str
    camera_id: str
    site: str
    fleet_id: str = "default"

    def validate(self, prefix: str) -> None:
        for name in ("id", "camera_id"):
            value = getattr(self, name)
            if not value or "/" in value or "+" in value or "#" in value:
                raise ConfigError(f"{prefix}.{name}", "must be non-empty and free of '/', '+', '#'")


@dataclass(frozen=True)
class SourceConfig:
    # file: a video file; stream: an RTSP URL or V4L2 device; folder: images;
    # picamera: the Pi camera (target = camera number); scenario: a ground truth
    # JSON written by `edge scenario`, re-rendered frame by frame.
    kind: Literal["scenario", "file", "stream", "folder", "picamera"] = "picamera"
    target: str = ""
    fps: float | None = None
    realtime: bool = True  # pace files and scenarios at their frame rate
    # Frames buffered between capture and inference; the oldest is dropped. Three absorb
    # the crowded bursts of `make bench`'s live scene (two dropped 2-9 frames of 1800 there,
    # three none) for at most one frame time more latency.
    queue: int = 3

    def validate(self, prefix: str) -> None:
        if self.kind != "picamera" and not self.target:
            raise ConfigError(f"{prefix}.target", f"is required for kind = '{self.kind}'")
        if self.fps is not None and self.fps <= 0:
            raise ConfigError(f"{prefix}.fps", "must be > 0")
        if self.queue < 1:
            raise ConfigError(f"{prefix}.queue", "must be >= 1")


@dataclass(frozen=True)
class ModelsConfig:
    dir: Path | None = None  # default: the models shipped with the firmware
    detector: Literal["blazeface_full_range", "blazeface_short_range"] = "blazeface_full_range"
    detector_variant: Literal["auto", "float32", "fp16", "int8"] = "auto"
    embedder: str = DEFAULT_EMBEDDER  # recogniser family in the models manifest
    embedder_variant: Literal["auto", "float32", "int8"] = "auto"
    edgetpu: bool = True  # try libedgetpu when it loads
    # Threads inside one model's interpreter. One: the detector's parallelism is its tile
    # workers ([detection] workers), which do not stall in lockstep when the capture thread
    # takes a core, as the XNNPACK threads of one small model do (`make bench` compares both).
    threads: int = 1

    def validate(self, prefix: str) -> None:
        check_range(prefix, "threads", self.threads, 1, 64)


@dataclass(frozen=True)
class DetectionConfig:
    roi: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1; None = whole frame
    tile: int = 384  # pixels of the frame per tile (resized to the detector's input)
    overlap: int = 128  # pixels shared by neighbouring tiles: more than the largest face
    score_threshold: float | None = None  # None: each model variant's calibrated threshold
    motion: bool = True
    motion_threshold: float = 0.004  # share of changed pixels that wakes a tile
    # Detector instances that run a frame's tiles in parallel, or "auto": one per CPU the
    # process may use on the CPU backend, one on the Edge TPU (a single device serialises).
    workers: int | Literal["auto"] = "auto"
    # "tiles": squares of `tile` pixels; "strips": one wide strip per worker at the same
    # scale, one model call each (CPU only); "auto": strips on the CPU, tiles on the Edge TPU.
    layout: Literal["auto", "tiles", "strips"] = "auto"

    def validate(self, prefix: str) -> None:
        if isinstance(self.workers, int):
            check_range(prefix, "workers", self.workers, 1, 64)
        if not 0 <= self.overlap < self.tile // 2:
            raise ConfigError(f"{prefix}.overlap", "must be in [0, tile / 2)")
        if self.tile < 64:
            raise ConfigError(f"{prefix}.tile", "must be >= 64 pixels")
        if self.roi is not None and (self.roi[2] <= self.roi[0] or self.roi[3] <= self.roi[1]):
            raise ConfigError(f"{prefix}.roi", "must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0")
        check_range(prefix, "score_threshold", self.score_threshold, 0.0, 1.0)
        check_range(prefix, "motion_threshold", self.motion_threshold, 0.0, 1.0)

    def tile_workers(self, cpus: int, backend: str) -> int:
        """How many detectors run tiles, given the CPUs this process may use and the backend."""
        if isinstance(self.workers, int):
            return self.workers
        return max(1, cpus) if backend == "cpu" else 1

    def tile_layout(self, backend: str) -> Literal["tiles", "strips"]:
        """How the region is cut for the detector on this backend (see ``layout``)."""
        if self.layout == "auto":
            return "strips" if backend == "cpu" else "tiles"
        if self.layout == "strips" and backend != "cpu":
            raise ConfigError("detection.layout", f"strips need the CPU detector; the {backend} "
                              "model is compiled for its square input (use \"tiles\" or \"auto\")")
        return self.layout


@dataclass(frozen=True)
class TrackingConfig:
    iou: float = 0.3
    max_missed: int = 8
    embed_every: int = 3  # frames between embeddings of one track
    max_embeds: int = 8  # per track
    min_quality: float = 0.3
    k: int = 2  # consistent matches ...
    n: int = 4  # ... out of the last n embeddings
    cooldown_s: float = 30.0  # per subject

    def validate(self, prefix: str) -> None:
        check_range(prefix, "iou", self.iou, 0.0, 1.0)
        check_range(prefix, "max_missed", self.max_missed, 0)
        check_range(prefix, "embed_every", self.embed_every, 1)
        check_range(prefix, "max_embeds", self.max_embeds, 1)
        check_range(prefix, "min_quality", self.min_quality, 0.0, 1.0)
        check_range(prefix, "n", self.n, 1)
        check_range(prefix, "k", self.k, 1, self.n)  # k consistent matches out of n
        check_range(prefix, "cooldown_s", self.cooldown_s, 0.0)


@dataclass(frozen=True)
class MatchingConfig:
    # None: the bundle's threshold. A value may only raise it, never lower it.
    threshold: float | None = None

    def validate(self, prefix: str) -> None:  # the model card's floor is checked when models load
        check_range(prefix, "threshold", self.threshold, 0.0, 1.0)


@dataclass(frozen=True)
class TrustConfig:
    trust_file: Path = Path("/etc/edge/trust.json")
    device_key: Path = Path("/etc/edge/keys/device.x25519")
    signing_key: Path | None = None  # device Ed25519 key (audit checkpoints)
    order_file: Path = Path("/etc/edge/order.json")
    bundle_file: Path | None = None  # initial bundle to install if none active


@dataclass(frozen=True)
class StateConfig:
    dir: Path = Path("/var/lib/edge")
    # Free space the state disk must keep: below it recognition stops (status says why),
    # so that no alert is raised that the device could not record.
    reserve_mb: float = 16.0

    def validate(self, prefix: str) -> None:
        check_range(prefix, "reserve_mb", self.reserve_mb, 0.0, 1e6)


@dataclass(frozen=True)
class BrokerConfig:
    host: str = "127.0.0.1"
    port: int = 8883
    tls: bool = True
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    topic_prefix: str | None = None  # default edge/<device id>
    keepalive: int = 30
    client_id: str | None = None
    reconnect_max_s: float = 10.0  # backoff cap (with jitter) between reconnect attempts
    # How long the broker keeps the device's MQTT session (its subscriptions and the
    # QoS 1 reviews and bundles sent meanwhile) while the device is offline.
    session_expiry_s: int = 7 * 86400

    def validate(self, prefix: str) -> None:
        check_range(prefix, "keepalive", self.keepalive, 0, 65535)
        check_range(prefix, "session_expiry_s", self.session_expiry_s, 0, 0xFFFFFFFE)
        check_range(prefix, "reconnect_max_s", self.reconnect_max_s, 0.1)
        if not 0 < self.port < 65536:
            raise ConfigError(f"{prefix}.port", "must be 1..65535")
        if self.tls and (self.ca is None or self.cert is None or self.key is None):
            raise ConfigError(f"{prefix}.ca", "tls = true needs ca, cert and key (or set tls = false)")


@dataclass(frozen=True)
class OutboxConfig:
    max_events: int = 10000
    max_bytes: int = 256 * 1024 * 1024
    drain_timeout_s: float = 10.0  # on SIGTERM, how long to try to flush before exiting

    def validate(self, prefix: str) -> None:
        check_range(prefix, "max_events", self.max_events, 1)
        check_range(prefix, "max_bytes", self.max_bytes, 1)
        check_range(prefix, "drain_timeout_s", self.drain_timeout_s, 0.0)


@dataclass(frozen=True)
class AlertsConfig:
    include_crop: bool = True
    crop_quality: int = 85  # JPEG quality

    def validate(self, prefix: str) -> None:
        check_range(prefix, "crop_quality", self.crop_quality, 1, 100)


@dataclass(frozen=True)
class ImagesConfig:
    max_pixels: int = DEFAULT_MAX_PIXELS  # per image file, read from its header before decoding

    def validate(self, prefix: str) -> None:
        if self.max_pixels < 1:
            raise ConfigError(f"{prefix}.max_pixels", "must be >= 1")


@dataclass(frozen=True)
class StatsConfig:
    interval_s: float = 60.0
    status_interval_s: float = 30.0
    checkpoint_interval_s: float = 900.0  # signed audit checkpoints (needs trust.signing_key)

    def validate(self, prefix: str) -> None:
        for name in ("interval_s", "status_interval_s", "checkpoint_interval_s"):
            check_range(prefix, name, getattr(self, name), 0.1)


@dataclass(frozen=True)
class Config:
    device: DeviceConfig
    source: SourceConfig = field(default_factory=SourceConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)
    state: StateConfig = field(default_factory=StateConfig)
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)

    @property
    def topics(self) -> Topics:
        return Topics.for_device(self.device.id, self.broker.topic_prefix)


def _resolve_paths(obj: Any, base: Path) -> Any:
    """Resolve relative Path fields against ``base`` (the config file's folder)."""
    if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return obj
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Path) and not value.is_absolute():
            changes[f.name] = base / value
        elif dataclasses.is_dataclass(value):
            changes[f.name] = _resolve_paths(value, base)
    return dataclasses.replace(obj, **changes) if changes else obj


def parse(table: dict[str, Any], base: Path | None = None) -> Config:
    cfg: Config = build(Config, table)
    if base is None:
        return cfg
    cfg = _resolve_paths(cfg, base)
    src = cfg.source
    if src.kind in ("file", "folder", "scenario") and not Path(src.target).is_absolute():
        cfg = dataclasses.replace(cfg, source=dataclasses.replace(src, target=str(base / src.target)))
    return cfg


def load(path: Path) -> Config:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError("<file>", f"cannot read {path}: {e.strerror}; pass --config PATH") from e
    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError("<file>", f"{path} is not valid TOML: {e}") from e
    return parse(table, path.resolve().parent)
