"""SIGINT and SIGTERM as a stop flag: a signal never raises in the middle of a write.

The handler only records the signal; the pipeline checks the flag between results, stops
the stages, closes (flushes) the sinks and then reports the interruption.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_active: list[StopFlag] = []  # the flag the installed handlers set, innermost last


class StopFlag:
    """Set by a signal (or by hand); ``signum`` is the first signal received."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._event = threading.Event()

    def set(self, signum: int | None = None) -> None:
        if self.signum is None:
            self.signum = signum
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@contextlib.contextmanager
def stop_on_signals(flag: StopFlag | None = None) -> Iterator[StopFlag]:
    """Route SIGINT and SIGTERM to ``flag`` while inside; the old handlers come back on exit.

    Nested use shares the flag already installed, so that a signal that came before an inner
    block started is still seen by it. Off the main thread (where handlers cannot be
    installed) the flag only works by hand.
    """
    if flag is None and _active:
        yield _active[-1]
        return
    flag = flag or StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        flag.set(signum)  # a second signal changes nothing: the clean stop is already under way

    old = {s: signal.signal(s, handler) for s in SIGNALS}
    _active.append(flag)
    try:
        yield flag
    finally:
        _active.pop()
        for s, h in old.items():
            signal.signal(s, h)
