"""The camera-operator sink: zone scores, events and whatever follows them (MQTT, metrics, live view).

It is one :class:`~gapstream.sinks.Sink`, opened only when the config asks for events, MQTT or
the HTTP server, so runs without them pay nothing.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from .config import PipelineConfig, PostConfig
from .credentials import redact_url
from .errors import OutputError
from .events import EventListener, EventLog, EventTracker
from .results import Result
from .zones import zone_scores

log = logging.getLogger("gapstream.monitor")

# Per camera, the stage counters (captured, inferred, dropped, reconnects, ...) at call time.
Stats = Callable[[], dict[str, dict[str, int]]]


class CameraMonitor:
    """Per frame: zone scores, the event score and the hysteresis; tells the listeners."""

    quit = False

    def __init__(self, cfg: PipelineConfig, post: PostConfig, person_index: int, annotated: bool = False,
                 source: str = "", stats: Stats | None = None) -> None:
        self.camera = cfg.source.name
        self.person_index = person_index
        self.zones = {z.name: z.points for z in cfg.source.zones}
        self.event_zones = list(cfg.events.zones)
        self._closers: list[Callable[[], None]] = []
        listeners: list[EventListener] = []
        self.frame_hooks: list[Callable[[Result, float, dict[str, float], bool], None]] = []
        try:
            if cfg.events.snapshots:
                try:
                    Path(cfg.events.snapshots).mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise OutputError(f"cannot create snapshot folder {cfg.events.snapshots}: "
                                      f"{exc.strerror}") from None
            if cfg.events.json:
                event_log = EventLog(cfg.events.json)
                self._closers.append(event_log.close)
                listeners.append(event_log)
        except BaseException:
            self.close()
            raise
        self.listeners = listeners
        self.tracker = EventTracker(self.camera, cfg.events, post, listeners)
        try:
            if cfg.mqtt.host:
                from .mqtt import MqttPublisher  # paho only when MQTT is configured

                publisher = MqttPublisher(cfg.mqtt, [self.camera])
                self.add(publisher, publisher.close)
                self.frame_hooks.append(functools.partial(publisher.frame, self.camera))
            if cfg.http.port is not None:
                self._serve(cfg, post, annotated, source, stats or (lambda: {}))
        except BaseException:
            self.close()
            raise

    def _serve(self, cfg: PipelineConfig, post: PostConfig, annotated: bool, source: str,
               stats: Stats) -> None:
        """The live view, /metrics and /healthz, fed from this sink."""
        from .serve.http import LiveServer
        from .serve.live import CameraView
        from .serve.metrics import RunMetrics

        stall = cfg.http.stall_timeout or cfg.source.open_timeout
        view = CameraView(self.camera, redact_url(source), stall, cfg.http.live_fps, cfg.http.jpeg_quality)
        views = {self.camera: view}
        metrics = RunMetrics(views, stats)
        server = LiveServer(cfg.http, views, metrics)
        self.server = server
        self._closers.append(server.close)
        latency = metrics.latency.labels(self.camera)

        def hook(result: Result, score: float, zones: dict[str, float], active: bool) -> None:
            view.update(result, score, active, annotated, post)
            latency.observe(result.latency_ms / 1000)

        self.frame_hooks.append(hook)

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
        person_cam = int(np.argmax(result.probs)) == self.person_index
        zones = zone_scores(result.cam, result.person_prob, self.zones) if person_cam else \
            dict.fromkeys(self.zones, 0.0)
        score = max(zones[z] for z in self.event_zones) if self.event_zones else result.person_prob
        self.tracker.update(result, score, zones, now)
        for hook in self.frame_hooks:
            hook(result, score, zones, self.tracker.event is not None)

    def close(self) -> None:
        """Finish an open event (the stream ended), then close the listeners; safe to call twice."""
        tracker = getattr(self, "tracker", None)
        try:
            if tracker is not None:
                tracker.finish()
        finally:
            closers, self._closers = self._closers, []
            for close in reversed(closers):
                close()


def wanted(cfg: PipelineConfig) -> bool:
    """Whether the config asks for anything the monitor provides."""
    return bool(cfg.events.json or cfg.events.snapshots or cfg.mqtt.host or cfg.http.port is not None)


def monitor_factories(cfg: PipelineConfig, post: PostConfig, person_index: int, annotated: bool,
                      source: str, stats: Stats) -> list[Callable[[], Any]]:
    """The monitor sink's opener, or nothing when the config does not need it."""
    if not wanted(cfg):
        return []
    return [lambda: CameraMonitor(cfg, post, person_index, annotated, source, stats)]
