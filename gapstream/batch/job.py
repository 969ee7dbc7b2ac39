"""One file through one pipeline: per-frame JSON Lines, events and optionally the annotated video.

:func:`process_file` never raises for a bad file: it returns a failed :class:`FileOutcome` with
a one-line error and a reason, so that one file never stops the others (locally or on Ray).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..config import PipelineConfig
from ..credentials import redact_text
from ..errors import ConfigError, GapstreamError, ModelError, OutputError, PipelineError, SourceError
from .events import PresenceIntervals, person_seconds
from .outputs import PartFiles

FRAMES, EVENTS, VIDEO = "frames.jsonl", "events.jsonl", "annotated.mp4"
PROGRESS_EVERY = 0.5  # seconds between progress reports

_REASONS: tuple[tuple[type[GapstreamError], str], ...] = (
    (SourceError, "bad input"), (PipelineError, "read error"), (ModelError, "model error"),
    (OutputError, "output error"), (ConfigError, "config error"),
)


@dataclass(frozen=True)
class FileTask:
    key: str
    source: str  # absolute input path
    out_dir: str  # this file's output folder
    config: PipelineConfig
    video: bool  # also write the annotated video


@dataclass
class FileOutcome:
    key: str
    status: str  # "done" | "failed"
    frames: int = 0
    seconds: float = 0.0  # wall time of the last attempt
    person_seconds: float = 0.0
    events: int = 0
    error: str = ""  # one line
    reason: str = ""  # why it ended: bad input, read error, worker killed (SIGKILL), crash...
    attempts: int = 1
    worker: str = ""  # host:pid

    @property
    def ok(self) -> bool:
        return self.status == "done"


def file_config(task: FileTask, video_path: Path | None) -> PipelineConfig:
    """The task's config for this one file: offline, no window, no stats lines, our video sink."""
    cfg = task.config
    return replace(cfg, source=replace(cfg.source, uri=task.source, live=False),
                   output=replace(cfg.output, json=None, show=False, stats_interval=0,
                                  video=str(video_path) if video_path else None))


def frame_record(result_dict: dict) -> dict:
    """``run --json``'s record without the latency, which depends on the machine's load:
    batch outputs are then the same wherever and however often a file is processed."""
    result_dict.pop("latency_ms", None)
    return result_dict


def process_file(task: FileTask, progress: Callable[[int], None] | None = None,
                 stop: Callable[[], bool] | None = None) -> FileOutcome:
    """Process one file; ``progress(frames)`` is called about every :data:`PROGRESS_EVERY` s.

    When ``stop()`` turns true the file is abandoned (no outputs) with KeyboardInterrupt.
    """
    from ..pipeline import Pipeline  # here: a worker pays for the import once, the CLI not at all

    t0 = time.monotonic()
    outcome = FileOutcome(task.key, "failed", worker=f"{socket.gethostname()}:{os.getpid()}")
    try:
        with PartFiles(Path(task.out_dir)) as parts:
            video = parts.part(VIDEO) if task.video else None
            intervals = PresenceIntervals(task.config.events)
            last_report = t0
            results = Pipeline(config=file_config(task, video)).run()
            # closing: an interrupt stops the stages and frees the rings before we unwind further
            with open(parts.part(FRAMES), "w", buffering=1 << 16) as f, contextlib.closing(results):
                for r in results:
                    if stop is not None and stop():
                        raise KeyboardInterrupt
                    d = r.to_dict()
                    f.write(json.dumps(frame_record(d)) + "\n")
                    intervals.update(r.index, d["time"], r.person_prob)
                    outcome.frames += 1
                    if progress is not None and time.monotonic() - last_report >= PROGRESS_EVERY:
                        progress(outcome.frames)
                        last_report = time.monotonic()
            events = intervals.finish()
            with open(parts.part(EVENTS), "w") as f:
                f.writelines(json.dumps(e.to_dict()) + "\n" for e in events)
            parts.commit()
        outcome.status, outcome.events = "done", len(events)
        outcome.person_seconds = round(person_seconds(events), 4)
    except GapstreamError as exc:
        outcome.error = one_line(str(exc))
        outcome.reason = next((r for cls, r in _REASONS if isinstance(exc, cls)), "error")
    except OSError as exc:  # our own outputs (a full disk, a folder we may not write)
        outcome.error, outcome.reason = one_line(f"cannot write outputs: {exc}"), "output error"
    except Exception as exc:  # noqa: BLE001 - a bug on one file must not stop the others
        outcome.error, outcome.reason = one_line(f"{type(exc).__name__}: {exc}"), "crash"
    outcome.seconds = round(time.monotonic() - t0, 3)
    return outcome


def one_line(text: str) -> str:
    return redact_text(" ".join(text.split()))
