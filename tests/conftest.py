"""Shared fixtures: a tiny model, a small video, and a leak check around every test."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import gapstream_children, make_tiny_model, make_video, shm_segments

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Every test must leave no shared-memory ring, no stage process of this process and no
    changed SIGINT/SIGTERM handler behind (an ignored SIGINT is inherited by every child)."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    changed = {signal.Signals(s).name: signal.getsignal(s) for s, h in handlers.items()
               if signal.getsignal(s) != h}
    for s, h in handlers.items():
        signal.signal(s, h)
    assert not changed, f"signal handlers left changed: {changed}"
    assert not shm_segments(), "leaked shared memory"
    assert not gapstream_children(), "leaked stage processes"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return make_video(tmp_path / "clip.mp4")
