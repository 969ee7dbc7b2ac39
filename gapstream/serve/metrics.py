"""Prometheus metrics (prometheus-client) on a registry of the run's own (no global state)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .live import CameraView

# Counters kept by the stage processes (gapstream.stats.Counters) plus the ring's drops.
# Once a run has drained, inferred + dropped == captured (capture.run_stage).
_COUNTERS = (("frames_captured", "captured", "Frames decoded from the source (those max_fps/stride "
              "keep), whether or not they were inferred"),
             ("frames_inferred", "inferred", "Frames through the model"),
             ("frames_dropped", "dropped", "Frames decoded but not inferred: a live ring was full "
              "(with several cameras, also frames lost in a stage restart)"),
             ("reconnects", "reconnects", "Reconnections to the source"),
             ("stage_restarts", "restarts", "Watchdog restarts of the camera's stages (with several "
              "cameras, of every camera's)"),
             ("zoom_crops", "zoom_crops", "Motion-region crops run through the zoom's crop model "
              "(0 while the zoom is off)"))

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)


class _RunCollector:
    """Read at scrape time: the stage counters and the per-camera state."""

    def __init__(self, views: dict[str, CameraView], stats: Callable[[], dict[str, dict[str, int]]]) -> None:
        self.views, self.stats = views, stats

    def collect(self) -> Iterator[Metric]:
        snap = self.stats()
        for name, key, doc in _COUNTERS:
            fam = CounterMetricFamily(f"gapstream_{name}", doc, labels=["camera"])
            for cam, counts in snap.items():
                fam.add_metric([cam], counts.get(key, 0))
            yield fam
        now = time.monotonic()
        gauges = {
            "fps": ("Results per second over the last 32 results", lambda v: v.fps),
            "seconds_since_last_frame": ("Seconds since the camera's last result",
                                         lambda v: v.stalled_for(now)),
            "person_score": ("Last event score (person probability or best zone score)", lambda v: v.score),
            "person_active": ("1 while a person event is open", lambda v: float(v.person)),
        }
        for name, (doc, get) in gauges.items():
            fam = GaugeMetricFamily(f"gapstream_{name}", doc, labels=["camera"])
            for view in self.views.values():
                fam.add_metric([view.name], get(view))
            yield fam
        events = CounterMetricFamily("gapstream_events", "Person events started", labels=["camera"])
        for view in self.views.values():
            events.add_metric([view.name], view.events)
        yield events


class RunMetrics:
    """The registry of one run and the histograms the result loop feeds."""

    def __init__(self, views: dict[str, CameraView], stats: Callable[[], dict[str, dict[str, int]]]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_RunCollector(views, stats))  # type: ignore[arg-type]
        self.latency = Histogram("gapstream_latency_seconds", "Capture-to-output latency per frame",
                                 ["camera"], registry=self.registry, buckets=LATENCY_BUCKETS)
