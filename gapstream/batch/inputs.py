"""What a batch processes: INPUTS (files, folders, globs) expanded to video files with unique keys.

A file's key names its output folder in DIR: its path below the folder it was found in (or its
name), without the suffix; clashes get a short hash of the full path. Files inside DIR are never
inputs, so that a re-run cannot read (or overwrite) its own outputs.
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError
from ..media import VIDEO_EXTS


@dataclass(frozen=True)
class InputFile:
    key: str  # output folder below DIR, posix style
    path: Path  # absolute

    def fingerprint(self) -> dict:
        """Size and modification time: a changed file is processed again ({} once it is gone)."""
        try:
            st = self.path.stat()
        except OSError:
            return {}
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _is_video(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in VIDEO_EXTS and not p.name.startswith(".")


def _expand(spec: str) -> list[tuple[Path, Path]]:
    """(file, name relative to where it was found) for one INPUT."""
    p = Path(spec)
    if p.is_dir():
        return [(f, f.relative_to(p)) for f in sorted(p.rglob("*"))
                if _is_video(f) and not any(part.startswith(".") for part in f.relative_to(p).parts)]
    if p.is_file():  # named explicitly: taken whatever its suffix
        return [(p, Path(p.name))]
    if any(c in spec for c in "*?["):
        return [(Path(f), Path(Path(f).name)) for f in sorted(glob.glob(spec, recursive=True))
                if _is_video(Path(f))]
    raise SourceError(f"{spec}: no such file or folder")


def discover(specs: Sequence[str], out_dir: Path) -> list[InputFile]:
    """The video files INPUTS name, each once, in order; raises SourceError if one names none."""
    out = out_dir.resolve()
    found: dict[Path, Path] = {}
    for spec in specs:
        files = [(f.resolve(), rel) for f, rel in _expand(spec)]
        files = [(f, rel) for f, rel in files if not f.is_relative_to(out)]
        if not files:
            raise SourceError(f"{spec}: no video files found (looked for {', '.join(sorted(VIDEO_EXTS))})")
        for f, rel in files:
            found.setdefault(f, rel)
    keys: dict[str, list[Path]] = {}
    for f, rel in found.items():
        keys.setdefault(rel.with_suffix("").as_posix(), []).append(f)
    result = []
    for key, paths in keys.items():
        for f in paths:
            k = key if len(paths) == 1 else f"{key}-{hashlib.sha1(str(f).encode()).hexdigest()[:8]}"
            result.append(InputFile(k, f))
    return sorted(result, key=lambda i: str(i.path))
