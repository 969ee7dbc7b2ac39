"""Several cameras in one run, like DeepStream's nvstreammux.

    for result in gapstream.multi.MultiPipeline(config="configs/cameras-4.yaml").run():
        print(result.camera, result.index, result.person_prob)

Each camera has its own capture process and frame ring (its own reconnects, drops and
counters) and its own network input size (its aspect ratio is kept); one inference process
batches frames across all cameras (a batch runs as one interpreter call per input size in it),
one post process does the CAM and boxes, and the result loop hands each result, named by its
camera, to the sinks.
A camera whose source fails is reported and ends alone: the others go on, and the run ends
with an error naming it once they are done. A hung or killed inference or post stage of a live
run is restarted, with every other stage (see ``MultiPipeline._restart``).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from . import capture, post, shm
from .capture import SourceInfo
from .config import InferConfig, ModelConfig, PipelineConfig, PostConfig, SourceConfig, load_config
from .errors import ConfigError, PipelineError
from .infer import Models, plan_input, run_grouped
from .meta import ModelMeta, load_meta
from .monitor import monitor_factories
from .outputs import check_outputs
from .pipeline import (
    MAX_RESTARTS,
    _frame_fields,
    _maps_fields,
    _shutdown,
    _watchdog_limits,
    close_stages,
    direct_decode,
    plan_zoom,
    resolve_model,
    resolve_post,
    slow_hint,
    start_stages,
)
from .results import Result
from .ring import EOS, Ring
from .signals import StopFlag, stop_on_signals
from .sinks import Sink, sink_factories
from .stats import Counters, StatsMonitor, StatsReport
from .watchdog import Heartbeats
from .zoom import ZoomSpec

log = logging.getLogger("gapstream")


@dataclass(frozen=True)
class MultiPlan:
    """What a run over several cameras needs, decided before any process starts."""

    model_path: Path
    meta: ModelMeta
    sources: list[SourceConfig]
    infos: list[SourceInfo]
    post: PostConfig
    annotate: bool
    # Per camera: (h, w) of its network input; None: each frame's own (a stream, infer.Models).
    input_sizes: list[tuple[int, int] | None]
    maps_grids: list[tuple[int, int]]  # per camera: (h, w) of its largest conv-map grid
    maps_shape: tuple[int, int, int]  # a maps slot: the largest grid of all cameras, and the channels
    zoom: ZoomSpec | None = None  # motion-region zoom (gapstream/zoom.py), when enabled


class _Totals:
    """The run-wide counters with the per-camera capture counters added in (for StatsMonitor)."""

    def __init__(self, main: Counters, cams: list[Counters]) -> None:
        self.main, self.cams = main, cams

    def snapshot(self) -> dict[str, int]:
        snap = self.main.snapshot()
        for c in self.cams:
            for k, v in c.snapshot().items():
                if k in ("captured", "reconnects"):
                    snap[k] += v
        return snap


@dataclass
class _MultiStages:
    """The rings, queues and stage processes of a run; replaced as a whole at a restart (a stage
    killed while holding a queue's lock would block any successor on that queue)."""

    rings: list[Ring]  # per camera
    maps: Ring
    results: Any
    procs: list[Any]
    stop: Any

    def close(self) -> None:
        close_stages(self.stop, self.procs, (self.maps, *self.rings))


@dataclass
class _MultiRun:
    """The parts of a started run that the result loop uses."""

    stages: _MultiStages
    errors: Any
    counters: Counters
    cam_counters: list[Counters]
    sinks: list[Sink]
    beats: Heartbeats
    limits: dict[str, float]  # seconds each stage may go without a heartbeat
    spawn: Callable[[list[int]], _MultiStages]  # (each camera's first frame index) -> fresh stages
    stats: Callable[[], dict[str, dict[str, int]]]  # per-camera counters (camera_line, metrics)
    names: list[str]
    next_index: list[int]  # per camera: the index after its last delivered frame
    dropped_before: list[int]  # per camera: frames dropped by rings since replaced (or lost with them)
    restarts: int = 0  # restarts since the last delivered frame

    def dropped(self, k: int) -> int:
        return self.dropped_before[k] + self.stages.rings[k].dropped


class MultiPipeline:
    """Several cameras through one model; ``run()`` yields each camera's results in its order."""

    def __init__(self, sources: list[SourceConfig] | None = None, model: str | None = None,
                 config: PipelineConfig | str | None = None) -> None:
        cfg = config if isinstance(config, PipelineConfig) else load_config(config)
        if sources is not None:
            cfg = replace(cfg, sources=list(sources))
        if model is not None:
            cfg = replace(cfg, model=replace(cfg.model, path=str(model)))
        self.config = cfg.validate()
        if not cfg.sources:
            raise ConfigError("no cameras: give several SOURCEs or a 'sources:' list in the config")
        if cfg.output.video or cfg.output.show:
            raise ConfigError("output.video and --show take one camera; with several, use the live view "
                              "(http.port), events or JSON")
        self.stats: StatsReport | None = None
        self.camera_stats: dict[str, dict[str, int]] = {}
        self.failed: dict[str, str] = {}
        self._stop_requested = False

    def stop(self) -> None:
        """Ask the run to stop soon; ``run()`` returns after the current result."""
        self._stop_requested = True

    def plan(self) -> MultiPlan:
        cfg = self.config
        model_path = resolve_model(cfg.model.path)
        inputs = [u for s in cfg.sources for u in (s.uri, *capture.input_files(s.uri))]
        check_outputs({"--json": cfg.output.json}, [str(model_path), cfg.zoom.model, *inputs])
        meta = load_meta(model_path)
        infos = [capture.probe(s) for s in cfg.sources]
        zoom = plan_zoom(cfg, infos, [s.masks for s in cfg.sources])
        post_cfg = resolve_post(cfg.post, meta, zoom)
        annotate = bool(cfg.output.annotate)
        # source.decode_to_model per camera, by the single run's rule (an error if an output here
        # needs full-size frames; streams keep the full-size path).
        infos = [direct_decode(i, meta.input_size_for(i.height, i.width, cfg.model.input_long_side),
                               annotate, cfg, s.name) if s.decode_to_model else i
                 for s, i in zip(cfg.sources, infos)]
        # Each camera at its own aspect ratio, so that a 4:3 and a 16:9 camera are both unsquashed
        # (a stream's is known only once it connects: its frames are sized one by one).
        planned = [plan_input(meta, i, cfg.model.input_long_side) for i in infos]
        input_sizes = [size for size, _ in planned]
        grids = [(h, w) for _, (h, w, _) in planned]
        maps_shape = (max(h for h, _ in grids), max(w for _, w in grids), planned[0][1][2])
        return MultiPlan(model_path, meta, list(cfg.sources), infos, post_cfg, annotate, input_sizes, grids,
                         maps_shape, zoom)

    def run(self) -> Iterator[Result]:
        """As :meth:`Pipeline.run`: SIGINT and SIGTERM stop the run cleanly, then KeyboardInterrupt."""
        with contextlib.ExitStack() as stack:
            flag = stack.enter_context(stop_on_signals())
            plan = self.plan()
            if not flag.is_set():
                yield from self._results(plan, flag, self._start(plan, stack))
        if flag.is_set():
            raise KeyboardInterrupt

    def _start(self, plan: MultiPlan, stack: contextlib.ExitStack) -> _MultiRun:
        """The stages (each camera's capture, inference, post) and the sinks, released by ``stack``."""
        cfg, meta = self.config, plan.meta
        ctx = mp.get_context("fork")
        shm.remove_stale()
        errors, counters = ctx.Queue(), Counters(ctx)
        names = [s.name for s in plan.sources]
        cam_counters = [Counters(ctx) for _ in names]
        # Heartbeats of every stage, each camera's capture too (see _watch).
        beats = Heartbeats([f"capture:{n}" for n in names] + ["infer", "post"], ctx)
        t0 = time.monotonic()

        def spawn(first_indices: list[int]) -> _MultiStages:
            beats.reset()
            return self._spawn(plan, ctx, errors, counters, cam_counters, beats, first_indices, t0)

        started: list[_MultiRun] = []
        stages = spawn([0] * len(names))
        # Whichever set of stages is current when the run ends (a restart replaces them).
        stack.callback(lambda: (started[0].stages if started else stages).close())
        self.camera_stats = {n: {"captured": 0, "dropped": 0, "reconnects": 0, "inferred": 0, "restarts": 0,
                                 "zoom_crops": 0} for n in names}

        def stats() -> dict[str, dict[str, int]]:
            run = started[0] if started else None
            out = {}
            for k, (n, cc) in enumerate(zip(names, cam_counters)):
                snap = cc.snapshot()
                out[n] = {"captured": snap["captured"], "reconnects": snap["reconnects"],
                          "dropped": run.dropped(k) if run else stages.rings[k].dropped,
                          "inferred": self.camera_stats[n]["inferred"],
                          "zoom_crops": self.camera_stats[n]["zoom_crops"],
                          "restarts": counters.snapshot()["restarts"]}
            return out

        factories = sink_factories(cfg.output, 0.0, True) + monitor_factories(
            cfg, plan.post, meta.person_index, plan.annotate, stats, plan.sources)
        sinks = [stack.enter_context(open_sink()) for open_sink in factories]
        run = _MultiRun(stages, errors, counters, cam_counters, sinks, beats, self._watchdog_limits(plan),
                        spawn, stats, names, [0] * len(names), [0] * len(names))
        started.append(run)
        stack.callback(lambda: run.stages.stop.set())  # first on the way out: every stage stops waiting
        for n, info, size in zip(names, plan.infos, plan.input_sizes):
            net = f"{size[1]}x{size[0]}" if size else "keeps each frame's aspect"
            log.info("camera %s: %s (%s, %dx%d%s), network input %s", n, info.name, info.kind, info.width,
                     info.height, ", live" if info.live else "", net)
        log.info("%d cameras, model %s, batch %d across cameras", len(names), plan.model_path.name,
                 cfg.infer.batch_size)
        return run

    def _spawn(self, plan: MultiPlan, ctx: Any, errors: Any, counters: Counters, cam_counters: list[Counters],
               beats: Heartbeats, first_indices: list[int], t0: float) -> _MultiStages:
        """Fresh rings and stage processes; a camera that has failed gets none (its ring just ends).
        On any failure what was made is released."""
        cfg, meta = self.config, plan.meta
        names = [s.name for s in plan.sources]
        with contextlib.ExitStack() as undo:
            rings: list[Ring] = []
            for k, info in enumerate(plan.infos):
                slots = cfg.buffers.live_frame_slots if info.live else cfg.buffers.frame_slots
                ring = shm.make_ring(_frame_fields(info), max(slots, cfg.infer.batch_size + 1), ctx,
                                     f"frames{k}")
                undo.callback(ring.close)
                rings.append(ring)
            maps = shm.make_ring(_maps_fields(meta, plan.maps_shape),
                                 max(cfg.buffers.result_slots, cfg.infer.batch_size), ctx, "maps")
            undo.callback(maps.close)
            stop, results, procs = ctx.Event(), ctx.Queue(), []
            undo.callback(_shutdown, procs)
            undo.callback(stop.set)
            stages: list[tuple[str, Any, tuple]] = []
            for k, (n, info, src, ring, cc) in enumerate(zip(names, plan.infos, plan.sources, rings,
                                                             cam_counters)):
                if n in self.failed:
                    ring.close_stream()  # ended before a restart: nothing more comes from it
                    continue
                stages.append((f"capture:{n}", capture.run_stage,
                               (info, src, ring, stop, cc, beats.beat(f"capture:{n}"), first_indices[k], t0)))
            stages += [
                ("infer", run_infer, (str(plan.model_path), plan.input_sizes, cfg.model, cfg.infer, rings,
                                      maps, stop, counters, beats.beat("infer"), plan.zoom)),
                ("post", post.run_stage, (meta, plan.post, plan.annotate, maps, rings, results, stop,
                                          counters, beats.beat("post"), [src.masks for src in plan.sources],
                                          cfg.motion, [info.kind == "images" for info in plan.infos])),
            ]
            start_stages(ctx, errors, stages, procs)
            undo.pop_all()
        return _MultiStages(rings, maps, results, procs, stop)

    def _results(self, plan: MultiPlan, signalled: StopFlag, run: _MultiRun) -> Iterator[Result]:
        names = run.names
        monitor = StatsMonitor(_Totals(run.counters, run.cam_counters),  # type: ignore[arg-type]
                               self.config.output.stats_interval,
                               lambda: sum(run.dropped(k) for k in range(len(names))),
                               slow_hint=slow_hint(plan.zoom))
        last_log = last_watch = time.monotonic()
        while not signalled.is_set():
            if time.monotonic() - last_watch >= 0.5:  # also while the cameras' results keep the queue busy
                last_watch = time.monotonic()
                self._watch(plan, run)
            stages = run.stages  # read each time: a restart replaces them
            try:
                item = stages.results.get(timeout=0.2)
            except queue.Empty:
                self._check(plan, run)
                monitor.maybe_log()
                continue
            if item is EOS:
                break
            slot, rec = item
            ring = stages.rings[rec.camera]
            frame = ring.view(slot)["frame"][: rec.h, : rec.w]
            result = Result.from_record(rec, frame, plan.meta.person_index, time.monotonic())
            result.camera = names[rec.camera]
            for s in run.sinks:
                s.write(result)
            rec.t_out = time.monotonic()
            monitor.frame_done(rec)
            run.counters.add("output")
            self.camera_stats[result.camera]["inferred"] += 1
            if rec.zoom is not None:  # counted with the frame it was cut from: run-wide and per camera
                run.counters.add("zoom_crops", rec.zoom.crops_run)
                self.camera_stats[result.camera]["zoom_crops"] += rec.zoom.crops_run
            run.next_index[rec.camera], run.restarts = rec.index + 1, 0
            monitor.maybe_log()
            interval = self.config.output.stats_interval
            if interval > 0 and rec.t_out - last_log >= interval:
                last_log = rec.t_out
                log.info("cameras: %s", camera_line(run.stats()))
            try:
                yield result
            finally:
                ring.release(slot)
            if self._stop_requested or any(s.quit for s in run.sinks):
                stages.stop.set()
        run.stages.stop.set()
        for p in run.stages.procs:
            p.join(timeout=5)
        if signalled.is_set():
            self.camera_stats = run.stats()
            return  # interrupted: what was written is complete; run() reports the interruption
        self._check(plan, run, final=True)
        self.stats = monitor.report()
        self.camera_stats = run.stats()
        if self.failed:
            raise PipelineError("; ".join(f"camera {n}: {msg}" for n, msg in self.failed.items()))

    def _watchdog_limits(self, plan: MultiPlan) -> dict[str, float]:
        """Seconds each stage may go without a heartbeat (as a single run's, per camera)."""
        limits: dict[str, float] = {}
        for src, info in zip(plan.sources, plan.infos):
            one = _watchdog_limits(replace(self.config, source=src), info)
            limits[f"capture:{src.name}"] = one["capture"]
            limits["infer"], limits["post"] = one["infer"], one["post"]
        return limits

    def _watch(self, plan: MultiPlan, run: _MultiRun) -> None:
        """A camera whose capture stopped making progress is killed and ends alone, like a camera
        that failed (the others go on); a hung inference or post stage is restarted (see _restart)."""
        stalled = run.beats.stalled(run.limits)
        if not stalled:
            return
        name, age = stalled
        what = f"{name} stage made no progress for {age:.0f} s (hung or stopped)"
        if not name.startswith("capture:"):
            self._restart(plan, run, what)
            return
        cam = name.split(":", 1)[1]
        k = run.names.index(cam)
        run.limits[name] = 0.0  # handled: not watched again
        if cam not in self.failed:
            self.failed[cam] = f"{what}; stopped"
            log.error("camera %s: %s (the other cameras go on)", cam, self.failed[cam])
        p = next((p for p in run.stages.procs if p.name == f"gapstream-capture-{cam}"), None)
        if p is not None:
            p.kill()
            p.join(timeout=2)
        run.stages.rings[k].close_stream()

    def _restart(self, plan: MultiPlan, run: _MultiRun, what: str) -> None:
        """Replace every stage, the healthy cameras' captures too, with fresh processes, rings and
        queues (the sinks stay open), as a single live run does (pipeline._watch); or end the run.

        The captures go too because they share the rings with the stage that died or hung: it
        may have held a ring queue's lock, or taken slots that never come back.
        """
        live = all(info.live for n, info in zip(run.names, plan.infos) if n not in self.failed)
        if not live or run.restarts >= MAX_RESTARTS:
            why = f"after {run.restarts} restarts" if live else "ended the run (a camera is not live)"
            raise PipelineError(f"{what}; {why} (the watchdog_timeout config key sets this limit)")
        run.restarts += 1
        log.warning("%s; restarting the stages of every camera, their captures too (restart %d of at most "
                    "%d in a row)", what, run.restarts, MAX_RESTARTS)
        run.stages.close()  # kills what hangs; its queues and rings go with it
        dropped = []
        for k, (n, cc) in enumerate(zip(run.names, run.cam_counters)):
            # Frames lost with the old rings were decoded but never inferred: count them as dropped,
            # so that inferred + dropped == captured still holds.
            lost = cc.snapshot()["captured"] - self.camera_stats[n]["inferred"] - run.dropped(k)
            dropped.append(run.dropped(k) + max(lost, 0))
            if n in self.failed:
                run.limits[f"capture:{n}"] = 0.0  # not started again: nothing to watch
        stages = run.spawn(run.next_index)
        # Swapped together, so that a metrics scrape (another thread) never counts a ring twice.
        run.stages, run.dropped_before = stages, dropped
        run.counters.add("restarts")

    def _check(self, plan: MultiPlan, run: _MultiRun, final: bool = False) -> None:
        """A failed camera is logged and left to end alone; a failed infer or post stage ends the run,
        one killed by a signal (the OOM killer, say) is restarted (see _restart)."""
        errors, names = run.errors, run.names
        while True:
            try:
                stage, msg = errors.get(timeout=0.2) if final else errors.get_nowait()
            except queue.Empty:
                break
            if stage.startswith("capture:"):
                name = stage.split(":", 1)[1]
                if name not in self.failed:
                    log.error("camera %s failed: %s (the other cameras go on)", name, msg)
                    self.failed[name] = msg
            else:
                raise PipelineError(f"{stage} stage failed: {msg}")
        for p in run.stages.procs:
            if p.exitcode in (None, 0):
                continue
            if p.name.startswith("gapstream-capture-"):
                k = names.index(p.name.removeprefix("gapstream-capture-"))
                if p.exitcode == -9 and names[k] in self.failed:
                    continue  # killed by the watchdog (_watch), already reported
                if names[k] not in self.failed:
                    # Killed without a word: end its stream here so that inference does not wait for it.
                    self.failed[names[k]] = f"capture process died (exit code {p.exitcode})"
                    log.error("camera %s: %s (the other cameras go on)", names[k], self.failed[names[k]])
                    run.stages.rings[k].close_stream()
                continue
            if p.exitcode > 0:  # it failed and said why: its message may still be on its way
                try:
                    stage, msg = errors.get(timeout=1.0)
                except queue.Empty:
                    raise PipelineError(f"{p.name} died unexpectedly (exit code {p.exitcode})") from None
                raise PipelineError(f"{stage} stage failed: {msg}")
            what = f"{p.name.removeprefix('gapstream-')} stage was killed (signal {-p.exitcode})"
            if final:
                raise PipelineError(what)
            self._restart(plan, run, what)
            return


def camera_line(stats: dict[str, dict[str, int]]) -> str:
    """Per-camera counters on one line: ``door 120 frames, captured 125, dropped 5, reconnects 0 | ...``
    (frames: results; captured: frames decoded; dropped: decoded but not inferred, a live ring
    being full; so frames + dropped == captured once the run has drained)."""
    return " | ".join(f"{n} {s['inferred']} frames, captured {s['captured']}, dropped {s['dropped']}, "
                      f"reconnects {s['reconnects']}" for n, s in stats.items())


def run_infer(model_path: str, input_sizes: list[tuple[int, int] | None], mcfg: ModelConfig,
              icfg: InferConfig, rings: list[Ring], maps: Ring, stop: Any, counters: Any,
              beat: Callable[[], None], zoom: ZoomSpec | None = None) -> None:
    """Inference process over several frame rings: batches mix cameras in arrival order.

    One thread per ring moves its ready frames to a local queue as the batches take them (so
    that a live ring can still take back its oldest waiting frame); a ring that ends (or
    whose camera failed) just stops contributing. Camera ``k``'s frames run at
    ``input_sizes[k]`` (None: at their own size's, see :class:`infer.Models`): a batch is split
    by input size, one interpreter call per size, keeping each camera's order. ``zoom``: as in
    :func:`infer.run_stage`.
    """
    local: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=max(icfg.batch_size, len(rings)))
    threads = [threading.Thread(target=_forward, args=(k, ring, local, stop), daemon=True)
               for k, ring in enumerate(rings)]
    try:
        models = Models(model_path, mcfg, icfg.batch_size, input_sizes, beat, zoom)
        for t in threads:
            t.start()
        open_rings = len(rings)
        while open_rings and not stop.is_set():
            beat()
            try:
                k, item = local.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is EOS:
                open_rings -= 1
                continue
            batch, cams = [item], [k]
            deadline = time.monotonic() + icfg.batch_timeout_ms / 1000
            while len(batch) < icfg.batch_size and open_rings:
                try:
                    k, item = local.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is EOS:
                    open_rings -= 1
                    continue
                batch.append(item)
                cams.append(k)
            if not run_grouped(models, rings, cams, batch, maps, stop, counters, beat):
                return
    finally:  # the forwarders are daemon threads that watch ``stop``
        maps.close_stream()


def _forward(k: int, ring: Ring, local: queue.Queue, stop: Any) -> None:
    while not stop.is_set():
        try:
            item = ring.get(timeout=0.1)
        except queue.Empty:
            continue
        if item is not EOS:
            item[1].camera = k
        while not stop.is_set():
            try:
                local.put((k, item), timeout=0.1)
                break
            except queue.Full:
                continue
        if item is EOS:
            return


def parse_sources(args: list[str], base: SourceConfig) -> list[SourceConfig]:
    """``NAME=URI`` or plain ``URI`` command-line sources (named ``cam1``, ``cam2``, ...), with
    the other keys from the config's ``source`` section."""
    out = []
    for i, arg in enumerate(args):
        name, sep, uri = arg.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            name, uri = f"cam{i + 1}", arg
        out.append(replace(base, uri=uri, name=name))
    return out
