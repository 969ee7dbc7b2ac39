"""Labelled real clips: the ``labels.json`` layout (per-second person segments, train/eval split).

``labels.json`` holds ``{"clips": [{"file", "split", "fps", "frames", "width", "height",
"segments": [{"start", "end", "person"}], ...}]}`` with paths relative to its folder.
Frame labels come from the segment that holds the frame's time; image-level labels are
exactly what GAP training needs, and what evaluation compares the run-time decision with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

SPLITS = ("train", "val", "eval", "all")


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    person: bool


@dataclass(frozen=True)
class Clip:
    """One labelled clip."""

    path: Path
    split: str
    segments: tuple[Segment, ...]
    width: int = 0
    height: int = 0

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"

    @property
    def duration(self) -> float:
        return self.segments[-1].end if self.segments else 0.0

    def label_at(self, t: float, margin: float = 0.0) -> bool | None:
        """The person label at time ``t`` s; ``None`` within ``margin`` s of a change of label
        (edge seconds can be off by a fraction of a second) or outside the segments."""
        for i, s in enumerate(self.segments):
            if s.start <= t < s.end or (i == len(self.segments) - 1 and t >= s.end):
                if margin > 0:
                    prev = self.segments[i - 1].person if i > 0 else s.person
                    nxt = self.segments[i + 1].person if i + 1 < len(self.segments) else s.person
                    near_start = prev != s.person and t - s.start < margin
                    if near_start or (nxt != s.person and s.end - t < margin):
                        return None
                return s.person
        return None


def folders(roots: str | Path | Sequence[str | Path] | None) -> list[Path]:
    """One labelled folder or several (a repeatable option), as a list; None is none."""
    return [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots or []]


def load_clips(root: str | Path, split: str = "all") -> list[Clip]:
    """The clips of ``root/labels.json`` in ``split`` (train, eval or all)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    root = Path(root)
    path = root / "labels.json" if root.is_dir() else root
    if not path.is_file():
        raise DataError(f"{path} not found (expected a folder with labels.json)")
    try:
        raw = json.loads(path.read_text())["clips"]
        clips = [
            Clip(path.parent / c["file"], c["split"],
                 tuple(Segment(float(s["start"]), float(s["end"]), bool(s["person"])) for s in c["segments"]),
                 int(c.get("width", 0)), int(c.get("height", 0)))
            for c in raw
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a clip label file ({exc})") from exc
    clips = [c for c in clips if split == "all" or c.split == split]
    missing = [str(c.path) for c in clips if not c.path.is_file()]
    if missing:
        raise DataError(f"{path}: clip files missing: {', '.join(missing[:3])}")
    return clips


def sample_frames(clip: Clip, every_s: float, margin: float = 0.3, seed: int = 0
                  ) -> Iterator[tuple[np.ndarray, bool, float]]:
    """``(rgb frame, person label, time)`` about every ``every_s`` seconds (jittered), skipping
    frames near a change of label."""
    import av

    rng = np.random.default_rng(seed)
    with av.open(str(clip.path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        next_t = 0.0
        for frame in container.decode(stream):
            t = float(frame.time or 0.0)
            if t < next_t:
                continue
            next_t = t + every_s * rng.uniform(0.6, 1.4)
            label = clip.label_at(t, margin)
            if label is not None:
                yield frame.to_ndarray(format="rgb24"), label, t
