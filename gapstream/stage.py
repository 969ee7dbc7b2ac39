"""What every stage process does around its work: signals, parent-death, error reporting."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from .credentials import redact_text
from .errors import GapstreamError

log = logging.getLogger("gapstream.stage")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # A stage must never outlive the pipeline that owns it (no orphans if the parent is killed).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def stage_main(name: str, fn: Callable[..., None], errors: Any, *args: Any) -> None:
    """Run one stage; report a failure as ``(stage, message)`` on ``errors`` and exit 1."""
    # The parent owns Ctrl-C and SIGTERM (also when sent to the whole process group) and stops
    # the stages cleanly through the stop event, so that no frame is half written.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    _die_with_parent()
    try:
        fn(*args)
    except GapstreamError as exc:
        errors.put((name, redact_text(str(exc))))
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - any crash must become one clear pipeline error
        log.debug("%s stage crashed", name, exc_info=True)
        errors.put((name, redact_text(f"{type(exc).__name__}: {exc}")))
        sys.exit(1)
