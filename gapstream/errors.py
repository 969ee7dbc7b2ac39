"""User-facing errors: each carries one clear message that the CLI prints without a traceback."""

from __future__ import annotations


class GapstreamError(Exception):
    """Base class for failures caused by the user's input or environment."""


class ConfigError(GapstreamError):
    """A configuration file or option is invalid."""


class SourceError(GapstreamError):
    """A video source is missing, unreadable, or unreachable."""


class ModelError(GapstreamError):
    """A model file is missing, malformed, or does not match its metadata."""


class DataError(GapstreamError):
    """A dataset path does not have the expected layout."""


class OutputError(GapstreamError):
    """An output (video, JSON Lines, window) cannot be opened or written."""


class PipelineError(GapstreamError):
    """A pipeline stage failed."""
