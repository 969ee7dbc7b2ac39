"""The one overall progress bar: files done of all, frames per second across workers, ETA."""

from __future__ import annotations

import time
from types import TracebackType

from tqdm import tqdm

from .job import FileOutcome


class BatchProgress:
    """A tqdm bar over files; the rate shown is frames/s summed over every worker."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.bar = tqdm(total=total, unit="file", desc="batch", disable=not enabled, dynamic_ncols=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} files "
                                   "[{elapsed}<{remaining}{postfix}]")
        self.t0 = time.monotonic()
        self.frames_done = 0  # in finished files
        self.failed = 0
        self._running: dict[str, int] = {}  # frames so far in files still in flight

    def __enter__(self) -> BatchProgress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.bar.close()

    @property
    def fps(self) -> float:
        dt = time.monotonic() - self.t0
        return (self.frames_done + sum(self._running.values())) / dt if dt > 0 else 0.0

    def frames(self, key: str, frames: int) -> None:
        self._running[key] = frames
        self._show()

    def file_done(self, outcome: FileOutcome) -> None:
        self._running.pop(outcome.key, None)
        self.frames_done += outcome.frames
        self.failed += not outcome.ok
        self.bar.update(1)
        self._show()

    def _show(self) -> None:
        post = f"{self.fps:.1f} frames/s" + (f", {self.failed} failed" if self.failed else "")
        self.bar.set_postfix_str(post, refresh=False)
        self.bar.refresh()
