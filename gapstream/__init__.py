"""gapstream: person detection and localisation in video with GAP class activation maps.

The public names load on first use, so that ``import gapstream`` (and ``gapstream --help``)
stays light: PyAV, OpenCV and the TFLite runtime are imported only when a pipeline is built.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Detections": "detections", "GapstreamError": "errors", "Pipeline": "pipeline",
    "PipelineConfig": "config", "Result": "results", "load_config": "config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib import metadata  # here: it costs start-up time that a signal could fall into

        try:
            return metadata.version("gapstream")
        except metadata.PackageNotFoundError:  # a source tree that was never installed
            return "0+unknown"
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'gapstream' has no attribute {name!r}")


def __dir__() -> list[str]:
    return [*__all__, "__version__"]
