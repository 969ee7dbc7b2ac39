"""gapstream: person detection and localisation in video with GAP class activation maps."""

from .config import PipelineConfig, load_config
from .detections import Detections
from .errors import GapstreamError
from .pipeline import Pipeline
from .results import Result

__version__ = "0.1.0"
__all__ = ["Detections", "GapstreamError", "Pipeline", "PipelineConfig", "Result", "load_config"]
