"""Pipeline configuration: YAML parsed once into typed dataclasses and passed down."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .credentials import expand_env
from .errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """A constraint declared on a config field: ``ok(value)`` holds, or the error says ``why``.

    Unset values (None, meaning "the default behaviour") are not checked; ``each`` checks every
    item of a list, named ``key[i]``.
    """

    ok: Callable[[Any], bool]
    why: str
    each: bool = False


def at_least(lo: float, strict: bool = False, note: str = "") -> Rule:
    ok = (lambda v: v > lo) if strict else (lambda v: v >= lo)
    return Rule(ok, f"must be {'>' if strict else '>='} {lo}{note}")


def between(lo: float, hi: float, strict: bool = False, why: str = "") -> Rule:
    ok = (lambda v: lo < v < hi) if strict else (lambda v: lo <= v <= hi)
    return Rule(ok, why or f"must be between {lo} and {hi}")


def one_of(*values: Any, why: str = "") -> Rule:
    return Rule(lambda v: v in values, why or f"must be one of {', '.join(map(str, values))}")


def matches(pattern: str, why: str) -> Rule:
    return Rule(lambda v: bool(re.fullmatch(pattern, v)), why)


def _polygon_ok(points: list[list[float]]) -> bool:
    return len(points) >= 3 and all(len(p) == 2 and all(0 <= v <= 1 for v in p) for p in points)


POLYGON = Rule(_polygon_ok, "must have at least 3 [x, y] points with 0 <= x, y <= 1 (fractions of the frame)")
NAME = matches(r"[A-Za-z0-9_-]+", "must be letters, digits, _ or - (it names MQTT topics and metrics)")
TCP_PORT = between(0, 65536, strict=True, why="must be a TCP port")
BOX_FACTORS = Rule(lambda v: len(v) == 2 and all(0 < f <= 10 for f in v),  # (width, height) about the centre
                   "must be null or two factors in (0, 10]")


def checked(default: Any = dataclasses.MISSING, rule: Rule | None = None, **kw: Any) -> Any:
    """A dataclass field with its constraint: ``batch_size: int = checked(4, at_least(1))``."""
    return field(default=default, metadata={"rule": rule}, **kw)


@dataclass
class ZoneConfig:
    """A named polygon in fractions of the frame: ``points: [[x, y], ...]`` with 0 <= x, y <= 1."""

    name: str = checked("", NAME)
    points: list[list[float]] = checked(rule=POLYGON, default_factory=list)


@dataclass
class SourceConfig:
    """Where frames come from and how to keep a live stream alive."""

    uri: str = ""
    name: str = checked("camera", NAME)  # shown in events, MQTT topics, metrics and the live view
    zones: list[ZoneConfig] = field(default_factory=list)  # named areas scored by CAM mass
    # Polygons removed from the CAM.
    masks: list[list[list[float]]] = checked(rule=dataclasses.replace(POLYGON, each=True),
                                             default_factory=list)
    live: bool | None = None  # None: decided by the kind of source (RTSP and webcams are live)
    rtsp_transport: str = checked("tcp", one_of("tcp", "udp", why="must be tcp or udp"))
    # Seconds to connect, or to wait for a packet, before calling a stream dead.
    open_timeout: float = checked(10.0, at_least(0, strict=True))
    connect_attempts: int = checked(3, at_least(1))  # tries before giving up on a source that never worked
    # Consecutive tries after a working stream drops; 0 = forever.
    reconnect_attempts: int = checked(0, at_least(0))
    backoff_initial: float = checked(0.5, at_least(0, strict=True))
    backoff_max: float = checked(10.0, at_least(0, strict=True))
    fps: float = checked(25.0, at_least(0, strict=True))  # frame rate of image folders and synthetic sources
    # Live frames larger than this are scaled down to fit the ring slots.
    max_width: int = checked(1920, at_least(16))
    max_height: int = checked(1080, at_least(16))
    # Keep at most this many frames per second of source time; 0: all.
    max_fps: float = checked(0.0, at_least(0, note=" (0: no limit)"))
    stride: int = checked(1, at_least(1))  # keep every Nth decoded frame (before max_fps)
    # Video files: convert each frame straight to the model's input size (result frames are then
    # that small; boxes stay in source pixels). None: `gapstream run` does it when no output
    # needs full frames; the Python API keeps full frames.
    decode_to_model: bool | None = None


@dataclass
class ModelConfig:
    path: str = ""  # empty: the shipped int8 model in models/
    num_threads: int = checked(0, at_least(0))  # 0: all cores
    # Long side of the network input for keep-aspect models; 0: the model's own (its metadata).
    input_long_side: int = checked(0, Rule(lambda v: v == 0 or v >= 32,
                                           "must be 0 (the model's own) or >= 32"))


@dataclass
class InferConfig:
    batch_size: int = checked(4, at_least(1))
    # Longest wait for a batch to fill once its first frame is in.
    batch_timeout_ms: float = checked(10.0, at_least(0))


@dataclass
class PostConfig:
    # Box threshold as a fraction of the CAM maximum; None: the model's own (its metadata's
    # cam_threshold, tuned on validation data; the paper used cam.PAPER_THRESHOLD).
    threshold: float | None = checked(None, between(0, 1, strict=True))
    # Person probability at or above which a frame is a person frame and gets boxes; None: the
    # model's own (its metadata's decision_threshold, 0.5 unless tuned on held-out negatives).
    score_threshold: float | None = checked(None, between(0, 1))
    # The same for the frames the zoom looked into (the whole frame's and the crops' probability
    # alike); None: the crop model's own (its metadata's zoom_threshold, chosen with the zoom on),
    # else score_threshold. Image folders are never zoomed: score_threshold decides them.
    zoom_score_threshold: float | None = checked(None, between(0, 1))
    # Seconds a zoomed frame's probability must have stayed at or above that threshold (the
    # minimum over the window decides): the zoom's false alarms come in short runs. None: the crop
    # model's own (its metadata's zoom_sustain_s), else 0 (frame by frame).
    zoom_sustain_s: float | None = checked(None, at_least(0))
    # Smallest box as a fraction of the frame area.
    min_area: float = checked(0.005, Rule(lambda v: 0 <= v < 1, "must be between 0 and 1"))
    # Longer side of the CAM used for boxes; boxes are scaled to the frame.
    box_resolution: int = checked(448, at_least(16))
    blend_alpha: float = checked(0.4, between(0, 1))
    # Box width/height factors about the box centre; None: the model's own (its metadata).
    box_scale: list[float] | None = checked(None, BOX_FACTORS)
    # The same for the boxes found in the zoom's crops (zoom.crop_detections); None: box_scale.
    # A motion crop's CAM region is wider than its person: 0.6 x 1 was chosen against the YOLOv8n
    # teacher's boxes on half of the validation clips (stop 30, rule 30d).
    zoom_box_scale: list[float] | None = checked(rule=BOX_FACTORS, default_factory=lambda: [0.6, 1.0])
    split_peaks: bool = True  # one box per CAM peak, so that a group of persons gets a box each
    # A peak counts when it reaches this fraction of the CAM maximum.
    peak_floor: float = checked(0.5, between(0, 1))
    # Two peaks' regions stay apart only where the CAM between them falls to this fraction of the
    # lower peak (cam.merge_shallow_splits); 1 keeps every split.
    split_saddle: float = checked(0.5, between(0, 1))
    # What ranks a frame's boxes (and so which is its top box): "peak", a box's highest CAM value,
    # or "mass", the sum of its CAM values, which prefers a whole person to a bright part of one.
    box_score: str = checked("mass", one_of("peak", "mass", why="must be peak or mass"))
    cubic: bool = False  # cubic instead of bilinear CAM upsampling (the reference used cubic)
    # The decision uses the median (or mean) person probability of the last smooth_window_s
    # seconds of a camera's frames (gapstream/smoothing.py); 0: each frame alone. 0.5 s median
    # by default since stop 12 (chosen on held-out footage, model card). Never on image folders.
    smooth_window_s: float = checked(0.5, at_least(0))
    smooth: str = checked("median", one_of("median", "mean", why="must be median or mean"))


@dataclass
class MotionConfig:
    # Only cells of the conv-map grid that moved within hold_s seconds may make a person
    # (gapstream/motion.py); on by default since stop 11, in person mode with a 30 s hold since
    # stop 12 (both chosen on held-out footage, model card).
    enabled: bool = True
    threshold: float = checked(20.0, between(0, 255, strict=True))  # grey levels from the background
    background_alpha: float = checked(0.02, between(0, 1, strict=True))  # background update per frame
    min_share: float = checked(0.03, between(0, 1, strict=True))  # share of a cell's pixels that move
    hold_s: float = checked(30.0, at_least(0))  # a cell stays open this long after its last motion
    warmup_frames: int = checked(10, at_least(0))  # frames with no gate while the background forms
    dilate: bool = True  # open the 8 neighbours of a moving cell too
    # pooling: closed cells leave the pooling of both classes, as an exclusion mask does;
    # person: closed cells leave the person class's pooling only (the no-person evidence of the
    # static background still counts); decision: a person frame stands only if an open cell
    # holds >= half of the person CAM's maximum (the probabilities come from the whole frame).
    gate: str = checked("person", Rule(lambda v: v in ("decision", "person", "pooling"),
                                         "must be decision, person or pooling"))


@dataclass
class ZoomConfig:
    # Motion-region zoom (gapstream/zoom.py): up to `crops` square crops of the full-size frame
    # around the largest moving blobs (the motion gate's background), each through a crop model
    # at input_size x input_size; the frame's person probability is the larger of the whole
    # frame's and the crops' (smoothed alike). None (the default): on with the shipped person
    # models, whose pairing with the crop model was validated (model card, stops 20 and 22), off
    # with a person model of your own; true / false: always / never.
    enabled: bool | None = None
    model: str = ""  # the crop model; empty: the shipped one (models/gapstream_zoomcrop_int8.tflite)
    crops: int = checked(3, at_least(1))
    min_side: float = checked(3.0, at_least(1))  # a crop is at least 1/min_side of the frame height
    input_size: int = checked(256, at_least(32))
    min_area: int = checked(6, at_least(1))  # smallest blob, in pixels of the 320-px wide motion mask
    # The crop model runs on every `every`-th frame of a camera; the frames between keep the last
    # crops' look (the background still learns from every frame). 1: every frame.
    every: int = checked(1, at_least(1))
    # The static look (stop 25): the crop model also looks at crops of the smallest size centred on
    # the whole frame's `static_peaks` highest person-score cells, moving or not, so that a person who
    # stands still can count; such a crop counts only at or above `static_threshold`. None: the crop
    # model's own (its metadata's zoom_static_peaks and zoom_static_threshold), else off.
    static_peaks: int | None = checked(None, at_least(0))
    static_threshold: float | None = checked(None, between(0, 1))
    # A motion crop counts only when its person CAM's peak (cells >= half its maximum) touches the
    # blobs that move in this frame (stop 27, rule 27a).
    peak_on_motion: bool = False


@dataclass
class BufferConfig:
    frame_slots: int = checked(16, at_least(2))  # frames in flight between capture and the sinks
    live_frame_slots: int = checked(6, at_least(2))  # fewer for live sources: bounded latency
    result_slots: int = checked(16, at_least(1))


@dataclass
class OutputConfig:
    video: str | None = None
    json: str | None = None
    show: bool = False
    annotate: bool | None = None  # None: only when a video or window sink needs it
    codec: str = "libx264"
    crf: int = checked(23, between(0, 51))
    preset: str = "veryfast"
    stats_interval: float = 5.0  # seconds between stats lines; 0 disables them


@dataclass
class EventsConfig:
    """Person events with hysteresis (gapstream/events.py)."""

    json: str | None = None  # JSON Lines file, one line per finished event
    snapshots: str | None = None  # folder for <camera>-<id>.jpg and <camera>-<id>-cam.jpg
    # An event starts after min_frames frames at or above this...
    on_threshold: float = checked(0.6, between(0, 1))
    off_threshold: float = checked(0.4, between(0, 1))  # ... and ends once below this for hold_time seconds
    min_frames: int = checked(3, at_least(1))
    hold_time: float = checked(2.0, at_least(0))
    zones: list[str] = field(default_factory=list)  # only these zones' scores count; [] = whole frame
    clips: str | None = None  # folder for <camera>-<id>.mp4 clips remuxed from live streams
    # Seconds of video before the event start in its clip, and after its end.
    pre_roll: float = checked(5.0, between(0, 60, why="must be between 0 and 60 seconds"))
    post_roll: float = checked(2.0, between(0, 60, why="must be between 0 and 60 seconds"))


@dataclass
class MqttConfig:
    """Events and state over MQTT (gapstream/mqtt.py); off while ``host`` is empty."""

    host: str = ""
    port: int = checked(1883, TCP_PORT)
    username: str = ""
    password: str | None = None  # only as ${VAR}: a literal secret in the file is refused
    password_file: str | None = None
    tls: bool = False
    ca_file: str | None = None
    topic_prefix: str = checked("gapstream",
                                matches(r"[A-Za-z0-9_/-]+", "must be letters, digits, _, - or /"))
    discovery: bool = True  # Home Assistant MQTT discovery
    discovery_prefix: str = "homeassistant"
    qos: int = checked(1, one_of(0, 1, 2))
    state_interval: float = checked(1.0, at_least(0))  # seconds between probability updates per camera
    keepalive: int = checked(30, at_least(5))


@dataclass
class HttpConfig:
    """Live view, /metrics and /healthz (gapstream/serve/); off while ``port`` is null."""

    host: str = "127.0.0.1"
    # None: no server; 0: any free port (logged).
    port: int | None = checked(None, Rule(lambda v: 0 <= v < 65536, "must be a TCP port or null"))
    token: str | None = None  # only as ${VAR}; required when host is not a loopback address
    token_file: str | None = None
    tls_cert: str | None = None  # PEM files: serve HTTPS
    tls_key: str | None = None
    # Annotated JPEGs per second and camera for the live view.
    live_fps: float = checked(5.0, at_least(0, strict=True))
    jpeg_quality: int = checked(80, between(1, 100))
    # /healthz fails after this many seconds without a frame; None: source.open_timeout.
    stall_timeout: float | None = checked(None, at_least(0, strict=True))


@dataclass
class PipelineConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    # Several cameras in one run (gapstream/multi.py); each entry's unset keys come from `source`.
    sources: list[SourceConfig] = field(default_factory=list)
    model: ModelConfig = field(default_factory=ModelConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    post: PostConfig = field(default_factory=PostConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    zoom: ZoomConfig = field(default_factory=ZoomConfig)
    buffers: BufferConfig = field(default_factory=BufferConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    log_level: str = checked("INFO", Rule(lambda v: v.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"),
                                          "must be DEBUG, INFO, WARNING or ERROR"))
    # Seconds a stage may make no progress (hung, SIGSTOPped) before an offline run is ended with
    # an error naming it, or a live run's stages are restarted; streams get source.open_timeout +
    # backoff_max more for capture; 0 disables.
    watchdog_timeout: float = checked(20.0, at_least(0))

    def validate(self) -> PipelineConfig:
        """Check the rules declared on the fields, then those that tie fields together; raise
        ConfigError naming the first key that breaks one."""
        for key, ok, why in (*_field_checks(self, ""), *_cross_checks(self)):
            if not ok:
                raise ConfigError(f"config key '{key}' {why}")
        return self


def _field_checks(obj: Any, prefix: str) -> typing.Iterator[tuple[str, bool, str]]:
    """``(key, ok, why)`` for every rule declared on the fields of ``obj`` and its sections."""
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}.{f.name}" if prefix else f.name
        rule: Rule | None = f.metadata.get("rule")
        if rule is not None and value is not None:
            items = [(f"{key}[{i}]", v) for i, v in enumerate(value)] if rule.each else [(key, value)]
            yield from ((k, rule.ok(v), rule.why) for k, v in items)
        if dataclasses.is_dataclass(value):
            yield from _field_checks(value, key)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if dataclasses.is_dataclass(item):
                    yield from _field_checks(item, f"{key}[{i}]")


def _cross_checks(cfg: PipelineConfig) -> list[tuple[str, bool, str]]:
    """The checks that tie several fields together (names unique, thresholds ordered, pairs)."""
    ev, ht = cfg.events, cfg.http
    cams = cfg.sources or [cfg.source]
    keys = [f"sources[{i}]" for i in range(len(cfg.sources))] or ["source"]
    names = [src.name for src in cams]
    zone_names = {z.name for src in cams for z in src.zones}
    return [
        *((f"{key}.zones", len({z.name for z in src.zones}) == len(src.zones), "has two zones of one name")
          for src, key in zip(cams, keys)),
        ("sources", len(set(names)) == len(names), "has two cameras of one name (set each one's name)"),
        ("events.zones", all(z in zone_names for z in ev.zones), "names a zone no camera has"),
        ("events.off_threshold", ev.off_threshold <= ev.on_threshold,
         "must be between 0 and events.on_threshold"),
        ("http.tls_key", (ht.tls_cert is None) == (ht.tls_key is None),
         "and http.tls_cert must be given together"),
    ]


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check one YAML value against a dataclass field type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
        origin = typing.get_origin(tp)  # list[float] | None: the list's, not the union's
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
