"""Several cameras in one run, like DeepStream's nvstreammux.

    for result in gapstream.multi.MultiPipeline(config="configs/cameras-4.yaml").run():
        print(result.camera, result.index, result.person_prob)

Each camera has its own capture process and frame ring (its own reconnects, drops and
counters) and its own network input size (its aspect ratio is kept); one inference process
batches frames across all cameras (a batch runs as one interpreter call per input size in it),
one post process does the CAM and boxes, and the result loop hands each result, named by its
camera, to the sinks.
A camera whose source fails is reported and ends alone: the others go on, and the run ends
with an error naming it once they are done.
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
    _frame_fields,
    _maps_fields,
    _shutdown,
    _watchdog_limits,
    direct_decode,
    resolve_model,
    resolve_post,
)
from .results import Result
from .ring import EOS, Ring
from .signals import StopFlag, stop_on_signals
from .sinks import Sink, sink_factories
from .stage import stage_main
from .stats import Counters, StatsMonitor, StatsReport
from .watchdog import Heartbeats

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
        check_outputs({"--json": cfg.output.json}, [str(model_path), *inputs])
        meta = load_meta(model_path)
        infos = [capture.probe(s) for s in cfg.sources]
        post_cfg = resolve_post(cfg.post, meta)
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
                         maps_shape)

    def run(self) -> Iterator[Result]:
        """As :meth:`Pipeline.run`: SIGINT and SIGTERM stop the run cleanly, then KeyboardInterrupt."""
        with contextlib.ExitStack() as stack:
            flag = stack.enter_context(stop_on_signals())
            plan = self.plan()
            if not flag.is_set():
                yield from self._results(plan, flag, *self._start(plan, stack))
        if flag.is_set():
            raise KeyboardInterrupt

    def _start(self, plan: MultiPlan, stack: contextlib.ExitStack) -> tuple[Any, ...]:
        cfg, meta = self.config, plan.meta
        ctx = mp.get_context("fork")
        shm.remove_stale()
        rings: list[Ring] = []
        for k, info in enumerate(plan.infos):
            slots = cfg.buffers.live_frame_slots if info.live else cfg.buffers.frame_slots
            ring = shm.make_ring(_frame_fields(info), max(slots, cfg.infer.batch_size + 1), ctx, f"frames{k}")
            stack.callback(ring.close)
            rings.append(ring)
        maps = shm.make_ring(_maps_fields(meta, plan.maps_shape),
                             max(cfg.buffers.result_slots, cfg.infer.batch_size), ctx, "maps")
        stack.callback(maps.close)
        procs: list[Any] = []
        stack.callback(_shutdown, procs)
        results, errors, counters = ctx.Queue(), ctx.Queue(), Counters(ctx)
        cam_counters = [Counters(ctx) for _ in rings]
        names = [s.name for s in plan.sources]
        self.camera_stats = {n: {"captured": 0, "dropped": 0, "reconnects": 0, "inferred": 0} for n in names}

        def stats() -> dict[str, dict[str, int]]:
            out = {}
            for n, ring, cc in zip(names, rings, cam_counters):
                snap = cc.snapshot()
                out[n] = {"captured": snap["captured"], "reconnects": snap["reconnects"],
                          "dropped": ring.dropped, "inferred": self.camera_stats[n]["inferred"]}
            return out

        factories = sink_factories(cfg.output, 0.0, True) + monitor_factories(
            cfg, plan.post, meta.person_index, plan.annotate, stats, plan.sources)
        sinks = [stack.enter_context(open_sink()) for open_sink in factories]
        stop = ctx.Event()
        stack.callback(stop.set)
        # Heartbeats of every stage, each camera's capture too (see _watch).
        beats = Heartbeats([f"capture:{n}" for n in names] + ["infer", "post"], ctx)
        t0 = time.monotonic()
        stages: list[tuple[str, Any, tuple]] = [
            (f"capture:{n}", capture.run_stage,
             (info, src, ring, stop, cc, beats.beat(f"capture:{n}"), 0, t0))
            for n, info, src, ring, cc in zip(names, plan.infos, plan.sources, rings, cam_counters)
        ]
        stages += [
            ("infer", run_infer, (str(plan.model_path), plan.input_sizes, cfg.model, cfg.infer, rings, maps,
                                  stop, counters, beats.beat("infer"))),
            ("post", post.run_stage, (meta, plan.post, plan.annotate, maps, rings, results, stop, counters,
                                      beats.beat("post"), [src.masks for src in plan.sources])),
        ]
        for name, fn, args in stages:
            p = ctx.Process(target=stage_main, args=(name, fn, errors, *args),
                            name=f"gapstream-{name.replace(':', '-')}", daemon=True)
            p.start()
            procs.append(p)
        for n, info, size in zip(names, plan.infos, plan.input_sizes):
            net = f"{size[1]}x{size[0]}" if size else "keeps each frame's aspect"
            log.info("camera %s: %s (%s, %dx%d%s), network input %s", n, info.name, info.kind, info.width,
                     info.height, ", live" if info.live else "", net)
        log.info("%d cameras, model %s, batch %d across cameras", len(names), plan.model_path.name,
                 cfg.infer.batch_size)
        return rings, results, errors, counters, cam_counters, procs, sinks, stop, stats, beats

    def _results(self, plan: MultiPlan, signalled: StopFlag, rings: list[Ring], results: Any, errors: Any,
                 counters: Counters, cam_counters: list[Counters], procs: list[Any], sinks: list[Sink],
                 stop: Any, stats: Any, beats: Heartbeats) -> Iterator[Result]:
        names = [s.name for s in plan.sources]
        monitor = StatsMonitor(_Totals(counters, cam_counters), self.config.output.stats_interval,  # type: ignore[arg-type]
                               lambda: sum(r.dropped for r in rings))
        last_log = time.monotonic()
        limits = self._watchdog_limits(plan)
        last_watch = time.monotonic()
        while not signalled.is_set():
            try:
                item = results.get(timeout=0.2)
            except queue.Empty:
                self._check(procs, errors, rings, names)
                self._watch(beats, limits, procs, rings, names)
                monitor.maybe_log()
                continue
            if item is EOS:
                break
            slot, rec = item
            if time.monotonic() - last_watch >= 0.5:  # the other cameras' results keep the queue busy
                last_watch = time.monotonic()
                self._watch(beats, limits, procs, rings, names)
            ring = rings[rec.camera]
            frame = ring.view(slot)["frame"][: rec.h, : rec.w]
            result = Result.from_record(rec, frame, plan.meta.person_index, time.monotonic())
            result.camera = names[rec.camera]
            for s in sinks:
                s.write(result)
            rec.t_out = time.monotonic()
            monitor.frame_done(rec)
            counters.add("output")
            self.camera_stats[result.camera]["inferred"] += 1
            monitor.maybe_log()
            interval = self.config.output.stats_interval
            if interval > 0 and rec.t_out - last_log >= interval:
                last_log = rec.t_out
                log.info("cameras: %s", camera_line(stats()))
            try:
                yield result
            finally:
                ring.release(slot)
            if self._stop_requested or any(s.quit for s in sinks):
                stop.set()
        stop.set()
        for p in procs:
            p.join(timeout=5)
        if signalled.is_set():
            self.camera_stats = stats()
            return  # interrupted: what was written is complete; run() reports the interruption
        self._check(procs, errors, rings, names, final=True)
        self.stats = monitor.report()
        self.camera_stats = stats()
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

    def _watch(self, beats: Heartbeats, limits: dict[str, float], procs: list[Any], rings: list[Ring],
               names: list[str]) -> None:
        """A camera whose capture stopped making progress is killed and ends alone, like a camera
        that failed (the others go on); a hung inference or post stage ends the run with an error.
        (No restart here: a single-camera live run restarts its stages, see pipeline._watch.)"""
        stalled = beats.stalled(limits)
        if not stalled:
            return
        name, age = stalled
        what = f"{name} stage made no progress for {age:.0f} s (hung or stopped)"
        if not name.startswith("capture:"):
            raise PipelineError(f"{what}; ended the run (the watchdog_timeout config key sets this limit)")
        cam = name.split(":", 1)[1]
        k = names.index(cam)
        limits[name] = 0.0  # handled: not watched again
        if cam not in self.failed:
            self.failed[cam] = f"{what}; stopped"
            log.error("camera %s: %s (the other cameras go on)", cam, self.failed[cam])
        p = next(p for p in procs if p.name == f"gapstream-capture-{cam}")
        p.kill()
        p.join(timeout=2)
        rings[k].close_stream()

    def _check(self, procs: list[Any], errors: Any, rings: list[Ring], names: list[str],
               final: bool = False) -> None:
        """A failed camera is logged and left to end alone; a failed infer or post stage ends the run."""
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
        for p in procs:
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
                    rings[k].close_stream()
            else:
                raise PipelineError(f"{p.name} died unexpectedly (exit code {p.exitcode})")


def camera_line(stats: dict[str, dict[str, int]]) -> str:
    """Per-camera counters on one line: ``door 120 frames, captured 125, dropped 5, reconnects 0 | ...``
    (frames: results; captured: frames decoded; dropped: decoded but not inferred, a live ring
    being full; so frames + dropped == captured once the run has drained)."""
    return " | ".join(f"{n} {s['inferred']} frames, captured {s['captured']}, dropped {s['dropped']}, "
                      f"reconnects {s['reconnects']}" for n, s in stats.items())


def run_infer(model_path: str, input_sizes: list[tuple[int, int] | None], mcfg: ModelConfig,
              icfg: InferConfig, rings: list[Ring], maps: Ring, stop: Any, counters: Any,
              beat: Callable[[], None]) -> None:
    """Inference process over several frame rings: batches mix cameras in arrival order.

    One thread per ring moves its ready frames to a local queue as the batches take them (so
    that a live ring can still take back its oldest waiting frame); a ring that ends (or
    whose camera failed) just stops contributing. Camera ``k``'s frames run at
    ``input_sizes[k]`` (None: at their own size's, see :class:`infer.Models`): a batch is split
    by input size, one interpreter call per size, keeping each camera's order.
    """
    local: queue.Queue[tuple[int, Any]] = queue.Queue(maxsize=max(icfg.batch_size, len(rings)))
    threads = [threading.Thread(target=_forward, args=(k, ring, local, stop), daemon=True)
               for k, ring in enumerate(rings)]
    try:
        models = Models(model_path, mcfg, icfg.batch_size, input_sizes, beat)
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
