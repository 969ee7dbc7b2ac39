"""A file's outputs written under temporary names and renamed into place only when complete.

A reader (or a re-run) therefore sees either the previous complete output or the new one,
never a half-written file; a worker killed mid-file leaves only ``.*.part.*`` files, which the
next attempt removes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType


def part_name(final: Path) -> Path:
    """The temporary name of ``final``; it keeps the suffix so that muxers guess the format."""
    return final.with_name(f".{final.stem}.part{final.suffix}")


def remove_parts(folder: Path) -> None:
    """Delete the temporary files an interrupted attempt left in ``folder``."""
    for p in folder.glob(".*.part.*"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


class PartFiles:
    """Context manager: ``part(name)`` paths to write, ``commit()`` renames them all into place.

    Leaving the block without ``commit()`` (an error, an interrupt) deletes the parts, and the
    folder if that leaves it empty.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._parts: dict[Path, Path] = {}
        self._committed = False

    def __enter__(self) -> PartFiles:
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_parts(self.folder)
        return self

    def part(self, name: str) -> Path:
        final = self.folder / name
        self._parts[final] = part_name(final)
        return self._parts[final]

    def commit(self) -> None:
        for final, part in self._parts.items():
            os.replace(part, final)
        self._committed = True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._committed:
            for part in self._parts.values():
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()
            with contextlib.suppress(OSError):  # not empty: outputs of an earlier run stay
                self.folder.rmdir()
