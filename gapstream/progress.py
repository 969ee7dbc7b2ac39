"""The progress bar of a run: frame N of M with an ETA (tqdm), on stderr, only on a terminal."""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import IO, Any

from tqdm import tqdm


class Progress:
    """Counts delivered frames; draws a bar when ``stream`` is a terminal and the length is known."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._bar: Any = None

    def update(self, total: int | None) -> None:
        """One more frame of ``total`` (None: unknown, e.g. a live stream: no bar)."""
        if not self.enabled or not total:
            return
        if self._bar is None:
            cols, rows = self._size()
            self._bar = tqdm(total=total, unit="frame", file=self.stream, ncols=cols, nrows=rows,
                             mininterval=0.5, desc="gapstream")
        self._bar.update()

    def _size(self) -> tuple[int, int]:
        # A terminal that reports no size (0 x 0, say a bare pty) would hide the bar.
        try:
            size = os.get_terminal_size(self.stream.fileno())
        except (OSError, ValueError):
            return 80, 24
        return size.columns or 80, size.lines or 24

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
