"""The benchmark scripts' entry point: a wrong path or file ends with one ``gapstream: error:`` line.

Each script is run as ``python benchmarks/NAME.py``, so this module sits beside them on the path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gapstream.credentials import redact_text  # noqa: E402
from gapstream.errors import GapstreamError  # noqa: E402


def run(main: Callable[[], int | None]) -> int:
    """``main()``'s exit status; the user's mistakes (a missing clip folder, model or output
    directory) print one line and return 1, an interrupt returns 130, neither with a traceback."""
    try:
        return int(main() or 0)
    except (GapstreamError, OSError) as exc:
        print(f"gapstream: error: {redact_text(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gapstream: interrupted", file=sys.stderr)
        return 130
