"""benchmarks/compare_footage.py: two eval reports side by side, with a paired interval."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gapstream.metrics import bootstrap_mean_ci

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "compare_footage.py"


def report(path: Path, recalls: dict[str, float | None], fps: dict[str, float | None],
           models: tuple[str, ...] = ("m.tflite",)) -> Path:
    clips = [{"name": n, "recall": recalls[n], "fp_rate": fps[n]} for n in recalls]
    path.write_text(json.dumps({"models": {m: {"clips": clips} for m in models}}))
    return path


def test_paired_difference_interval_and_worst_rise(tmp_path: Path) -> None:
    base = report(tmp_path / "a.json", {"p/1": 0.5, "p/2": 0.9, "p/3": 0.2, "n/1": None, "n/old": None},
                  {"p/1": None, "p/2": 0.1, "p/3": None, "n/1": 0.0, "n/old": 0.0})
    new = report(tmp_path / "b.json", {"p/1": 0.6, "p/2": 0.9, "p/3": 0.5, "n/1": None},
                 {"p/1": None, "p/2": 0.0, "p/3": None, "n/1": 0.05})
    r = subprocess.run([sys.executable, str(SCRIPT), str(base), str(new)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    lo, hi = bootstrap_mean_ci([0.1, 0.0, 0.3])
    assert "| p/3 | 20.0 % | 50.0 % | +30.0 | n/a | n/a |" in r.stdout
    assert (f"Mean recall over 3 person clips: 53.3 % -> 66.7 %, +13.3 points; 90 % paired interval over "
            f"the clips {100 * lo:+.1f} to {100 * hi:+.1f}.") in r.stdout
    assert "Largest false-positive change on one clip: +5.0 points (n/1)." in r.stdout
    assert "Clips only in the base report (left out): n/old." in r.stdout


@pytest.mark.parametrize("args", [["--base-model", "x.tflite"], []])
def test_a_missing_or_ambiguous_model_is_one_error_line(tmp_path: Path, args: list[str]) -> None:
    two = report(tmp_path / "two.json", {"p/1": 0.5}, {"p/1": None}, ("a.tflite", "b.tflite"))
    one = report(tmp_path / "one.json", {"p/1": 0.5}, {"p/1": None})
    first = one if args else two
    r = subprocess.run([sys.executable, str(SCRIPT), str(first), str(one), *args], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("gapstream: error:")
