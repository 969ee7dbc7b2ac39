"""The camera-operator sink: zone scores, events and whatever follows them (MQTT, metrics, live view).

It is one :class:`~gapstream.sinks.Sink` for all the cameras of a run, opened only when the
config asks for events, MQTT or the HTTP server, so runs without them pay nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from .config import PipelineConfig, PostConfig, SourceConfig
from .credentials import redact_url
from .errors import OutputError
from .events import EventListener, EventLog, EventTracker
from .results import Result
from .zones import zone_scores

log = logging.getLogger("gapstream.monitor")

# Per camera, the stage counters (captured, inferred, dropped, reconnects, ...) at call time.
Stats = Callable[[], dict[str, dict[str, int]]]
FrameHook = Callable[[Result, float, dict[str, float], bool], None]


@dataclass
class _Camera:
    source: SourceConfig
    tracker: EventTracker
    event_zones: list[str]
    hooks: list[FrameHook] = field(default_factory=list)

    @property
    def zones(self) -> dict[str, list[list[float]]]:
        return {z.name: z.points for z in self.source.zones}


class CameraMonitor:
    """Per frame of each camera: zone scores, the event score and the hysteresis; tells the listeners."""

    quit = False

    def __init__(self, cfg: PipelineConfig, post: PostConfig, person_index: int, annotated: bool = False,
                 stats: Stats | None = None, sources: list[SourceConfig] | None = None) -> None:
        self.person_index = person_index
        self._closers: list[Callable[[], None]] = []
        self.listeners: list[EventListener] = []
        self.cameras: dict[str, _Camera] = {}
        self.default = (sources or [cfg.source])[0].name  # for results without a camera name
        try:
            if cfg.events.snapshots:
                try:
                    Path(cfg.events.snapshots).mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise OutputError(f"cannot create snapshot folder {cfg.events.snapshots}: "
                                      f"{exc.strerror}") from None
            if cfg.events.clips:
                self._record(cfg, sources or [cfg.source])
            if cfg.events.json:
                event_log = EventLog(cfg.events.json)
                self.add(event_log, event_log.close)
            for src in sources or [cfg.source]:
                names = {z.name for z in src.zones}
                # A camera without any of the event zones has its events on the whole frame.
                ev_zones = [z for z in cfg.events.zones if z in names]
                tracker = EventTracker(src.name, cfg.events, post, self.listeners)
                self.cameras[src.name] = _Camera(src, tracker, ev_zones)
            if cfg.mqtt.host:
                from .mqtt import MqttPublisher  # paho only when MQTT is configured

                publisher = MqttPublisher(cfg.mqtt, list(self.cameras))
                self.add(publisher, publisher.close)
                for name, cam in self.cameras.items():
                    cam.hooks.append(lambda r, s, z, a, name=name: publisher.frame(name, r, s, z, a))
            if cfg.http.port is not None:
                self._serve(cfg, post, annotated, stats or (lambda: {}))
        except BaseException:
            self.close()
            raise

    def _record(self, cfg: PipelineConfig, sources: list[SourceConfig]) -> None:
        """A clip recorder per live stream camera (listed first, so that events carry the clip's name)."""
        from .capture import classify
        from .record import ClipRecorder

        assert cfg.events.clips is not None
        try:
            Path(cfg.events.clips).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create clip folder {cfg.events.clips}: {exc.strerror}") from None
        for src in sources:
            if classify(src.uri) != "stream":
                log.info("camera %s: no clips (they are remuxed from a live stream's packets)", src.name)
                continue
            recorder = ClipRecorder(src, cfg.events)
            self.add(recorder, recorder.close)

    def _serve(self, cfg: PipelineConfig, post: PostConfig, annotated: bool, stats: Stats) -> None:
        """The live view, /metrics and /healthz, fed from this sink."""
        from .serve.http import LiveServer
        from .serve.live import CameraView
        from .serve.metrics import RunMetrics

        views = {}
        for name, cam in self.cameras.items():
            stall = cfg.http.stall_timeout or cam.source.open_timeout
            views[name] = CameraView(name, redact_url(cam.source.uri), stall, cfg.http.live_fps,
                                     cfg.http.jpeg_quality)
        metrics = RunMetrics(views, stats)
        self.server = LiveServer(cfg.http, views, metrics)
        self._closers.append(self.server.close)
        for name, cam in self.cameras.items():
            view, latency = views[name], metrics.latency.labels(name)

            def hook(result: Result, score: float, zones: dict[str, float], active: bool,
                     view: CameraView = view, latency: Any = latency) -> None:
                view.update(result, score, active, annotated, post)
                latency.observe(result.latency_ms / 1000)

            cam.hooks.append(hook)

    def add(self, listener: Any, close: Callable[[], None] | None = None) -> None:
        """Register an event listener (and what closes it, closed in reverse order)."""
        self.listeners.append(listener)
        if close is not None:
            self._closers.append(close)

    def __enter__(self) -> CameraMonitor:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def write(self, result: Result) -> None:
        now = time.time()
        cam = self.cameras[result.camera or self.default]
        zones = cam.zones
        if int(np.argmax(result.probs)) == self.person_index:
            scores = zone_scores(result.cam, result.person_prob, zones)
        else:  # the CAM is the other class's: no person mass anywhere
            scores = dict.fromkeys(zones, 0.0)
        score = max(scores[z] for z in cam.event_zones) if cam.event_zones else result.person_prob
        cam.tracker.update(result, score, scores, now)
        for hook in cam.hooks:
            hook(result, score, scores, cam.tracker.event is not None)

    def close(self) -> None:
        """Finish open events (the stream ended), then close the listeners; safe to call twice."""
        try:
            for cam in self.cameras.values():
                cam.tracker.finish()
        finally:
            closers, self._closers = self._closers, []
            for close in reversed(closers):
                close()


def wanted(cfg: PipelineConfig) -> bool:
    """Whether the config asks for anything the monitor provides."""
    return bool(cfg.events.json or cfg.events.snapshots or cfg.events.clips or cfg.mqtt.host
                or cfg.http.port is not None)


def monitor_factories(cfg: PipelineConfig, post: PostConfig, person_index: int, annotated: bool,
                      stats: Stats, sources: list[SourceConfig] | None = None) -> list[Callable[[], Any]]:
    """The monitor sink's opener, or nothing when the config does not need it."""
    if not wanted(cfg):
        return []
    return [lambda: CameraMonitor(cfg, post, person_index, annotated, stats, sources)]
