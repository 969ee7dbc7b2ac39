"""Pipeline configuration: YAML parsed once into typed dataclasses and passed down."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .credentials import expand_env
from .errors import ConfigError


@dataclass
class SourceConfig:
    """Where frames come from and how to keep a live stream alive."""

    uri: str = ""
    live: bool | None = None  # None: decided by the kind of source (RTSP and webcams are live)
    rtsp_transport: str = "tcp"
    open_timeout: float = 10.0  # seconds to connect or to wait for a packet before calling a stream dead
    connect_attempts: int = 3  # tries before giving up on a source that never worked
    reconnect_attempts: int = 0  # consecutive tries after a working stream drops; 0 = forever
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    fps: float = 25.0  # frame rate of image folders and synthetic sources
    max_width: int = 1920  # live frames larger than this are scaled down to fit the ring slots
    max_height: int = 1080


@dataclass
class ModelConfig:
    path: str = ""  # empty: the shipped int8 model in models/
    num_threads: int = 0  # 0: all cores
    # Long side of the network input for keep-aspect models; 0: the model's own (its metadata).
    input_long_side: int = 0


@dataclass
class InferConfig:
    batch_size: int = 4
    batch_timeout_ms: float = 10.0  # longest wait for a batch to fill once its first frame is in


@dataclass
class PostConfig:
    # Box threshold as a fraction of the CAM maximum; None: the model's own (its metadata's
    # cam_threshold, tuned on validation data; the paper used cam.PAPER_THRESHOLD).
    threshold: float | None = None
    score_threshold: float = 0.5  # person probability above which a frame gets boxes
    min_area: float = 0.005  # smallest box as a fraction of the frame area
    box_resolution: int = 448  # longer side of the CAM used for boxes; boxes are scaled to the frame
    blend_alpha: float = 0.4
    # Box width/height factors about the box centre; None: the model's own (its metadata).
    box_scale: list[float] | None = None
    split_peaks: bool = True  # one box per CAM peak, so that a group of persons gets a box each
    peak_floor: float = 0.5  # a peak counts when it reaches this fraction of the CAM maximum
    cubic: bool = False  # cubic instead of bilinear CAM upsampling (the reference used cubic)


@dataclass
class BufferConfig:
    frame_slots: int = 16  # frames in flight between capture and the sinks
    live_frame_slots: int = 6  # fewer for live sources: bounded latency
    result_slots: int = 16


@dataclass
class OutputConfig:
    video: str | None = None
    json: str | None = None
    show: bool = False
    annotate: bool | None = None  # None: only when a video or window sink needs it
    codec: str = "libx264"
    crf: int = 23
    preset: str = "veryfast"
    stats_interval: float = 5.0  # seconds between stats lines; 0 disables them


@dataclass
class PipelineConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    post: PostConfig = field(default_factory=PostConfig)
    buffers: BufferConfig = field(default_factory=BufferConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    log_level: str = "INFO"
    # Seconds a stage may make no progress (hung, SIGSTOPped) before an offline run is ended with
    # an error naming it, or a live run's stages are restarted; streams get source.open_timeout +
    # backoff_max more for capture; 0 disables.
    watchdog_timeout: float = 20.0

    def validate(self) -> PipelineConfig:
        """Check value ranges; raise ConfigError naming the key."""
        checks: list[tuple[str, bool, str]] = [
            ("infer.batch_size", self.infer.batch_size >= 1, "must be >= 1"),
            ("infer.batch_timeout_ms", self.infer.batch_timeout_ms >= 0, "must be >= 0"),
            ("post.threshold", self.post.threshold is None or 0 < self.post.threshold < 1,
             "must be between 0 and 1"),
            ("post.score_threshold", 0 <= self.post.score_threshold <= 1, "must be between 0 and 1"),
            ("post.min_area", 0 <= self.post.min_area < 1, "must be between 0 and 1"),
            ("post.peak_floor", 0 <= self.post.peak_floor <= 1, "must be between 0 and 1"),
            ("post.box_scale", self.post.box_scale is None
             or (len(self.post.box_scale) == 2 and all(0 < v <= 10 for v in self.post.box_scale)),
             "must be null or two factors in (0, 10]"),
            ("post.blend_alpha", 0 <= self.post.blend_alpha <= 1, "must be between 0 and 1"),
            ("post.box_resolution", self.post.box_resolution >= 16, "must be >= 16"),
            ("buffers.frame_slots", self.buffers.frame_slots >= 2, "must be >= 2"),
            ("buffers.live_frame_slots", self.buffers.live_frame_slots >= 2, "must be >= 2"),
            ("buffers.result_slots", self.buffers.result_slots >= 1, "must be >= 1"),
            ("source.fps", self.source.fps > 0, "must be > 0"),
            ("source.open_timeout", self.source.open_timeout > 0, "must be > 0"),
            ("source.connect_attempts", self.source.connect_attempts >= 1, "must be >= 1"),
            ("source.reconnect_attempts", self.source.reconnect_attempts >= 0, "must be >= 0"),
            ("source.rtsp_transport", self.source.rtsp_transport in ("tcp", "udp"), "must be tcp or udp"),
            ("model.num_threads", self.model.num_threads >= 0, "must be >= 0"),
            ("model.input_long_side", self.model.input_long_side == 0 or self.model.input_long_side >= 32,
             "must be 0 (the model's own) or >= 32"),
            ("watchdog_timeout", self.watchdog_timeout >= 0, "must be >= 0"),
            ("log_level", self.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"),
             "must be DEBUG, INFO, WARNING or ERROR"),
        ]
        for key, ok, why in checks:
            if not ok:
                raise ConfigError(f"config key '{key}' {why}")
        return self


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check one YAML value against a dataclass field type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    wrong = not isinstance(value, tp) or (tp is not bool and isinstance(value, bool))
    if tp in (int, float, str, bool) and wrong:
        raise ConfigError(f"config key '{key}' must be {tp.__name__}, got {value!r}")
    return value


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix or 'top level'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key '{full}' (expected one of: {', '.join(names)})")
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def from_dict(data: dict | None) -> PipelineConfig:
    """Build and validate a config from a mapping (e.g. parsed YAML)."""
    return _build(PipelineConfig, data or {}).validate()


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> PipelineConfig:
    """Load a YAML config (defaults when ``path`` is None) with dotted-key ``overrides``.

    ``${VAR}`` in the file's values comes from the environment (so that camera passwords stay
    out of it); ``overrides`` are taken as they are (the shell has expanded the command line).
    """
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} not found")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections")
        try:
            data = expand_env(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    try:
        return from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None
