"""The benchmark clips: generated H.264 clips of fixed sizes, or the user's own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..media import IMAGE_EXTS, add_video_stream, encode
from ..paths import DATA_DIR

CLIP_SIZES = ((1280, 720), (640, 480))



def _fill(frame: Any, width: int, height: int) -> Any:
    """Scale to cover ``width x height`` and crop the centre."""
    import cv2

    h, w = frame.shape[:2]
    s = max(width / w, height / h)
    size = (max(width, round(w * s)), max(height, round(h * s)))
    img = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    y, x = (img.shape[0] - height) // 2, (img.shape[1] - width) // 2
    return img[y : y + height, x : x + width]


def _inria_images() -> list[Path]:
    for root in (DATA_DIR / "INRIAPerson", DATA_DIR / "INRIAPerson-composite"):
        folder = root / "Test" / "pos"
        if folder.is_dir():
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
            if files:
                return files
    return []


def _clip_frames(width: int, height: int, frames: int, source: Path | None) -> tuple[Any, str]:
    """An iterator of RGB frames for a clip, and a description of where they come from."""
    import av
    import cv2
    import numpy as np

    if source is not None:
        def looped() -> Any:
            n = 0
            while n < frames:
                with av.open(str(source)) as c:
                    got = 0
                    for f in c.decode(video=0):
                        yield _fill(f.to_ndarray(format="rgb24"), width, height)
                        n += 1
                        got += 1
                        if n >= frames:
                            return
                    if got == 0:
                        raise RuntimeError(f"{source}: no frames")

        return looped(), f"{source.name} rescaled to {width}x{height}, looped"
    images = _inria_images()
    if images:
        # A camera panning across a strip of INRIA test images (people at several scales).
        step_px = max(2, width // 160)
        need = width + step_px * (frames - 1)
        strip, used, i = [], 0, 0
        while used < need:
            img = cv2.imread(str(images[(i * 7) % len(images)]))
            i += 1
            if img is None:
                continue
            img = cv2.resize(img, (round(img.shape[1] * height / img.shape[0]), height),
                             interpolation=cv2.INTER_AREA)
            strip.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            used += img.shape[1]
        wide = np.concatenate(strip, axis=1)

        def pan() -> Any:
            for k in range(frames):
                x = k * step_px
                yield np.ascontiguousarray(wide[:, x : x + width])

        return pan(), f"pan across {i} INRIA test images ({images[0].parent})"
    from ..capture import SourceInfo, read_synthetic

    info = SourceInfo("synthetic://", "synthetic", False, width, height, 30.0, frames)
    return (f for f, _ in read_synthetic(info)), "synthetic frames"


def make_clip(path: Path, width: int, height: int, frames: int, source: Path | None = None,
              fps: int = 30) -> dict:
    """Write an H.264 clip (yuv420p, CRF 20) unless an identical one is already there."""
    import av

    desc_path = path.with_suffix(".json")
    src_key = str(source.resolve()) + f"@{int(source.stat().st_mtime)}" if source else "auto"
    if path.is_file() and desc_path.is_file():
        desc = json.loads(desc_path.read_text())
        if desc.get("frames") == frames and desc.get("source_key") == src_key:
            return desc
    path.parent.mkdir(parents=True, exist_ok=True)
    it, what = _clip_frames(width, height, frames, source)
    tmp = path.with_suffix(".tmp.mp4")
    n = 0
    with av.open(str(tmp), "w") as c:
        st = add_video_stream(c, width, height, fps, crf=20, preset="fast")
        for img in it:
            encode(c, st, img)
            n += 1
        encode(c, st)
    tmp.replace(path)
    desc = {"path": str(path), "width": width, "height": height, "frames": n, "fps": fps,
            "content": what, "codec": "H.264 (libx264 CRF 20, yuv420p)", "source_key": src_key}
    desc_path.write_text(json.dumps(desc, indent=1) + "\n")
    return desc


def probe_clip(path: Path) -> dict:
    import av

    with av.open(str(path)) as c:
        st = c.streams.video[0]
        n = st.frames or sum(1 for _ in c.demux(st) if _.size)
        return {"path": str(path), "width": st.codec_context.width, "height": st.codec_context.height,
                "frames": int(n), "fps": float(st.average_rate or 30), "content": path.name}
