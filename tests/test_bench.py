"""Smoke test of the benchmark machinery (gapstream bench): tiny clip, tiny model, few frames.

No timing assertions: only that every row is measured (or skipped with a reason) and that the
report, table and plots are written with the expected rows and columns.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gapstream.bench import cli
from gapstream.bench.report import targets
from gapstream.bench.runner import measure

from .helpers import make_video


def _args(tmp_path: Path, clip: Path, model: Path, *extra: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    cli.add_args(p)
    return p.parse_args([
        "--quick", "--clip", str(clip), "--int8", str(model), "--float", str(model), "--keras", "none",
        "--batch", "1,2", "--skip", "hog,live,float", "--out", str(tmp_path / "results"),
        "--work", str(tmp_path / "work"), "--command", "gapstream bench --test", *extra,
    ])


def test_bench_smoke(tmp_path: Path, tiny_model: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", frames=12, width=160, height=120)
    assert cli.main(_args(tmp_path, clip, tiny_model)) == 0
    out = tmp_path / "results"
    report = json.loads((out / "results.json").read_text())
    labels = [r["label"] for r in report["rows"]]
    assert labels == [
        "PyAV decode to RGB (ceiling)",
        "gapstream int8 batch 1", "gapstream int8 batch 2",
        "gapstream int8 batch 2, no zoom",
        "gapstream int8 batch 2, no zoom, decoded to model size",
        "gapstream int8 batch 2 + annotated video",
        "gapstream int8 batch 1, 1 core (taskset -c 0, 1 thread)",
        "gapstream int8 batch 4, 1 core (taskset -c 0, 1 thread)",
        "reference (naive Keras, one process)",
    ]
    measured = [r for r in report["rows"] if r["method"] != "reference"]
    for r in measured:
        assert "fps" in r, r
        assert r["frames"] == 12 and r["fps"] > 0 and r["cpu_pct"] > 0 and r["peak_mb"] > 0
        assert r["method"] == "decode" or len(r["latency_ms"]) == 12
    assert report["rows"][-1]["skipped"]
    direct = next(t for t in report["targets"] if t["target"].startswith("decoded to model size"))
    assert "of the raw decode fps (160x120)" in direct["target"]
    assert "decoded to model size" in direct["value"]
    assert set(report["profile"]["160x120"]) >= {"decode", "to_rgb", "resize", "infer_b1", "infer_b8",
                                                 "cam_boxes", "blend_draw", "encode"}
    md = (out / "results.md").read_text()
    assert "| clip | method | frames | fps | p50 ms | p95 ms | CPU % | peak MB |" in md
    assert "| 160x120 | gapstream int8 batch 1 | 12 |" in md
    assert "Stage profile" in md and report["machine"]["cpu"] in md
    snippet = (out / "README_table.md").read_text()
    assert "gapstream bench --test" in snippet and "| clip | method | fps |" in snippet
    assert (out / "fps.png").stat().st_size > 0 and (out / "latency.png").stat().st_size > 0


def test_ratios_and_targets() -> None:
    def row(method: str, label: str, clip: str, fps: float, **kw: object) -> dict:
        return {"method": method, "label": label, "clip": clip, "spec": None, "fps": fps,
                "p50_ms": 1000 / fps, "p95_ms": 2000 / fps, "cpu_pct": 100.0, "peak_mb": 100.0, **kw}

    rows = [
        row("gapstream", "gapstream int8 batch 4", "640x480", 150.0, model="int8"),
        row("single-core", "gapstream int8 batch 1, 1 core", "640x480", 30.0, model="int8"),
        row("reference", "reference", "640x480", 5.0),
    ]
    # measure() skips rows without a spec to run and only adds the ratios.
    for r in rows:
        r.pop("spec")
    measure(rows, log=lambda *_: None)
    assert abs(rows[0]["x_ref"]["fps"] - 30.0) < 1e-9
    assert abs(rows[0]["x_ref"]["p50"] - 1 / 30) < 1e-9
    met = {t["target"]: t["met"] for t in targets(rows)}
    assert met == {"pipeline fps >= 20x the naive reference (640x480)": True,
                   "> 100 fps on the 640x480 clip, int8 model": True,
                   "single core (taskset, 1 thread) > 25 fps (640x480)": True}
