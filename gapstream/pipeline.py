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
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import capture, infer, post, shm
from .capture import SourceInfo
from .config import PipelineConfig, PostConfig, load_config
from .errors import ConfigError, ModelError, PipelineError
from .meta import ModelMeta, load_meta
from .monitor import monitor_factories
from .outputs import check_outputs
from .paths import DEFAULT_MODEL, DEFAULT_ZOOM_MODEL, shipped_model
from .results import Result
from .ring import EOS, Ring
from .signals import StopFlag, stop_on_signals
from .sinks import Sink, sink_factories
from .stage import stage_main
from .stats import Counters, StatsMonitor, StatsReport
from .watchdog import Heartbeats
from .zones import Polygon
from .zoom import ZoomSpec

log = logging.getLogger("gapstream")


def resolve_model(path: str | None, default: Path = DEFAULT_MODEL, flag: str = "--model") -> Path:
    """The model to use: the given path or the shipped one (``default``)."""
    p = Path(path) if path else default
    if not p.is_file():
        hint = "" if path else f" (the shipped model is missing; pass {flag} PATH)"
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
    input_size: tuple[int, int] | None  # network input (h, w); None: each frame's own (infer.Models)
    maps_shape: tuple[int, int, int]  # a maps slot (h, w, C): the largest grid a frame may have
    zoom: ZoomSpec | None = None  # motion-region zoom (gapstream/zoom.py), when enabled


@dataclass
class _Stages:
    """The stage processes and what links them; replaced as a whole when a live run restarts them
    (a stage killed while holding a queue's lock would block any successor on that queue)."""

    frames: Ring
    maps: Ring
    results: Any
    procs: list[Any]
    stop: Any

    def close(self) -> None:
        close_stages(self.stop, self.procs, (self.maps, self.frames))


