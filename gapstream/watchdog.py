"""Stage heartbeats and the watchdog that reads them (in the spirit of Frigate's detector watchdog).

Each stage beats whenever its loop turns: after each unit of work and while it waits for
input or for a free slot (at least every 0.1 s). A stage that stops beating (hung in a library
call, SIGSTOPped, swapped out for good) is found by the parent within the configured time.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any


class Beat:
    """A stage's side: call it to say "still making progress"."""

    def __init__(self, arr: Any, index: int) -> None:
        self._arr, self._index = arr, index

    def __call__(self) -> None:
        # CLOCK_MONOTONIC is system-wide, so the parent can compare it with its own clock.
        self._arr[self._index] = time.monotonic()


class Heartbeats:
    """The last beat of each named stage, in shared memory (one writer per entry, no lock)."""

    def __init__(self, names: list[str], ctx: Any = None) -> None:
        ctx = ctx or mp.get_context()
        self.names = list(names)
        self._arr = ctx.Array("d", [time.monotonic()] * len(self.names), lock=False)

    def beat(self, name: str) -> Beat:
        return Beat(self._arr, self.names.index(name))

    def reset(self) -> None:
        """Start every stage's clock now (after a restart)."""
        now = time.monotonic()
        for i in range(len(self.names)):
            self._arr[i] = now

    def stalled(self, limits: dict[str, float], now: float | None = None) -> tuple[str, float] | None:
        """The stage that has been silent longest beyond its limit, and for how long; or None."""
        now = time.monotonic() if now is None else now
        worst: tuple[str, float] | None = None
        for i, name in enumerate(self.names):
            age = now - self._arr[i]
            if limits.get(name, 0) > 0 and age > limits[name] and (worst is None or age > worst[1]):
                worst = (name, age)
        return worst
