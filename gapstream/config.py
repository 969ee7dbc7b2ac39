"""Pipeline configuration: YAML parsed once into typed dataclasses and passed down."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .credentials import expand_env
from .errors import ConfigError


@dataclass
class ZoneConfig:
    """A named polygon in fractions of the frame: ``points: [[x, y], ...]`` with 0 <= x, y <= 1."""

    name: str = ""
    points: list[list[float]] = field(default_factory=list)


@dataclass
class SourceConfig:
    """Where frames come from and how to keep a live stream alive."""

    uri: str = ""
    name: str = "camera"  # shown in events, MQTT topics, metrics and the live view
    zones: list[ZoneConfig] = field(default_factory=list)  # named areas scored by CAM mass
    masks: list[list[list[float]]] = field(default_factory=list)  # polygons removed from the CAM
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
    max_fps: float = 0.0  # keep at most this many frames per second of source time; 0: all
    stride: int = 1  # keep every Nth decoded frame (before max_fps)
    # Video files: convert each frame straight to the model's input size (result frames are then
    # that small; boxes stay in source pixels). None: `gapstream run` does it when no output
    # needs full frames; the Python API keeps full frames.
    decode_to_model: bool | None = None


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
class EventsConfig:
    """Person events with hysteresis (gapstream/events.py)."""

    json: str | None = None  # JSON Lines file, one line per finished event
    snapshots: str | None = None  # folder for <camera>-<id>.jpg and <camera>-<id>-cam.jpg
    on_threshold: float = 0.6  # an event starts after min_frames frames at or above this
    off_threshold: float = 0.4  # ... and ends once below this for hold_time seconds
    min_frames: int = 3
    hold_time: float = 2.0
    zones: list[str] = field(default_factory=list)  # only these zones' scores count; [] = whole frame
    clips: str | None = None  # folder for <camera>-<id>.mp4 clips remuxed from live streams
    pre_roll: float = 5.0  # seconds of video before the event start in its clip
    post_roll: float = 2.0  # seconds after its end


@dataclass
class MqttConfig:
    """Events and state over MQTT (gapstream/mqtt.py); off while ``host`` is empty."""

    host: str = ""
    port: int = 1883
    username: str = ""
    password: str | None = None  # only as ${VAR}: a literal secret in the file is refused
    password_file: str | None = None
    tls: bool = False
    ca_file: str | None = None
    topic_prefix: str = "gapstream"
    discovery: bool = True  # Home Assistant MQTT discovery
    discovery_prefix: str = "homeassistant"
    qos: int = 1
    state_interval: float = 1.0  # seconds between probability updates per camera
    keepalive: int = 30


@dataclass
class HttpConfig:
    """Live view, /metrics and /healthz (gapstream/serve/); off while ``port`` is null."""

    host: str = "127.0.0.1"
    port: int | None = None  # 0: any free port (logged)
    token: str | None = None  # only as ${VAR}; required when host is not a loopback address
    token_file: str | None = None
    tls_cert: str | None = None  # PEM files: serve HTTPS
    tls_key: str | None = None
    live_fps: float = 5.0  # annotated JPEGs per second and camera for the live view
    jpeg_quality: int = 80
    stall_timeout: float | None = None  # /healthz fails after this many seconds without a frame;
    # None: source.open_timeout


@dataclass
class PipelineConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    # Several cameras in one run (gapstream/multi.py); each entry's unset keys come from `source`.
    sources: list[SourceConfig] = field(default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    post: PostConfig = field(default_factory=PostConfig)
    buffers: BufferConfig = field(default_factory=BufferConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
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
        checks += _ops_checks(self)
        for key, ok, why in checks:
            if not ok:
                raise ConfigError(f"config key '{key}' {why}")
        return self


def _polygon_ok(points: list[list[float]]) -> bool:
    return len(points) >= 3 and all(len(p) == 2 and all(0 <= v <= 1 for v in p) for p in points)


def _source_checks(src: SourceConfig, key: str) -> list[tuple[str, bool, str]]:
    """Checks of one camera's rate limits, name, zones and masks."""
    zone_names = [z.name for z in src.zones]
    poly = "must have at least 3 [x, y] points with 0 <= x, y <= 1 (fractions of the frame)"
    return [
        (f"{key}.max_fps", src.max_fps >= 0, "must be >= 0 (0: no limit)"),
        (f"{key}.stride", src.stride >= 1, "must be >= 1"),
        (f"{key}.name", bool(re.fullmatch(r"[A-Za-z0-9_-]+", src.name)),
         "must be letters, digits, _ or - (it names MQTT topics and metrics)"),
        *((f"{key}.zones[{i}].name", bool(re.fullmatch(r"[A-Za-z0-9_-]+", z.name)),
           "must be letters, digits, _ or -") for i, z in enumerate(src.zones)),
        *((f"{key}.zones[{i}].points", _polygon_ok(z.points), poly) for i, z in enumerate(src.zones)),
        *((f"{key}.masks[{i}]", _polygon_ok(m), poly) for i, m in enumerate(src.masks)),
        (f"{key}.zones", len(set(zone_names)) == len(zone_names), "has two zones of one name"),
    ]


