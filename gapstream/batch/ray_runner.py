"""The cluster runner: one Ray task per file on an existing (or a new local) Ray cluster.

Ray does the scheduling, the placement by free CPUs and the retry of a task whose worker died
(``max_retries``); a file that fails on its own (bad input) is a normal, failed outcome and is
not retried. Inputs, the model and DIR must be at the same paths on every node (a shared
filesystem); only the driver writes the manifest.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import shm
from ..errors import GapstreamError
from .job import FileOutcome, FileTask, one_line, process_file
from .outputs import remove_parts
from .pool import Progress

log = logging.getLogger("gapstream.batch")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise GapstreamError("--ray needs Ray: pip install 'gapstream[ray]'") from None
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a HOST:PORT nobody listens on: Ray itself would keep retrying for minutes."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        why = exc.strerror or str(exc) if isinstance(exc, OSError) else "expected HOST:PORT"
        raise GapstreamError(f"cannot reach the Ray cluster at {address!r}: {why}") from None


def ray_task(task: FileTask) -> FileOutcome:
    """What a Ray worker runs for one file. Ray retries a task whose worker was killed, but
    knows nothing of the shared memory the killed pipeline held: clear such leftovers first."""
    shm.remove_stale()
    return process_file(task)


class RayRunner:
    """``address``: ``auto`` (the cluster this machine belongs to), ``local`` (start one here) or
    ``HOST:PORT`` / ``ray://HOST:10001``. If Ray is already initialised (tests), that is used."""

    def __init__(self, address: str = "auto", cpus_per_file: float = 2, max_attempts: int = 3) -> None:
        self.address = address
        self.cpus_per_file = cpus_per_file
        self.max_attempts = max_attempts
        self._ray: Any = None
        self._started = False
        self._pending: dict[Any, FileTask] = {}

    def __enter__(self) -> RayRunner:
        ray = self._ray = import_ray()
        if not ray.is_initialized():
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING,
                         configure_logging=True, log_to_driver=True)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise GapstreamError(f"cannot connect to the Ray cluster at {self.address!r}: "
                                     f"{one_line(str(exc))} (start one with `ray start --head`, or "
                                     "use --ray local)") from None
            self._started = True
        return self

    def cluster_cpus(self) -> float:
        return float(self._ray.cluster_resources().get("CPU", 0))

    def run(self, tasks: list[FileTask], stop: Callable[[], bool] = lambda: False
            ) -> Iterator[Progress | FileOutcome]:
        """Outcomes as files finish; returns early once ``stop()`` (``__exit__`` cancels the rest)."""
        ray = self._ray
        remote = ray.remote(num_cpus=self.cpus_per_file, max_retries=self.max_attempts - 1,
                            retry_exceptions=False)(ray_task)
        self._pending = {remote.remote(t): t for t in tasks}
        while self._pending and not stop():
            done, _ = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=0.5,
                               fetch_local=False)
            for ref in done:
                task = self._pending.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as exc:
                    yield self._failed(task, exc)

    def _failed(self, task: FileTask, exc: Exception) -> FileOutcome:
        ray = self._ray
        died = isinstance(exc, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError |
                          ray.exceptions.OutOfMemoryError)
        reason = "worker killed" if died else "ray error"
        remove_parts(Path(task.out_dir))  # what the last killed attempt was writing
        first = one_line(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return FileOutcome(task.key, "failed", error=f"{type(exc).__name__}: {first}", reason=reason,
                           attempts=self.max_attempts if died else 1)

    def __exit__(self, *exc: object) -> None:
        ray = self._ray
        if ray is None:
            return
        for ref in self._pending:  # interrupted: stop what is still queued or running
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        self._pending = {}
        if self._started:
            ray.shutdown()
        shm.remove_stale()  # rings of tasks cancelled (killed) on this machine's Ray workers
