"""A batch run: inputs -> manifest -> runner (local pool or Ray) -> manifest, progress, report."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..config import PipelineConfig
from ..errors import OutputError
from ..meta import load_meta
from ..pipeline import resolve_model
from .inputs import InputFile, discover
from .job import FileOutcome, FileTask
from .manifest import Manifest, locked
from .pool import LocalPool, Progress
from .progress import BatchProgress
from .ray_runner import RayRunner

log = logging.getLogger("gapstream.batch")

# What one pipeline keeps busy: decoding (capture) and inference each take about a core on
# offline files (the benchmark's CPU column: 150-170 % per pipeline).
CORES_PER_PIPELINE = 2


@dataclass
class BatchOptions:
    inputs: list[str]
    out: Path
    config: PipelineConfig
    video: bool = False
    workers: int | None = None  # None: from the cores
    ray: str | None = None  # a Ray address (or auto / local): run on Ray instead of locally
    retry_failed: bool = False
    max_attempts: int = 3  # per file, when its worker dies mid-file
    cpus_per_file: float = CORES_PER_PIPELINE  # Ray
    progress: bool = True


@dataclass
class BatchReport:
    outcomes: list[FileOutcome] = field(default_factory=list)  # this run's files
    skipped: int = 0  # done in an earlier run
    not_retried: list[FileOutcome] = field(default_factory=list)  # failed earlier, left alone
    runner: str = ""
    interrupted: bool = False  # stopped by a signal before every file was done

    @property
    def failed(self) -> int:
        return sum(not o.ok for o in self.outcomes) + len(self.not_retried)


def cores() -> int:
    return len(os.sched_getaffinity(0))


def default_workers(n_cores: int) -> int:
    return max(1, n_cores // CORES_PER_PIPELINE)


def settings(opts: BatchOptions) -> dict:
    """What decides a file's outputs; a manifest made with other settings is not reused."""
    model = resolve_model(opts.config.model.path)
    ev = opts.config.events  # the per-file events follow its rule (batch/events.py)
    rule = {k: getattr(ev, k) for k in ("on_threshold", "off_threshold", "min_frames", "hold_time")}
    return {"model": load_meta(model).tflite_sha256 or str(model), "post": asdict(opts.config.post),
            "events": rule, "video": opts.video}


def _task_config(cfg: PipelineConfig, threads: int) -> PipelineConfig:
    """The config every file gets: the model by absolute path (a Ray worker's working folder is
    not ours) and ``threads`` inference threads unless the config sets them."""
    model = replace(cfg.model, path=str(resolve_model(cfg.model.path).absolute()))
    if not model.num_threads:
        model = replace(model, num_threads=max(1, threads))
    return replace(cfg, model=model)


def run_batch(opts: BatchOptions, say: Callable[[str], None] = print,
              stop: Callable[[], bool] = lambda: False) -> BatchReport:
    """Process every file ``opts.inputs`` names that is not done yet; ``say`` reports choices.

    Once ``stop()`` (a signal's flag) the files in flight are abandoned, what finished is in the
    manifest, and the report says ``interrupted``: a re-run resumes.
    """
    out = opts.out
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder")
    files = discover(opts.inputs, out)
    sets = settings(opts)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror}") from None
    report = BatchReport()
    with locked(out):
        manifest = Manifest(out, sets)
        todo: list[InputFile] = []
        for f in files:
            status = manifest.status(f)
            if status == "done":
                report.skipped += 1
            elif status == "failed" and not opts.retry_failed:
                report.not_retried.append(manifest.outcome(f.key))
            else:
                todo.append(f)
        say(f"{len(files)} files: {len(todo)} to do, {report.skipped} done earlier"
            + (f", {len(report.not_retried)} failed earlier (--retry-failed to retry)"
               if report.not_retried else ""))
        if todo:
            _run(opts, todo, manifest, report, say, stop)
            report.interrupted = stop()
    return report


def _run(opts: BatchOptions, todo: list[InputFile], manifest: Manifest, report: BatchReport,
         say: Callable[[str], None], stop: Callable[[], bool]) -> None:
    by_key = {f.key: f for f in todo}
    if opts.ray:
        runner: LocalPool | RayRunner = RayRunner(opts.ray, opts.cpus_per_file, opts.max_attempts)
        cfg = _task_config(opts.config, int(opts.cpus_per_file))
    else:
        n = opts.workers or default_workers(cores())
        runner = LocalPool(n, opts.max_attempts)
        cfg = _task_config(opts.config, cores() // n)
        how = "--workers" if opts.workers else f"{cores()} cores / {CORES_PER_PIPELINE} per pipeline"
        say(f"local pool: {n} worker(s) ({how}), {cfg.model.num_threads} inference thread(s) each")
    out = opts.out.absolute()
    tasks = [FileTask(f.key, str(f.path), str(out / f.key), cfg, opts.video) for f in todo]
    with runner:
        if isinstance(runner, RayRunner):
            report.runner = f"ray ({opts.ray})"
            say(f"ray: {runner.cluster_cpus():g} CPUs in the cluster, {opts.cpus_per_file:g} per file")
        else:
            report.runner = f"local ({runner.workers} workers)"
        with BatchProgress(len(tasks), opts.progress) as bar:
            for item in runner.run(tasks, stop):
                if isinstance(item, Progress):
                    bar.frames(item.key, item.frames)
                    continue
                manifest.record(by_key[item.key], item)
                report.outcomes.append(item)
                bar.file_done(item)