def _ops_checks(cfg: PipelineConfig) -> list[tuple[str, bool, str]]:
    """Range checks of the camera-operator sections (zones, events, MQTT, HTTP)."""
    ev, mq, ht = cfg.events, cfg.mqtt, cfg.http
    cams = cfg.sources or [cfg.source]
    keys = [f"sources[{i}]" for i in range(len(cfg.sources))] or ["source"]
    zone_names = {z.name for src in cams for z in src.zones}
    names = [src.name for src in cams]
    checks: list[tuple[str, bool, str]] = [
        *(c for src, key in zip(cams, keys) for c in _source_checks(src, key)),
        ("sources", len(set(names)) == len(names), "has two cameras of one name (set each one's name)"),
        ("events.zones", all(z in zone_names for z in ev.zones), "names a zone no camera has"),
        ("events.on_threshold", 0 <= ev.on_threshold <= 1, "must be between 0 and 1"),
        ("events.off_threshold", 0 <= ev.off_threshold <= ev.on_threshold,
         "must be between 0 and events.on_threshold"),
        ("events.min_frames", ev.min_frames >= 1, "must be >= 1"),
        ("events.hold_time", ev.hold_time >= 0, "must be >= 0"),
        ("events.pre_roll", 0 <= ev.pre_roll <= 60, "must be between 0 and 60 seconds"),
        ("events.post_roll", 0 <= ev.post_roll <= 60, "must be between 0 and 60 seconds"),
        ("mqtt.port", 0 < mq.port < 65536, "must be a TCP port"),
        ("mqtt.qos", mq.qos in (0, 1, 2), "must be 0, 1 or 2"),
        ("mqtt.state_interval", mq.state_interval >= 0, "must be >= 0"),
        ("mqtt.keepalive", mq.keepalive >= 5, "must be >= 5"),
        ("mqtt.topic_prefix", bool(re.fullmatch(r"[A-Za-z0-9_/-]+", mq.topic_prefix)),
         "must be letters, digits, _, - or /"),
        ("http.port", ht.port is None or 0 <= ht.port < 65536, "must be a TCP port or null"),
        ("http.live_fps", ht.live_fps > 0, "must be > 0"),
        ("http.jpeg_quality", 1 <= ht.jpeg_quality <= 100, "must be between 1 and 100"),
        ("http.stall_timeout", ht.stall_timeout is None or ht.stall_timeout > 0, "must be > 0"),
        ("http.tls_key", (ht.tls_cert is None) == (ht.tls_key is None),
         "and http.tls_cert must be given together"),
    ]
    return checks


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
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
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
    return _build(PipelineConfig, _inherit_sources(data or {})).validate()


def _inherit_sources(data: dict) -> dict:
    """Each ``sources`` entry with the keys it leaves unset taken from the ``source`` section."""
    sources, base = data.get("sources"), data.get("source") or {}
    if not isinstance(sources, list) or not isinstance(base, dict):
        return data
    merged = [{**base, **s} if isinstance(s, dict) else s for s in sources]
    for i, s in enumerate(merged):
        if isinstance(s, dict) and "name" not in s:
            s["name"] = f"cam{i + 1}"
    return {**data, "sources": merged}


# Keys whose values are secrets: they may only come from the environment (${VAR}) or a file.
SECRET_KEYS = (("mqtt", "password"), ("http", "token"))


def refuse_literal_secrets(data: dict, path: Path) -> None:
    """Raise when a secret is written into the config file itself instead of as ``${VAR}``."""
    for section, key in SECRET_KEYS:
        node = data.get(section)
        value = node.get(key) if isinstance(node, dict) else None
        if value is not None and not (isinstance(value, str) and re.fullmatch(r"\$\{[_A-Za-z][_A-Za-z0-9]*\}",
                                                                                value.strip())):
            raise ConfigError(f"{path}: config key '{section}.{key}' holds a literal secret; write "
                              f"'{key}: ${{VAR}}' and set VAR in the environment, or use "
                              f"{section}.{key}_file")


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
        refuse_literal_secrets(data, p)
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
