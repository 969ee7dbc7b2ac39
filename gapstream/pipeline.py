"""The pipeline: capture -> batched inference -> CAM/boxes -> sinks, as processes over shared memory.

    for result in gapstream.Pipeline("clip.mp4").run():
        print(result.index, result.person_prob, result.detections.xyxy)

A run has three steps: :meth:`Pipeline.plan` decides everything that can fail before a process
starts (model, source, ring sizes); ``_start`` opens the rings, the stage processes, the sinks and
the signal handler on one ExitStack, so that they are all released however the run ends; and
``_results`` is the loop that hands each result to the sinks and the caller.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import queue
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import capture, infer, post
from .capture import SourceInfo
from .config import PipelineConfig, PostConfig, load_config
from .errors import ConfigError, ModelError, PipelineError
from .meta import ModelMeta, load_meta
from .monitor import monitor_factories
from .paths import DEFAULT_MODEL
from .results import Result
from .ring import EOS, Ring
from .sinks import Sink, sink_factories
from .stage import stage_main
from .stats import Counters, StatsMonitor, StatsReport
from .zones import keep_weights

log = logging.getLogger("gapstream")


def resolve_model(path: str | None) -> Path:
    """The model to use: the given path or the shipped int8 model."""
    p = Path(path) if path else DEFAULT_MODEL
    if not p.is_file():
        hint = "" if path else " (the shipped model is missing; pass --model PATH)"
        raise ModelError(f"model file {p} not found{hint}")
    if p.suffix != ".tflite":
        raise ModelError(f"{p}: expected a .tflite model")
    return p


@dataclass(frozen=True)
class Plan:
    """What a run needs, decided (and checked) before any process starts."""

    model_path: Path
    meta: ModelMeta
    source: SourceInfo
    post: PostConfig  # with the box threshold resolved (the model's own unless configured)
    annotate: bool
    frame_slots: int
    input_size: tuple[int, int]  # network input (h, w) for this source
    maps_shape: tuple[int, int, int]  # conv maps per frame (h, w, C)
    keep: np.ndarray | None = None  # exclusion mask: per-cell weights on the maps grid (zones.py)


@dataclass
class _Running:
    """The parts of a started run that the result loop uses."""

    frames: Ring
    results: Any
    errors: Any
    counters: Counters
    procs: list[Any]
    sinks: list[Sink]
    stop: Any


class Pipeline:
    """A configured pipeline; ``run()`` yields a :class:`Result` per frame, in order."""

    def __init__(self, source: str | None = None, model: str | None = None,
                 config: PipelineConfig | str | None = None) -> None:
        cfg = config if isinstance(config, PipelineConfig) else load_config(config)
        # Copies: the caller's config is never changed.
        if source is not None:
            cfg = replace(cfg, source=replace(cfg.source, uri=str(source)))
        if model is not None:
            cfg = replace(cfg, model=replace(cfg.model, path=str(model)))
        self.config = cfg.validate()
        self.stats: StatsReport | None = None
        self._stop_requested = False

    def stop(self) -> None:
        """Ask a running pipeline to stop soon; ``run()`` then returns after the current result.

        Frames still queued before inference or post-processing are discarded, not reported.
        """
        self._stop_requested = True

    def plan(self) -> Plan:
        """Check the model and the source and size the rings; raises before anything starts."""
        cfg = self.config
        model_path = resolve_model(cfg.model.path)
        meta = load_meta(model_path)
        info = capture.probe(cfg.source)
        post_cfg = cfg.post
        if post_cfg.threshold is None:
            post_cfg = replace(post_cfg, threshold=meta.cam_threshold)
        annotate = cfg.output.annotate
        if annotate is None:
            annotate = bool(cfg.output.video or cfg.output.show)
        slots = cfg.buffers.live_frame_slots if info.live else cfg.buffers.frame_slots
        input_size = meta.input_size_for(info.height, info.width)
        if cfg.source.decode_to_model:
            info = direct_decode(info, input_size, annotate, cfg)
        maps_shape = meta.maps_shape(input_size)
        return Plan(model_path, meta, info, post_cfg, annotate,
                    frame_slots=max(slots, cfg.infer.batch_size + 1), input_size=input_size,
                    maps_shape=maps_shape, keep=keep_weights(cfg.source.masks, *maps_shape[:2]))

    def run(self) -> Iterator[Result]:
        """Start the stages and yield results until the source ends or ``stop()`` is called."""
        plan = self.plan()
        with contextlib.ExitStack() as stack:
            yield from self._results(plan, self._start(plan, stack))

    def _start(self, plan: Plan, stack: contextlib.ExitStack) -> _Running:
        """Rings, stage processes, sinks and the SIGTERM handler, each released by ``stack``."""
        cfg, meta, info = self.config, plan.meta, plan.source
        ctx = mp.get_context("fork")
        stack.callback(_restore_sigterm, _install_sigterm())
        frame_hw = info.decode_size or (info.height, info.width)
        frames = Ring({"frame": ((*frame_hw, 3), np.uint8)}, plan.frame_slots, ctx, "frames")
        stack.callback(frames.close)
        maps = Ring({"probs": ((len(meta.labels),), np.float32), "maps": (plan.maps_shape, np.float32)},
                    cfg.buffers.result_slots, ctx, "maps")
        stack.callback(maps.close)
        procs: list[Any] = []
        stack.callback(_shutdown, procs)
        results, errors, counters = ctx.Queue(), ctx.Queue(), Counters(ctx)
        factories = sink_factories(cfg.output, info.fps, info.live) + monitor_factories(
            cfg, plan.post, meta.person_index, plan.annotate,
            lambda: {cfg.source.name: {**counters.snapshot(), "dropped": frames.dropped}})
        sinks = [stack.enter_context(open_sink()) for open_sink in factories]
        stop = ctx.Event()
        stack.callback(stop.set)  # first on the way out: every stage stops waiting
        stages = {
            "capture": (capture.run_stage, (info, cfg.source, frames, stop, counters)),
            "infer": (infer.run_stage, (str(plan.model_path), plan.input_size, cfg.model, cfg.infer,
                                        frames, maps, stop, counters)),
            "post": (post.run_stage, (meta, plan.post, plan.annotate, maps, frames, results, stop,
                                      counters, plan.keep)),
        }
        for name, (fn, args) in stages.items():
            p = ctx.Process(target=stage_main, args=(name, fn, errors, *args),
                            name=f"gapstream-{name}", daemon=True)
            p.start()
            procs.append(p)
        log.info("source %s (%s, %dx%d @ %.2f fps%s), model %s, batch %d",
                 info.name, info.kind, info.width, info.height, info.fps,
                 ", live" if info.live else "", plan.model_path.name, cfg.infer.batch_size)
        return _Running(frames, results, errors, counters, procs, sinks, stop)

    def _results(self, plan: Plan, run: _Running) -> Iterator[Result]:
        """Results in order, through the sinks, until the stream ends; then the final checks."""
        frames, sinks = run.frames, run.sinks
        monitor = StatsMonitor(run.counters, self.config.output.stats_interval, lambda: frames.dropped)
        source_error: str | None = None
        while True:
            try:
                item = run.results.get(timeout=0.2)
            except queue.Empty:
                source_error = _check(run.procs, run.errors, source_error)
                monitor.maybe_log()
                continue
            if item is EOS:
                break
            slot, rec = item
            frame = frames.view(slot)["frame"][: rec.h, : rec.w]
            result = Result.from_record(rec, frame, plan.meta.person_index, time.monotonic())
            for s in sinks:
                s.write(result)
            rec.t_out = time.monotonic()
            monitor.frame_done(rec)
            run.counters.add("output")
            monitor.maybe_log()
            try:
                yield result
            finally:
                frames.release(slot)
            if self._stop_requested or any(s.quit for s in sinks):
                run.stop.set()
        run.stop.set()  # the stream has ended; a stage still waiting (capture after a failure) must stop
        for p in run.procs:
            p.join(timeout=5)
        source_error = _check(run.procs, run.errors, source_error, final=True)
        self.stats = monitor.report()
        if source_error:
            raise PipelineError(source_error)


def needs_full_frames(cfg: PipelineConfig) -> bool:
    """Whether an output of this config shows or saves the frames themselves."""
    return bool(cfg.output.video or cfg.output.show or cfg.output.annotate or cfg.events.snapshots
                or cfg.http.port is not None)


def direct_decode(info: SourceInfo, input_size: tuple[int, int], annotate: bool,
                  cfg: PipelineConfig) -> SourceInfo:
    """``info`` set to decode straight to the model's input size (``source.decode_to_model``)."""
    if annotate or needs_full_frames(cfg):
        raise ConfigError("source.decode_to_model: an output here needs full-size frames (video, window, "
                          "annotation, snapshots or the live view)")
    if info.kind != "file":
        return info  # streams learn their frame size only once open: they keep the full-size path
    log.info("decoding straight to the model's input size %dx%d (no output needs full frames)",
             input_size[1], input_size[0])
    return replace(info, decode_size=input_size)


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

