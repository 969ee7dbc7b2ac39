"""Graph pooling vs run-time pooling: how close each int8 figure stays to the float model.

The scene models pool their per-cell class scores with a top-k. In the int8 graph those
scores are quantised before the top-k; the run time can instead pool the dequantised conv
maps with the dense layer as trained (``gapstream.cam.pool_probs``). This compares both with
the float32 model on image folders (never the eval split of the clips)::

    python benchmarks/pooling.py ../shared/data/INRIAPerson/Train/neg=no_person \\
        data/surveillance-composite/Test/neg=no_person data/surveillance-composite/Test/pos=person

Per folder: the share flagged "person" (p >= 0.5) and the mean |p_int8 - p_float32|.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream.gapmodel import GapModel  # noqa: E402
from gapstream.media import IMAGE_EXTS  # noqa: E402


class AtAnySize:
    """One model file at each input size an image needs (an interpreter has one input shape)."""

    def __init__(self, path: Path, graph_probs: bool = False) -> None:
        self.path, self.graph_probs = path, graph_probs
        self.models: dict[tuple[int, int], GapModel] = {}
        self.meta = GapModel(path).meta

    def person_prob(self, image: np.ndarray, long_side: int) -> float:
        size = self.meta.input_size_for(*image.shape[:2], long_side)
        if size not in self.models:
            self.models[size] = GapModel(self.path, input_size=size, graph_probs=self.graph_probs)
        model = self.models[size]
        return float(model.predict(model.preprocess(image)[None])[0][0, self.meta.person_index])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="DIR=person or DIR=no_person")
    ap.add_argument("--models", default="models", help="folder with gapstream_person_{int8,float32}.tflite")
    ap.add_argument("--limit", type=int, default=300, help="images per folder (sorted by name)")
    ap.add_argument("--out", default="benchmarks/results/pooling.json")
    args = ap.parse_args()
    root = Path(args.models)
    models = {"int8 graph": AtAnySize(root / "gapstream_person_int8.tflite", graph_probs=True),
              "int8 run time": AtAnySize(root / "gapstream_person_int8.tflite"),
              "float32": AtAnySize(root / "gapstream_person_float32.tflite")}
    long_side = models["float32"].meta.input_long_side
    rows = []
    for spec in args.folders:
        folder, label = spec.rsplit("=", 1)
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS)[: args.limit]
        probs = {k: [] for k in models}
        for f in files:
            img = cv2.imread(str(f))
            if img is None:
                continue
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            for k, m in models.items():
                probs[k].append(m.person_prob(rgb, long_side))
        p = {k: np.array(v) for k, v in probs.items()}
        row = {"folder": folder, "label": label, "images": len(p["float32"])}
        for k in models:
            row[f"flagged {k}"] = float(np.mean(p[k] >= 0.5))
        for k in ("int8 graph", "int8 run time"):
            row[f"|{k} - float32|"] = float(np.mean(np.abs(p[k] - p["float32"])))
        rows.append(row)
        print(json.dumps(row))
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    md = ["| folder | images | flagged: int8 graph | int8 run time | float32 "
          "| mean abs diff to float32: graph | run time |",
          "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['folder']} ({r['label']}) | {r['images']} | {100 * r['flagged int8 graph']:.1f} % | "
                  f"{100 * r['flagged int8 run time']:.1f} % | {100 * r['flagged float32']:.1f} % | "
                  f"{r['|int8 graph - float32|']:.3f} | {r['|int8 run time - float32|']:.3f} |")
    Path(args.out).with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    from script import run

    sys.exit(run(main))
