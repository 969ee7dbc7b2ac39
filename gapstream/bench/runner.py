"""Running one measurement in a fresh process (``python -m gapstream.bench.worker``) and
turning its output into a row: fps, latency percentiles, CPU %, peak memory, ratios to the reference."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..paths import ROOT

REFERENCE = "reference"  # the method every speed ratio is taken against

def _tree_pss(proc: Any) -> float:
    """Sum of PSS (else RSS) over a process and its descendants, in bytes."""
    import psutil

    total = 0.0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for p in procs:
        try:
            try:
                total += p.memory_full_info().pss
            except (psutil.AccessDenied, AttributeError):
                total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_worker(spec: dict, python: str | None = None, pin_core: int | None = None,
               sample_memory: bool = True, timeout: float = 900) -> dict:
    """Run one measurement in a fresh process; returns the worker's JSON plus peak memory."""
    with tempfile.TemporaryDirectory(prefix="gapstream-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        cmd = [python or sys.executable, "-m", "gapstream.bench.worker", str(spec_path), str(out_path)]
        preexec = None
        if pin_core is not None:
            if shutil.which("taskset"):
                cmd = ["taskset", "-c", str(pin_core), *cmd]
            else:
                def preexec() -> None:
                    os.sched_setaffinity(0, {pin_core})
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
        log_path = Path(tmp) / "stderr.txt"
        with open(log_path, "w") as log_f:
            proc = subprocess.Popen(cmd, stdout=log_f, stderr=subprocess.STDOUT, env=env,
                                    preexec_fn=preexec, cwd=str(ROOT))
            peak = 0.0
            ps = None
            if sample_memory:
                try:
                    import psutil

                    ps = psutil.Process(proc.pid)
                except ImportError:
                    ps = None
            deadline = time.monotonic() + timeout
            while proc.poll() is None:
                if ps is not None:
                    peak = max(peak, _tree_pss(ps))
                if time.monotonic() > deadline:
                    proc.kill()
                    break
                time.sleep(0.1)
            proc.wait()
        log_text = log_path.read_text(errors="replace")
        if out_path.is_file():
            res = json.loads(out_path.read_text())
        else:
            tail = "\n".join(log_text.strip().splitlines()[-5:])
            res = {"error": f"worker exited with {proc.returncode}: {tail}"}
        if peak:
            res["peak_mb"] = peak / 2**20
        elif res.get("maxrss_kb"):
            res["peak_mb"] = res["maxrss_kb"] / 1024  # no psutil: largest single process
        return res


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def measure(rows: list[dict], log: Any = print) -> list[dict]:
    for row in rows:
        if row.get("skipped") or "spec" not in row:
            log(f"  {row['clip']:>16}  {row['label']:<58} skipped: {row.get('skipped')}")
            continue
        res = run_worker(row["spec"], python=row.get("python"), pin_core=row.get("pin_core"))
        if res.get("skipped") or res.get("error"):
            row["skipped"] = res.get("skipped") or res.get("error")
            log(f"  {row['clip']:>16}  {row['label']:<58} {'skipped' if res.get('skipped') else 'ERROR'}: "
                f"{row['skipped']}")
            continue
        lat = res.get("latency_ms", [])
        wall = res["wall_s"]
        row.update({
            "frames": res["frames"], "wall_s": wall, "fps": res["frames"] / wall if wall > 0 else 0.0,
            "p50_ms": _percentile(lat, 50), "p95_ms": _percentile(lat, 95),
            "cpu_pct": 100 * res["cpu_s"] / wall if wall > 0 else 0.0,
            "peak_mb": res.get("peak_mb", float("nan")), "latency_ms": lat, "extra": res.get("extra", {}),
        })
        log(f"  {row['clip']:>16}  {row['label']:<58} {row['fps']:8.1f} fps  p50 {row['p50_ms']:7.1f} ms  "
            f"p95 {row['p95_ms']:7.1f} ms  CPU {row['cpu_pct']:4.0f}%  {row['peak_mb']:6.0f} MB")
    # Ratios to the reference measured on the same clip in the same run.
    refs = {r["clip"]: r for r in rows if r["method"] == REFERENCE and "fps" in r}
    for r in rows:
        ref = refs.get(r["clip"]) or (refs.get(r["clip"].split()[0]) if r["method"] == "live" else None)
        if ref is None or "fps" not in r:
            continue
        r["x_ref"] = {
            "fps": r["fps"] / ref["fps"] if ref["fps"] else float("nan"),
            "p50": r["p50_ms"] / ref["p50_ms"] if ref["p50_ms"] else float("nan"),
            "p95": r["p95_ms"] / ref["p95_ms"] if ref["p95_ms"] else float("nan"),
            "cpu": r["cpu_pct"] / ref["cpu_pct"] if ref["cpu_pct"] else float("nan"),
            "mem": r["peak_mb"] / ref["peak_mb"] if ref["peak_mb"] else float("nan"),
        }
    return rows
