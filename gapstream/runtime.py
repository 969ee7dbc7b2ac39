"""Load a TFLite interpreter without importing TensorFlow when a lighter runtime is installed.

Order of preference: ai-edge-litert, tflite-runtime, tensorflow.lite.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import ModelError


def interpreter_class() -> tuple[type, str]:
    """Return (Interpreter class, name of the package that provided it)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]

        return Interpreter, "tflite-runtime"
    except ImportError:
        pass
    try:
        import tensorflow as tf  # type: ignore[import-not-found]

        return tf.lite.Interpreter, "tensorflow.lite"
    except ImportError as exc:
        raise ModelError(
            "no TFLite runtime is installed: pip install 'gapstream[runtime]' "
            "(ai-edge-litert or tflite-runtime)"
        ) from exc


def make_interpreter(model_path: str, num_threads: int | None = None) -> Any:
    """Create an interpreter for a .tflite file; errors become ModelError."""
    cls, _ = interpreter_class()
    if not num_threads:
        # 0 / None mean "all cores" in the config, but ai-edge-litert turns None into 1 thread
        # (``int(num_threads or 1)``): ask for the cores this process may run on.
        try:
            num_threads = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            num_threads = os.cpu_count() or 1
    try:
        return cls(model_path=str(model_path), num_threads=num_threads)
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{model_path} is not a valid TFLite model: {exc}") from exc
