"""The local runner: N long-lived worker processes, one file at a time each.

Workers are spawned, not forked and not daemonic: each runs gapstream Pipelines, which fork
their own stage processes (a daemonic process may not have children), and a spawned worker
starts clean of the parent's threads and locks. A worker lives for many files, so the imports
and the interpreter start are paid once, not per file. Each worker has its own pipe, and the
parent waits on the pipes and the process sentinels together, so a worker that dies mid-file
(killed, out of memory) is seen at once, its file is retried up to ``max_attempts`` times, its
shared memory is removed and a new worker takes its place.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from .. import shm
from ..errors import PipelineError
from .job import FileOutcome, FileTask, process_file
from .outputs import remove_parts

log = logging.getLogger("gapstream.batch")

# (task, progress(frames), stop()) -> outcome; see job.process_file
Work = Callable[[FileTask, Callable[[int], None], Callable[[], bool]], FileOutcome]


@dataclass
class Progress:
    """Frames done so far in a file still being processed."""

    key: str
    frames: int


@dataclass
class _Worker:
    proc: Any
    conn: Connection
    task: FileTask | None = None
    attempt: int = 0


def raise_interrupt(signum: int, frame: Any) -> None:
    """A SIGTERM handler: stop the way Ctrl-C does."""
    raise KeyboardInterrupt


def _worker_main(conn: Connection, work: Work, stop: Any) -> None:
    """Take tasks from the pipe until told to stop: None on the pipe, or ``stop`` set mid-file."""
    from ..credentials import RedactingFormatter
    from ..stage import _die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    signal.signal(signal.SIGTERM, raise_interrupt)  # the last resort, if ``stop`` went unheeded
    _die_with_parent()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(processName)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    with contextlib.suppress(KeyboardInterrupt, EOFError, BrokenPipeError):
        while (task := conn.recv()) is not None:
            outcome = work(task, lambda n, key=task.key: conn.send(Progress(key, n)), stop.is_set)
            conn.send(outcome)


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"worker killed ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"worker killed (signal {-exitcode})"
    return f"worker exited (code {exitcode})"


class LocalPool:
    """Runs tasks on ``workers`` processes; ``run`` yields :class:`Progress` and :class:`FileOutcome`."""

    def __init__(self, workers: int, max_attempts: int = 3, work: Work = process_file) -> None:
        self.workers = workers
        self.max_attempts = max_attempts
        self.work = work
        self._ctx = mp.get_context("spawn")
        self._stop = self._ctx.Event()  # asks busy workers to abandon their file (cooperative)
        self._pool: list[_Worker] = []
        self._started = 0
        self._deaths_idle = 0

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_main, args=(child, self.work, self._stop), daemon=False,
                                 name=f"gapstream-batch-worker-{self._started}")
        proc.start()
        self._started += 1
        child.close()
        return _Worker(proc, parent)

    def run(self, tasks: list[FileTask], stop: Callable[[], bool] = lambda: False
            ) -> Iterator[Progress | FileOutcome]:
        """Outcomes as files finish; returns early once ``stop()`` (files in flight are then
        abandoned by :meth:`close`, and left to a later run)."""
        queue: deque[tuple[FileTask, int]] = deque((t, 1) for t in tasks)
        shm.remove_stale()  # rings of pipelines killed with an earlier batch (their owner is gone)
        self._pool = [self._spawn() for _ in range(min(self.workers, len(tasks)))]
        while (queue or any(w.task for w in self._pool)) and not stop():
            for w in self._pool:
                if w.task is None and queue:
                    w.task, w.attempt = queue.popleft()
                    with contextlib.suppress(OSError):  # died just now: _lost retries the file
                        w.conn.send(w.task)
            wait([w.conn for w in self._pool] + [w.proc.sentinel for w in self._pool], timeout=1.0)
            for w in list(self._pool):
                yield from self._receive(w)
                if not w.proc.is_alive():
                    self._pool.remove(w)
                    yield from self._lost(w, queue)
                    if queue:
                        self._pool.append(self._spawn())

    def _receive(self, w: _Worker) -> Iterator[Progress | FileOutcome]:
        with contextlib.suppress(EOFError, OSError):  # a dead worker's pipe: handled by _lost
            while w.conn.poll():
                msg = w.conn.recv()
                if isinstance(msg, FileOutcome):
                    msg.attempts = w.attempt
                    w.task = None
                yield msg

    def _lost(self, w: _Worker, queue: deque[tuple[FileTask, int]]) -> Iterator[FileOutcome]:
        """A worker died: clean up after it and retry (or give up on) its file."""
        w.proc.join()
        code = w.proc.exitcode
        shm.remove_stale(children={w.proc.pid})
        w.conn.close()
        why = _death(code)
        if w.task is None:
            self._deaths_idle += 1
            if self._deaths_idle > 2 * self.workers + 2:
                raise PipelineError(f"batch workers keep dying before any work ({why})")
            return
        task, attempt = w.task, w.attempt
        w.task = None
        if attempt < self.max_attempts:
            log.warning("%s: %s mid-file; retrying (attempt %d of %d)", task.key, why, attempt + 1,
                        self.max_attempts)
            queue.appendleft((task, attempt + 1))
            return
        remove_parts(Path(task.out_dir))
        yield FileOutcome(task.key, "failed", error=f"the worker died mid-file {attempt} times ({why})",
                          reason=why, attempts=attempt)

    def close(self) -> None:
        """Stop every worker (a file in flight is abandoned cleanly) and remove what they left."""
        self._stop.set()
        for w in self._pool:
            with contextlib.suppress(OSError):
                w.conn.send(None)
        deadline = time.monotonic() + 10
        for w in self._pool:
            w.proc.join(timeout=max(0.1, deadline - time.monotonic()))
            for end in (w.proc.terminate, w.proc.kill):  # a worker stuck in a stage: SIGTERM, SIGKILL
                if w.proc.is_alive():
                    end()
                    w.proc.join(timeout=5)
            w.conn.close()
        shm.remove_stale(children={w.proc.pid for w in self._pool})
        self._pool = []
