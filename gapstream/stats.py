"""Counters shared by the stage processes, and the periodic stats line built from them."""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .results import FrameRecord

log = logging.getLogger("gapstream.stats")

COUNTERS = ("captured", "reconnects", "inferred", "batches", "posted", "output", "restarts", "zoom_crops")


class Counters:
    """Monotonic counters in shared memory, one writer per counter."""

    def __init__(self, ctx: Any = None) -> None:
        ctx = ctx or mp.get_context()
        # No lock: each counter has one writer, and a stage stopped or killed while holding a
        # shared lock would hang every reader (the parent, and with it the watchdog).
        self._arr = ctx.Array("d", len(COUNTERS), lock=False)

    def add(self, name: str, n: float = 1) -> None:
        self._arr[COUNTERS.index(name)] += n

    def snapshot(self) -> dict[str, int]:
        return {k: int(v) for k, v in zip(COUNTERS, self._arr[:])}


# Per-frame timestamps stamped into the FrameRecord by each stage, in pipeline order.
STAGES = (("queue", "t_cap", "t_inf0"), ("infer", "t_inf0", "t_inf"),
          ("post", "t_inf", "t_post"), ("sink", "t_post", "t_out"))


@dataclass
class StatsReport:
    """What a finished (or running) pipeline did."""

    frames: int = 0
    captured: int = 0
    dropped: int = 0
    reconnects: int = 0
    restarts: int = 0  # watchdog restarts of a live run's stages
    batches: int = 0  # interpreter calls: a batch whose frames need two input sizes counts twice
    zoom_crops: int = 0  # crops run through the zoom's crop model (gapstream/zoom.py), of the frames output
    seconds: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    stage_ms: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        lat = self.latency_ms
        parts = [f"{self.frames} frames in {self.seconds:.1f} s ({self.fps:.1f} fps)",
                 f"dropped {self.dropped}"]
        if self.reconnects:
            parts.append(f"reconnects {self.reconnects}")
        if self.restarts:
            parts.append(f"stage restarts {self.restarts}")
        if self.zoom_crops:
            per_frame = self.zoom_crops / max(1, self.frames)
            parts.append(f"zoom crops {self.zoom_crops} ({per_frame:.2f} a frame)")
        if lat:
            parts.append(f"latency p50 {lat['p50']:.0f} ms p95 {lat['p95']:.0f} ms")
        return ", ".join(parts)


class StatsMonitor:
    """Collects per-frame timings in the main process and logs a stats line periodically.

    The first interval in which a live source's frames are dropped also logs one warning with the
    rates, and ``slow_hint`` (what would lighten the load) when given: the stats line alone counts
    the drops without saying that the pipeline cannot keep up."""

    def __init__(
        self, counters: Counters, interval: float, dropped: Callable[[], int], window: int = 2000,
        slow_hint: str = "",
    ) -> None:
        self.counters = counters
        self._dropped = dropped
        self.slow_hint, self._hinted = slow_hint, False
        self.interval = interval
        self.t0 = time.monotonic()
        self._last_t = self.t0
        self._last = self._snapshot()
        self._latency: deque[float] = deque(maxlen=window)
        self._stages: dict[str, deque[float]] = {s[0]: deque(maxlen=window) for s in STAGES}
        self.frames = 0

    def frame_done(self, rec: FrameRecord) -> None:
        self.frames += 1
        if rec.t_out is not None:
            self._latency.append((rec.t_out - rec.t_cap) * 1000)
        for name, a, b in STAGES:
            ta, tb = getattr(rec, a), getattr(rec, b)
            if ta is not None and tb is not None:
                self._stages[name].append((tb - ta) * 1000)

    def maybe_log(self) -> None:
        now = time.monotonic()
        if self.interval <= 0 or now - self._last_t < self.interval:
            return
        snap = self._snapshot()
        dt = now - self._last_t
        rate = {k: (snap[k] - self._last[k]) / dt for k in ("captured", "inferred", "output")}
        lat = self._percentiles()
        stages = " ".join(f"{k} {v:.1f}" for k, v in self._stage_means().items())
        log.info(
            "capture %.1f fps | infer %.1f fps | output %.1f fps | dropped %d | reconnects %d | "
            "latency p50 %.0f ms p95 %.0f ms | stage ms: %s",
            rate["captured"], rate["inferred"], rate["output"], snap["dropped"], snap["reconnects"],
            lat.get("p50", 0.0), lat.get("p95", 0.0), stages,
        )
        if snap["dropped"] > self._last["dropped"] and not self._hinted:
            self._hinted = True
            log.warning("dropping frames: the source delivers %.1f fps, the pipeline keeps up with "
                        "%.1f fps%s", rate["captured"], rate["output"],
                        f"; {self.slow_hint}" if self.slow_hint else "")
        self._last, self._last_t = snap, now

    def _snapshot(self) -> dict[str, int]:
        snap = self.counters.snapshot()
        snap["dropped"] = self._dropped()
        return snap

    def _percentiles(self) -> dict[str, float]:
        if not self._latency:
            return {}
        arr = np.fromiter(self._latency, float)
        return {"p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95))}

    def _stage_means(self) -> dict[str, float]:
        return {k: float(np.mean(v)) for k, v in self._stages.items() if v}

    def report(self) -> StatsReport:
        snap = self._snapshot()
        return StatsReport(
            frames=self.frames, captured=snap["captured"], dropped=snap["dropped"],
            reconnects=snap["reconnects"], restarts=snap["restarts"], batches=snap["batches"],
            zoom_crops=snap["zoom_crops"], seconds=time.monotonic() - self.t0, latency_ms=self._percentiles(),
            stage_ms=self._stage_means(),
        )
