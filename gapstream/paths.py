"""Where things live in a source checkout: the shipped models, the demo clip, results, data."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "models"
DEFAULT_MODEL = MODELS_DIR / "gapstream_person_int8.tflite"
SAMPLE = ROOT / "samples" / "people.mp4"
RESULTS_DIR = ROOT / "benchmarks" / "results"
DATA_DIR = ROOT / "data"
BENCH_WORK_DIR = ROOT / "out" / "bench"


def shipped_model(quantization: str) -> Path:
    """The shipped model of one quantization (``int8`` or ``float32``); it may be missing."""
    return MODELS_DIR / f"gapstream_person_{quantization}.tflite"
