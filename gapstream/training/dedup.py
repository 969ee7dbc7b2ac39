"""Near-duplicate guard: is any collected video a copy of an eval clip (re-encoded, resized, cut)?

Collected footage must never leak the eval split into training. Each video becomes a few small
normalised grey thumbnails (one a second; five a second for the collected ones); two videos are
near-duplicates when some pair of their thumbnails is almost perfectly correlated. Scaling,
re-encoding, trimming and brightness or contrast changes keep that correlation near 1;
different scenes stay well below it.

    python -m gapstream.training.dedup data/footage_extra --against ../shared/data/clips

exits non-zero (one ``gapstream: error:`` line) when a video is within ``--max-distance``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from ..errors import GapstreamError
from .clips import load_clips
from .teacher import videos_in

THUMB = (32, 18)  # (width, height): small enough to ignore compression and scale


def thumbnails(path: str | Path, every_s: float = 1.0, max_s: float = 90.0) -> np.ndarray:
    """``(n, 576)`` zero-mean, unit-variance grey thumbnails of ``path``, one per ``every_s``."""
    out = []
    try:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            next_t = 0.0
            for frame in c.decode(stream):
                t = float(frame.time or 0.0)
                if t < next_t:
                    continue
                next_t = t + every_s
                g = cv2.resize(frame.to_ndarray(format="gray"), THUMB, interpolation=cv2.INTER_AREA)
                g = g.astype(np.float32).ravel()
                out.append((g - g.mean()) / (g.std() + 1e-6))
                if t > max_s:
                    break
    except (av.FFmpegError, IndexError) as exc:
        raise GapstreamError(f"{path}: cannot read video ({exc})") from None
    return np.array(out, np.float32).reshape(-1, THUMB[0] * THUMB[1])


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - the highest correlation between a thumbnail of ``a`` and one of ``b`` (0: identical)."""
    if not len(a) or not len(b):
        return 1.0
    return float(np.min(1.0 - (a @ b.T) / a.shape[1]))


@dataclass
class Match:
    """A collected video and the reference clip nearest to it."""

    video: Path
    reference: str
    distance: float


def nearest(videos: list[Path], references: dict[str, np.ndarray]) -> list[Match]:
    """For each video, the reference (name -> thumbnails) nearest to it, nearest pairs first.

    The videos are sampled five times as densely as the references, so that a copy trimmed at
    any point still has a thumbnail within 0.1 s of each reference one."""
    matches = []
    for video in videos:
        th = thumbnails(video, every_s=0.2)
        d, name = min(((distance(th, ref), n) for n, ref in references.items()), default=(1.0, ""))
        matches.append(Match(video, name, d))
    return sorted(matches, key=lambda m: m.distance)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gapstream.training.dedup", description=__doc__.split("\n")[0])
    p.add_argument("footage", help="a folder of collected videos (and its noperson/ subfolder)")
    p.add_argument("--against", required=True, metavar="CLIPS", help="labelled clips (labels.json)")
    p.add_argument("--split", default="eval", help="which of their clips (default: eval)")
    p.add_argument("--max-distance", type=float, default=0.1,
                   help="a pair this close is a near-duplicate (default 0.1; re-encoded copies are < 0.05)")
    args = p.parse_args(argv)
    try:
        refs = {c.name: thumbnails(c.path) for c in load_clips(args.against, args.split)}
        matches = nearest(list(videos_in(Path(args.footage))), refs)
        for m in matches:
            print(f"{m.distance:.3f}  {m.reference:40s}  {m.video}")
        dupes = [m for m in matches if m.distance <= args.max_distance]
        if dupes:
            raise GapstreamError(f"{len(dupes)} video(s) are near-duplicates of {args.split} clips: "
                                 + ", ".join(f"{m.video.name} ~ {m.reference}" for m in dupes))
    except GapstreamError as exc:
        print(f"gapstream: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
