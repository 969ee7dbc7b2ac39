"""The stats monitor warns once when a live source's frames start being dropped."""

from __future__ import annotations

import logging

import pytest

from gapstream.pipeline import slow_hint
from gapstream.stats import Counters, StatsMonitor


def test_dropping_frames_warns_once_with_the_rates_and_the_hint(caplog: pytest.LogCaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    counters, dropped = Counters(), [0]
    clock = [100.0]
    monkeypatch.setattr("gapstream.stats.time.monotonic", lambda: clock[0])
    monitor = StatsMonitor(counters, 1.0, lambda: dropped[0], slow_hint="try --no-zoom")

    def second(captured: int, output: int, lost: int) -> None:
        counters.add("captured", captured)
        counters.add("output", output)
        dropped[0] += lost
        clock[0] += 1.0
        monitor.maybe_log()

    with caplog.at_level(logging.INFO, logger="gapstream.stats"):
        second(30, 30, 0)  # keeping up: no warning
        assert not [r for r in caplog.records if r.levelno == logging.WARNING]
        second(30, 20, 10)
        second(30, 20, 10)  # still dropping: said once is enough
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["dropping frames: the source delivers 30.0 fps, the pipeline keeps up with 20.0 fps; "
                        "try --no-zoom"]
    assert monitor.report().dropped == 20


def test_the_hint_names_the_zoom_only_when_it_runs() -> None:
    assert "--no-zoom" not in slow_hint(None) and "input_long_side" in slow_hint(None)
    assert "--no-zoom" in slow_hint(object()) and "zoom.every" in slow_hint(object())  # type: ignore[arg-type]
