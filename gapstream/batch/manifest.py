"""The manifest in DIR: what was done and what failed, so that a re-run does only what is left.

``manifest.json`` maps each file's key to its input, the input's size and mtime, its status and
numbers. It is rewritten atomically after every file, so an interrupted run loses only the
files in flight. The settings a run used are stored too: a re-run with other settings (model,
threshold, video on/off...) would mix results, and is refused. A lock keeps two runs apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError, OutputError
from .inputs import InputFile
from .job import FRAMES, FileOutcome

NAME = "manifest.json"
VERSION = 1


class Manifest:
    def __init__(self, folder: Path, settings: dict[str, Any]) -> None:
        self.path = folder / NAME
        self.settings = settings
        self.files: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
            files, settings = data["files"], data["settings"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise OutputError(f"{self.path} is not a gapstream batch manifest ({exc}); "
                              "use another --out") from None
        if settings != self.settings:
            changed = sorted(k for k in {*settings, *self.settings}
                             if settings.get(k) != self.settings.get(k))
            raise ConfigError(f"{self.path.parent} holds results made with other settings "
                              f"({', '.join(changed)}); use another --out")
        self.files = files

    def status(self, inp: InputFile) -> str:
        """``done``, ``failed`` or ``new`` (never seen, changed since, or outputs gone)."""
        entry = self.files.get(inp.key)
        if entry is None or entry.get("input") != str(inp.path) or entry.get("source") != inp.fingerprint():
            return "new"
        if entry["status"] == "done" and not (self.path.parent / inp.key / FRAMES).exists():
            return "new"
        return str(entry["status"])

    def outcome(self, key: str) -> FileOutcome:
        """A file's outcome as last recorded."""
        fields = FileOutcome.__dataclass_fields__
        return FileOutcome(**{k: v for k, v in self.files[key].items() if k in fields})

    def record(self, inp: InputFile, outcome: FileOutcome) -> None:
        self.files[inp.key] = {"input": str(inp.path), "source": inp.fingerprint(), **asdict(outcome)}
        self.save()

    def save(self) -> None:
        tmp = self.path.with_name(f".{NAME}.part")
        data = {"version": VERSION, "settings": self.settings, "files": self.files}
        try:
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())  # durable before the rename: a power cut leaves old or new
            os.replace(tmp, self.path)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold DIR's lock for a run; a second run into the same DIR stops with an error."""
    try:
        f: IO[str] = open(folder / ".batch.lock", "w")  # noqa: SIM115
    except OSError as exc:
        raise OutputError(f"cannot write in {folder}: {exc.strerror}") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(f"another gapstream batch is writing to {folder}") from None
        yield