@dataclass
class _Running:
    """The parts of a started run that the result loop uses."""

    stages: _Stages
    errors: Any
    counters: Counters
    sinks: list[Sink]
    heartbeats: Heartbeats
    limits: dict[str, float]  # seconds each stage may go without a heartbeat
    spawn: Any  # (first frame index) -> _Stages: a fresh set of stages, for a restart
    dropped_before: int = 0  # frames dropped by the rings of stages since replaced
    restarts: int = 0  # watchdog restarts since the last delivered frame

    @property
    def dropped(self) -> int:
        return self.dropped_before + self.stages.frames.dropped


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
        self.source: SourceInfo | None = None  # known once run() has checked the source
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
        check_outputs({"--out": cfg.output.video, "--json": cfg.output.json},
                      [cfg.source.uri, str(model_path), cfg.zoom.model, *capture.input_files(cfg.source.uri)])
        meta = load_meta(model_path)
        info = capture.probe(cfg.source)
        zoom = plan_zoom(cfg, [info], [cfg.source.masks])
        post_cfg = resolve_post(cfg.post, meta, zoom)
        annotate = cfg.output.annotate
        if annotate is None:
            annotate = bool(cfg.output.video or cfg.output.show)
        slots = cfg.buffers.live_frame_slots if info.live else cfg.buffers.frame_slots
        if cfg.source.decode_to_model:
            size = meta.input_size_for(info.height, info.width, cfg.model.input_long_side)
            info = direct_decode(info, size, annotate, cfg)
        input_size, maps_shape = infer.plan_input(meta, info, cfg.model.input_long_side)
        frame_slots = self._fit_frame_slots(info, max(slots, cfg.infer.batch_size + 1),
                                            Ring.bytes_for(_maps_fields(meta, maps_shape),
                                                           cfg.buffers.result_slots))
        return Plan(model_path, meta, info, post_cfg, annotate, frame_slots=frame_slots,
                    input_size=input_size, maps_shape=maps_shape, zoom=zoom)

    def _fit_frame_slots(self, info: SourceInfo, slots: int, maps_bytes: int) -> int:
        """As many frame slots as asked if /dev/shm has room, else as many as fit, else an error."""
        frame_bytes = Ring.bytes_for(_frame_fields(info), 1)
        free = shm.free_bytes()
        if free is None or frame_bytes * slots + maps_bytes + shm.MB <= free:
            return slots
        least = self.config.infer.batch_size + 1  # a full batch in inference, one frame being captured
        fit = (free - shm.MB - maps_bytes) // frame_bytes
        if fit >= least:
            log.warning("%s has %d MB free: using %d frame slots of %dx%d instead of %d "
                        "(give it more room with docker run --shm-size)", shm.SHM_DIR, free // shm.MB,
                        fit, info.width, info.height, slots)
            return int(fit)
        raise shm.no_room(frame_bytes * least + maps_bytes, free,
                          f"{least} frame slots of {info.width}x{info.height} for batch "
                          f"{self.config.infer.batch_size}")

    def run(self) -> Iterator[Result]:
        """Start the stages and yield results until the source ends or ``stop()`` is called.

        SIGINT and SIGTERM (in the main thread) stop the run the same clean way as ``stop()``:
        the sinks are flushed and closed, everything is released, then KeyboardInterrupt is raised.
        """
        with contextlib.ExitStack() as stack:
            flag = stack.enter_context(stop_on_signals())
            plan = self.plan()
            self.source = plan.source
            if not flag.is_set():
                yield from self._results(plan, self._start(plan, stack), flag)
        if flag.is_set():
            raise KeyboardInterrupt

    def _start(self, plan: Plan, stack: contextlib.ExitStack) -> _Running:
        """Stage processes with their rings, and the sinks, each released by ``stack``."""
        cfg, info = self.config, plan.source
        ctx = mp.get_context("fork")
        shm.remove_stale()
        errors, counters = ctx.Queue(), Counters(ctx)
        beats = Heartbeats(["capture", "infer", "post"], ctx)
        t0 = time.monotonic()

        def spawn(first_index: int) -> _Stages:
            beats.reset()
            return self._spawn(plan, ctx, errors, counters, beats, first_index, t0)

        started: list[_Running] = []
        stages = spawn(0)
        # Whichever set of stages is current when the run ends (a live restart replaces them).
        stack.callback(lambda: (started[0].stages if started else stages).close())
        factories = sink_factories(cfg.output, info.fps, info.live) + monitor_factories(
            cfg, plan.post, plan.meta.person_index, plan.annotate,
            lambda: {cfg.source.name: {**counters.snapshot(),
                                       "dropped": started[0].dropped if started else stages.frames.dropped}})
        sinks = [stack.enter_context(open_sink()) for open_sink in factories]
        run = _Running(stages, errors, counters, sinks, beats, _watchdog_limits(cfg, info), spawn)
        started.append(run)
        stack.callback(lambda: run.stages.stop.set())  # first on the way out: every stage stops waiting
        log.info("source %s (%s, %s%s), model %s, batch %d", info.name, info.kind, info.describe(),
                 ", live" if info.live else "", plan.model_path.name, cfg.infer.batch_size)
        return run

    def _spawn(self, plan: Plan, ctx: Any, errors: Any, counters: Counters, beats: Heartbeats,
               first_index: int, t0: float) -> _Stages:
        """The rings and the three stage processes; on any failure what was made is released."""
        cfg, meta, info = self.config, plan.meta, plan.source
        with contextlib.ExitStack() as undo:
            frames = shm.make_ring(_frame_fields(info), plan.frame_slots, ctx, "frames")
            undo.callback(frames.close)
            maps = shm.make_ring(_maps_fields(meta, plan.maps_shape), cfg.buffers.result_slots, ctx, "maps")
            undo.callback(maps.close)
            stop, results, procs = ctx.Event(), ctx.Queue(), []
            undo.callback(_shutdown, procs)
            undo.callback(stop.set)
            stages = {
                "capture": (capture.run_stage, (info, cfg.source, frames, stop, counters,
                                                beats.beat("capture"), first_index, t0)),
                "infer": (infer.run_stage, (str(plan.model_path), plan.input_size, cfg.model, cfg.infer,
                                            frames, maps, stop, counters, beats.beat("infer"), plan.zoom)),
                "post": (post.run_stage, (meta, plan.post, plan.annotate, maps, frames, results, stop,
                                          counters, beats.beat("post"), [cfg.source.masks], cfg.motion,
                                          [info.kind == "images"])),
            }
            start_stages(ctx, errors, [(name, fn, args) for name, (fn, args) in stages.items()], procs)
            undo.pop_all()
        return _Stages(frames, maps, results, procs, stop)

    def _results(self, plan: Plan, run: _Running, signalled: StopFlag) -> Iterator[Result]:
        """Results in order, through the sinks, until the stream ends or a stop; then the final checks."""
        sinks = run.sinks
        monitor = StatsMonitor(run.counters, self.config.output.stats_interval, lambda: run.dropped,
                               slow_hint=slow_hint(plan.zoom))
        source_error: str | None = None
        next_index = 0
        while not signalled.is_set():
            frames = run.stages.frames
            try:
                item = run.stages.results.get(timeout=0.2)
            except queue.Empty:
                source_error = _check(run.stages.procs, run.errors, source_error)
                _watch(run, plan.source.live, next_index)
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
            if rec.zoom is not None:  # counted with the frame it was cut from, once (multi.py likewise)
                run.counters.add("zoom_crops", rec.zoom.crops_run)
            next_index, run.restarts = rec.index + 1, 0
            monitor.maybe_log()
            try:
                yield result
            finally:
                frames.release(slot)
            if self._stop_requested or any(s.quit for s in sinks):
                run.stages.stop.set()
        # The stream has ended; a stage still waiting (capture after a failure) must stop.
        run.stages.stop.set()
        for p in run.stages.procs:
            p.join(timeout=5)
        if signalled.is_set():
            return  # interrupted: what was written is complete; run() reports the interruption
        source_error = _check(run.stages.procs, run.errors, source_error, final=True)
        self.stats = monitor.report()
        if source_error:
            raise PipelineError(source_error)


