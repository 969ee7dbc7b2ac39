"""One measurement in a fresh process: ``python -m gapstream.bench.worker SPEC.json OUT.json``.

The spec names the method; the result (or the error) is written as JSON with the peak RSS."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import baselines, methods
from .machine import maxrss_kb

WORKERS = {"decode": methods.w_decode, "pipeline": methods.w_pipeline, "profile": methods.w_profile,
           "standin": methods.w_standin, "reference": baselines.w_reference, "hog": baselines.w_hog,
           "hog_images": baselines.w_hog_images}


def worker_main(spec_path: str, out_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    try:
        res = WORKERS[spec["method"]](spec)
    except Exception as exc:  # noqa: BLE001 - reported as the row's error, the run goes on
        import traceback

        traceback.print_exc()
        res = {"error": f"{type(exc).__name__}: {exc}"}
    res["maxrss_kb"] = maxrss_kb()
    Path(out_path).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m gapstream.bench.worker SPEC.json OUT.json")
    sys.exit(worker_main(sys.argv[1], sys.argv[2]))
