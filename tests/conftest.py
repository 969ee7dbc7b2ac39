"""Shared fixtures: a tiny model, a small video, and a leak check around every test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import gapstream_children, make_tiny_model, make_video, shm_segments

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Every test must leave no shared-memory ring and no stage process of this process behind."""
    yield
    assert not shm_segments(), "leaked shared memory"
    assert not gapstream_children(), "leaked stage processes"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return make_video(tmp_path / "clip.mp4")