def _watchdog_limits(cfg: PipelineConfig, info: SourceInfo) -> dict[str, float]:
    t = cfg.watchdog_timeout
    # A stream's capture may legitimately wait for a packet, then back off before reconnecting.
    capture_t = t
    if info.kind in ("stream", "webcam"):
        capture_t += cfg.source.open_timeout + cfg.source.backoff_max
    return {"capture": capture_t if t else 0.0, "infer": t, "post": t}


MAX_RESTARTS = 3  # watchdog restarts in a row (no frame delivered in between) before giving up


def _watch(run: _Running, live: bool, next_index: int) -> None:
    """Act on a stage that stopped making progress: end an offline run with an error naming it;
    restart a live run's stages (fresh processes, rings and queues; the sinks stay open)."""
    stalled = run.heartbeats.stalled(run.limits)
    if not stalled:
        return
    name, age = stalled
    what = f"{name} stage made no progress for {age:.0f} s (hung or stopped)"
    if not live or run.restarts >= MAX_RESTARTS:
        why = f"after {run.restarts} restarts" if live else "ended the run"
        raise PipelineError(f"{what}; {why} (the watchdog_timeout config key sets this limit)")
    run.restarts += 1
    log.warning("%s; restarting the stages (restart %d of at most %d in a row)", what, run.restarts,
                MAX_RESTARTS)
    run.stages.close()  # kills the hung process; its queues and rings go with it (closing is idempotent)
    # Frames lost with the old rings were captured but never delivered: count them as dropped,
    # so that output + dropped == captured still holds (as in a multi-camera restart).
    snap = run.counters.snapshot()
    lost = snap["captured"] - snap["output"] - run.dropped
    dropped = run.dropped + max(lost, 0)
    stages = run.spawn(next_index)
    # Swapped together, so that a metrics scrape (another thread) never counts a ring twice.
    run.stages, run.dropped_before = stages, dropped
    run.counters.add("restarts")


def resolve_post(post: PostConfig, meta: ModelMeta, zoom: ZoomSpec | None = None) -> PostConfig:
    """``post`` with the box rule the config leaves open (thresholds, box factors) taken from the
    models' metadata, where validation chose it. The zoomed frames' decision threshold and how long
    it must hold are the crop model's ``zoom_threshold`` and ``zoom_sustain_s`` (chosen for the
    zoomed decision) unless the config sets them."""
    if post.threshold is None:
        post = replace(post, threshold=meta.cam_threshold)
    zoomed = post.zoom_score_threshold
    if zoomed is None and post.score_threshold is None and zoom is not None:
        zoomed = zoom.threshold  # None when the crop model has none
    if post.score_threshold is None:
        post = replace(post, score_threshold=meta.decision_threshold)
    post = replace(post, zoom_score_threshold=post.score_threshold if zoomed is None else zoomed)
    if post.zoom_sustain_s is None:
        sustain = zoom.sustain_s if zoom is not None else None
        post = replace(post, zoom_sustain_s=sustain or 0.0)
    if post.box_scale is None:
        post = replace(post, box_scale=list(meta.box_scale))
    return post


def _frame_fields(info: SourceInfo) -> dict[str, Any]:
    return {"frame": ((*(info.decode_size or (info.height, info.width)), 3), np.uint8)}


def _maps_fields(meta: ModelMeta, maps_shape: tuple[int, int, int]) -> dict[str, Any]:
    return {"probs": ((len(meta.labels),), np.float32), "maps": (maps_shape, np.float32)}


