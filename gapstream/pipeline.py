"""The pipeline: capture -> batched inference -> CAM/boxes -> sinks, as processes over shared memory.

    for result in gapstream.Pipeline("clip.mp4").run():
        print(result.index, result.person_prob, result.detections.xyxy)
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing as mp
import queue
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import capture, infer, post
from .config import PipelineConfig, load_config
from .detections import Detections
from .errors import GapstreamError, ModelError, PipelineError
from .gapmodel import default_model_path
from .meta import load_meta
from .ring import EOS, Ring
from .sinks import build_sinks
from .stage import stage_main
from .stats import Counters, StatsMonitor, StatsReport

log = logging.getLogger("gapstream")


@dataclass
class Result:
    """One processed frame. ``frame`` is a view into shared memory, valid until the next
    result is requested: copy it to keep it."""

    index: int
    pts: float
    probs: np.ndarray
    person_prob: float
    is_person: bool
    detections: Detections
    cam: np.ndarray  # low-resolution CAM of the predicted class, in [0, 1]
    frame: np.ndarray
    latency_ms: float

    def to_dict(self) -> dict:
        return {
            "frame": self.index,
            "time": round(self.pts, 4),
            "person_prob": round(self.person_prob, 4),
            "person": self.is_person,
            "boxes": self.detections.to_list(),
            "latency_ms": round(self.latency_ms, 1),
        }


def resolve_model(path: str | None) -> Path:
    """The model to use: the given path or the shipped int8 model."""
    p = Path(path) if path else default_model_path()
    if not p.is_file():
        hint = "" if path else " (the shipped model is missing; pass --model PATH)"
        raise ModelError(f"model file {p} not found{hint}")
    if p.suffix != ".tflite":
        raise ModelError(f"{p}: expected a .tflite model")
    return p


class Pipeline:
    """A configured pipeline; ``run()`` yields a :class:`Result` per frame, in order."""

    def __init__(self, source: str | None = None, model: str | None = None,
                 config: PipelineConfig | str | None = None) -> None:
        cfg = config if isinstance(config, PipelineConfig) else load_config(config)
        if source is not None:
            cfg.source.uri = str(source)
        if model is not None:
            cfg.model.path = str(model)
        self.config = cfg.validate()
        self.stats: StatsReport | None = None
        self._stop_requested = False

    def stop(self) -> None:
        """Ask a running pipeline to stop soon; ``run()`` then returns after the current result.

        Frames still queued before inference or post-processing are discarded, not reported.
        """
        self._stop_requested = True

    def run(self) -> Iterator[Result]:
        """Start the stages and yield results until the source ends or ``stop()`` is called."""
        cfg = self.config
        model_path = resolve_model(cfg.model.path)
        meta = load_meta(model_path)
        info = capture.probe(cfg.source)
        post_cfg = cfg.post
        if post_cfg.threshold is None:
            post_cfg = dataclasses.replace(post_cfg, threshold=meta.cam_threshold)
        annotate = cfg.output.annotate
        if annotate is None:
            annotate = bool(cfg.output.video or cfg.output.show)

        ctx = mp.get_context("fork")
        slots = cfg.buffers.live_frame_slots if info.live else cfg.buffers.frame_slots
        slots = max(slots, cfg.infer.batch_size + 1)
        ih, iw = meta.input_size
        fmap = (-(-ih // 32), -(-iw // 32), meta.dense_kernel.shape[0])
        rings: list[Ring] = []
        procs: list[Any] = []
        sinks: list[Any] = []
        stop = ctx.Event()
        old_term = _install_sigterm()
        try:
            frames = Ring({"frame": ((info.height, info.width, 3), np.uint8)}, slots, ctx, "frames")
            rings.append(frames)
            maps = Ring({"probs": ((len(meta.labels),), np.float32), "maps": (fmap, np.float32)},
                        cfg.buffers.result_slots, ctx, "maps")
            rings.append(maps)
            results = ctx.Queue()
            errors = ctx.Queue()
            counters = Counters(ctx)
            sinks = build_sinks(cfg.output, info.fps, info.live)
            stages = {
                "capture": (capture.run_stage, (info, cfg.source, frames, stop, counters)),
                "infer": (infer.run_stage, (str(model_path), cfg.model, cfg.infer, frames, maps, stop,
                                            counters)),
                "post": (post.run_stage, (meta, post_cfg, annotate, maps, frames, results, stop,
                                          counters)),
            }
            for name, (fn, args) in stages.items():
                p = ctx.Process(target=stage_main, args=(name, fn, errors, *args),
                                name=f"gapstream-{name}", daemon=True)
                p.start()
                procs.append(p)
            log.info("source %s (%s, %dx%d @ %.2f fps%s), model %s, batch %d",
                     info.name, info.kind, info.width, info.height, info.fps,
                     ", live" if info.live else "", model_path.name, cfg.infer.batch_size)
            monitor = StatsMonitor(counters, cfg.output.stats_interval, lambda: frames.dropped)
            source_error: str | None = None
            while True:
                try:
                    item = results.get(timeout=0.2)
                except queue.Empty:
                    source_error = _check(procs, errors, source_error)
                    monitor.maybe_log()
                    continue
                if item is EOS:
                    break
                slot, m = item
                result = Result(
                    index=m["index"], pts=m["pts"], probs=m["probs"],
                    person_prob=float(m["probs"][meta.person_index]), is_person=m["person"],
                    detections=Detections(m["xyxy"], m["scores"]), cam=m["cam"],
                    frame=frames.view(slot)["frame"][: m["h"], : m["w"]],
                    latency_ms=(time.monotonic() - m["t_cap"]) * 1000,
                )
                for s in sinks:
                    s.write(result)
                m["t_out"] = time.monotonic()
                monitor.frame_done(m)
                counters.add("output")
                monitor.maybe_log()
                try:
                    yield result
                finally:
                    frames.release(slot)
                if self._stop_requested or any(getattr(s, "quit", False) for s in sinks):
                    stop.set()
            stop.set()  # the stream has ended; a stage still waiting (capture after a failure) must stop
            for p in procs:
                p.join(timeout=5)
            source_error = _check(procs, errors, source_error, final=True)
            self.stats = monitor.report()
            if source_error:
                raise PipelineError(source_error)
        finally:
            stop.set()
            try:
                for s in sinks:
                    with contextlib.suppress(Exception):
                        s.close()
            finally:
                _shutdown(procs)
                for r in rings:
                    r.close()
                _restore_sigterm(old_term)


def _check(procs: list[Any], errors: Any, source_error: str | None, final: bool = False) -> str | None:
    """Raise on a failed inference or post stage; remember a capture failure for the end.

    A capture failure (say a truncated file) still lets the frames already read go through.
    """
    while True:
        try:
            stage, msg = errors.get_nowait() if not final else errors.get(timeout=0.2)
        except queue.Empty:
            break
        if stage == "capture":
            source_error = source_error or msg
        else:
            raise PipelineError(f"{stage} stage failed: {msg}")
    for p in procs:
        if p.exitcode not in (None, 0) and not (p.name == "gapstream-capture" and source_error):
            try:
                stage, msg = errors.get(timeout=1.0)
            except queue.Empty:
                raise PipelineError(f"{p.name} died unexpectedly (exit code {p.exitcode})") from None
            if stage == "capture":
                return source_error or msg
            raise PipelineError(f"{stage} stage failed: {msg}")
    return source_error


def _shutdown(procs: list[Any]) -> None:
    for p in procs:
        p.join(timeout=3)
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(timeout=2)
        if p.is_alive():
            p.kill()
            p.join(timeout=2)


def _install_sigterm() -> Any:
    """Turn SIGTERM into KeyboardInterrupt so that both stop the pipeline the same clean way."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _restore_sigterm(old: Any) -> None:
    if old is not None:
        signal.signal(signal.SIGTERM, old)


def run(source: str, model: str | None = None, config: str | None = None) -> StatsReport:
    """Run a pipeline to the end, discarding results (sinks still write); returns its stats."""
    pipe = Pipeline(source, model, config)
    for _ in pipe.run():
        pass
    assert pipe.stats is not None
    return pipe.stats


__all__ = ["Pipeline", "Result", "GapstreamError", "run"]
