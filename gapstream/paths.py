"""Where things live: the shipped models (package data), and in a source checkout the demo clip,
results and data."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _models_dir() -> Path:
    # A source checkout's models/ (where `gapstream export` writes); in an installed wheel the
    # models are package data (gapstream/models, a link to ../models in the checkout).
    if (ROOT / "models").is_dir() and (ROOT / "setup.cfg").is_file():
        return ROOT / "models"
    return Path(str(resources.files("gapstream") / "models"))


MODELS_DIR = _models_dir()


def shipped_model(quantization: str) -> Path:
    """The shipped model of one quantization (``int8`` or ``float32``); it may be missing."""
    return MODELS_DIR / f"gapstream_person_{quantization}.tflite"


DEFAULT_MODEL = shipped_model("int8")
# The zoom's crop model (model card, Stop 20): trained with crop-framed views of moving things.
DEFAULT_ZOOM_MODEL = MODELS_DIR / "gapstream_zoomcrop_int8.tflite"
SAMPLE = ROOT / "samples" / "people.mp4"
RESULTS_DIR = ROOT / "benchmarks" / "results"
DATA_DIR = ROOT / "data"
BENCH_WORK_DIR = ROOT / "out" / "bench"
