"""Make samples/people.mp4, the demo clip: INRIA person crops walking across INRIA negative scenes.

    python samples/make_sample.py --inria data/INRIAPerson --out samples/people.mp4

The first second has no person (the classifier should say so); then people cross the scene at
different speeds and sizes while the camera pans slowly (INRIA 96x160 person crops over a
Test/neg scene).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2
import numpy as np

from gapstream.media import add_video_stream, encode
from gapstream.training.composite import _feather, _images


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inria", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("samples/people.mp4"))
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    W, H = 640, 480
    scenes = _images(args.inria / "Test" / "neg")
    crops = _images(args.inria / "96X160H96" / "Train" / "pos")
    bg = cv2.imread(str(scenes[int(rng.integers(len(scenes)))]))
    bg = cv2.resize(bg, (int(W * 1.4), int(W * 1.4 * bg.shape[0] / bg.shape[1])))
    if bg.shape[0] < H:
        bg = cv2.resize(bg, (int(bg.shape[1] * H / bg.shape[0]), H))
    walkers = []
    for k in range(3):
        crop = cv2.imread(str(crops[int(rng.integers(len(crops)))]))
        ph = int(H * (0.9 - 0.15 * k))
        pw = ph * crop.shape[1] // crop.shape[0]
        img = cv2.resize(crop, (pw, ph), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        start = 1.0 + 1.8 * k
        speed = (W + pw) / (3.5 + k) * (1 if k % 2 == 0 else -1)
        walkers.append((img, _feather(ph, pw, max(2, pw // 12)), start, speed))
    n = int(args.seconds * args.fps)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(args.out), "w") as out:
        st = add_video_stream(out, W, H, args.fps, crf=28, preset="slow")
        for i in range(n):
            t = i / args.fps
            x0 = int((bg.shape[1] - W) * (0.5 + 0.5 * np.sin(t / args.seconds * np.pi - np.pi / 2)))
            frame = bg[(bg.shape[0] - H) // 2 : (bg.shape[0] - H) // 2 + H, x0 : x0 + W].astype(np.float32)
            for img, mask, start, speed in walkers:
                if t < start:
                    continue
                ph, pw = img.shape[:2]
                x = int((t - start) * speed) if speed > 0 else int(W + (t - start) * speed)
                x -= pw if speed > 0 else 0
                y = H - ph - int(0.02 * H)
                a, b = max(x, 0), min(x + pw, W)
                if a >= b:
                    continue
                roi = frame[y : y + ph, a:b]
                m = mask[:, a - x : b - x]
                frame[y : y + ph, a:b] = m * img[:, a - x : b - x] + (1 - m) * roi
            rgb = cv2.cvtColor(frame.astype(np.uint8), cv2.COLOR_BGR2RGB)
            encode(out, st, rgb)
        encode(out, st)
    print(f"wrote {args.out} ({n} frames, {args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
