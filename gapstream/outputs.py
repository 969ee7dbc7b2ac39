"""Output paths, checked before anything is opened: an output must never be one of the inputs."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .credentials import redact_url
from .errors import OutputError


def _same_file(a: Path, b: Path) -> bool:
    # samefile also catches hard links and symlinks; a path that does not exist yet can only be
    # the same as another one by name.
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_outputs(outputs: dict[str, str | None], inputs: Iterable[str]) -> None:
    """Raise OutputError when an output (``{"--out": path}``) is an input or another output."""
    named = [(flag, Path(p)) for flag, p in outputs.items() if p and p != "-"]
    local_inputs = [Path(i) for i in inputs if i and "://" not in i]
    for flag, out in named:
        for src in local_inputs:
            if _same_file(out, src):
                raise OutputError(f"{flag} {out} is the input {redact_url(str(src))}; refusing to overwrite "
                                  "it (choose another output path)")
    for i, (flag, out) in enumerate(named):
        for other_flag, other in named[i + 1:]:
            if _same_file(out, other):
                raise OutputError(f"{flag} and {other_flag} are the same file {out}")
