"""The machine a benchmark runs on, and the CPU / memory accounting of the measured processes."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import resource
import subprocess


def machine_info() -> dict:
    """CPU model, cores and the versions that matter for the numbers."""
    from importlib import metadata

    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    versions = {}
    for pkg in ("ai-edge-litert", "tflite-runtime", "tensorflow-cpu", "tensorflow", "keras", "av",
                "opencv-python-headless", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[pkg] = metadata.version(pkg)
    mem = 0.0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu, "arch": platform.machine(), "cores": os.cpu_count(),
        "memory_gb": round(mem, 1), "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}", "versions": versions,
        "date": datetime.date.today().isoformat(),
        "loadavg_1min_at_start": round(os.getloadavg()[0], 2),
    }


def cpu_seconds() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def system_busy_s() -> float | None:
    """Busy CPU seconds of the whole machine since boot (all processes, from /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait
    return (sum(v[:3]) + sum(v[5:8])) / os.sysconf("SC_CLK_TCK")


def maxrss_kb() -> int:
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