def slow_hint(zoom: ZoomSpec | None) -> str:
    """What lightens a live run that drops frames, for :class:`stats.StatsMonitor`'s warning."""
    if zoom is None:
        return "a smaller model.input_long_side or fewer cameras per machine lighten the load"
    return ("the zoom costs a third to a half of the frame rate: zoom.every 2 runs its crop model on every "
            "other frame, --no-zoom turns it off (both find fewer far persons)")


def zoom_on(cfg: PipelineConfig) -> bool:
    """Whether the run zooms: ``zoom.enabled`` when set; unset, only with a shipped person model
    (``model.path`` empty, or :func:`paths.shipped_model` of either quantization), because the
    crop model's operating point was chosen with it as the whole frame's model."""
    if cfg.zoom.enabled is not None:
        return cfg.zoom.enabled
    if not cfg.model.path:
        return True
    return Path(cfg.model.path).resolve() in {shipped_model(q).resolve() for q in ("int8", "float32")}


def needs_full_frames(cfg: PipelineConfig) -> bool:
    """Whether an output of this config shows or saves the frames themselves, or the zoom crops them."""
    return bool(cfg.output.video or cfg.output.show or cfg.output.annotate or cfg.events.snapshots
                or cfg.http.port is not None or zoom_on(cfg))


def plan_zoom(cfg: PipelineConfig, infos: list[SourceInfo],
              masks: Sequence[Sequence[Polygon]] = ()) -> ZoomSpec | None:
    """The motion-region zoom of a run (None when off): its crop model (``zoom.model``, else the
    shipped crop model) checked now, so that a bad one fails before any frame flows. ``masks``:
    each camera's exclusion polygons, which hold for its crops too."""
    if not zoom_on(cfg):
        return None
    crop_model = resolve_model(cfg.zoom.model, DEFAULT_ZOOM_MODEL, "--zoom-model")
    crop_meta = load_meta(crop_model)
    stills = tuple(k for k, info in enumerate(infos) if info.kind == "images")
    peaks = cfg.zoom.static_peaks if cfg.zoom.static_peaks is not None else crop_meta.zoom_static_peaks
    least = (cfg.zoom.static_threshold if cfg.zoom.static_threshold is not None
             else crop_meta.zoom_static_threshold)
    return ZoomSpec(cfg.zoom, cfg.motion, str(crop_model), stills, tuple(masks),
                    crop_meta.zoom_threshold, crop_meta.zoom_sustain_s, peaks or 0,
                    1.0 if least is None else least)


def direct_decode(info: SourceInfo, input_size: tuple[int, int], annotate: bool,
                  cfg: PipelineConfig, camera: str = "") -> SourceInfo:
    """``info`` set to decode straight to the model's input size (``source.decode_to_model``);
    ``camera`` names it in the log in a run with several."""
    if annotate or needs_full_frames(cfg):
        raise ConfigError("source.decode_to_model: an output here needs full-size frames (video, window, "
                          "annotation, snapshots, the live view or the zoom)")
    if info.kind != "file":
        return info  # streams learn their frame size only once open: they keep the full-size path
    log.info("%sdecoding straight to the model's input size %dx%d (no output needs full frames)",
             f"camera {camera}: " if camera else "", input_size[1], input_size[0])
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


def start_stages(ctx: Any, errors: Any, stages: list[tuple[str, Any, tuple]], procs: list[Any]) -> None:
    """Start one daemon process per ``(name, function, args)`` stage (``gapstream-<name>``, a ``:``
    in the name becomes ``-``), each reporting a failure on ``errors``; each is added to ``procs``
    as soon as it runs, so that a clean-up holding that list stops it if a later one fails to start."""
    for name, fn, args in stages:
        p = ctx.Process(target=stage_main, args=(name, fn, errors, *args),
                        name=f"gapstream-{name.replace(':', '-')}", daemon=True)
        p.start()
        procs.append(p)


def close_stages(stop: Any, procs: list[Any], rings: Iterable[Ring]) -> None:
    """Stop a set of stage processes, then free the rings that linked them (in the order given)."""
    stop.set()
    _shutdown(procs)
    for ring in rings:
        ring.close()


def _shutdown(procs: list[Any]) -> None:
    for p in procs:
        p.join(timeout=3)
    for p in procs:
        if p.is_alive():  # stages ignore SIGINT and SIGTERM (the parent stops them), so: SIGKILL
            p.kill()
            p.join(timeout=2)
