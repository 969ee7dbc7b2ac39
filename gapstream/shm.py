"""Shared memory (``/dev/shm``) housekeeping: is there room for the rings, and stale segments."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Collection
from multiprocessing import resource_tracker
from typing import Any

from .errors import PipelineError
from .ring import SEGMENT_PREFIX, SHM_DIR, Fields, Ring

log = logging.getLogger("gapstream")
MB = 1 << 20


def free_bytes(path: str = SHM_DIR) -> int | None:
    """Bytes free for an unprivileged writer on ``path`` (None when it cannot be told)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def no_room(need: int, free: int, detail: str) -> PipelineError:
    """The error for rings that do not fit: how much is needed and how to fix it."""
    return PipelineError(
        f"not enough shared memory: the rings need {need / MB:.0f} MB ({detail}) but {SHM_DIR} has "
        f"{free / MB:.0f} MB free; give it more room (docker run --shm-size={_advice(need)}m, or "
        "mount -o remount,size=... /dev/shm) or use fewer or smaller slots (--batch, buffers.frame_slots, "
        "buffers.live_frame_slots, source.max_width/max_height for streams)"
    )


def _advice(need: int) -> int:
    # Room for the rings plus headroom, rounded up to 64 MB.
    return -(-(need * 5 // 4 + 16 * MB) // (64 * MB)) * 64


def make_ring(fields: Fields, slots: int, ctx: Any, name: str) -> Ring:
    """A ring, or the no-room error if /dev/shm filled up since the start-up check."""
    try:
        return Ring(fields, slots, ctx, name)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.ENOMEM):
            raise
        need = Ring.bytes_for(fields, slots)
        raise no_room(need, free_bytes() or 0, f"{slots} slots for the {name} ring") from None


def _owner_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def stale_segments(path: str = SHM_DIR) -> dict[str, int]:
    """gapstream segments whose creating process is gone (SIGKILL, OOM killer) -> that pid.

    A segment carries its creator's pid (``gapstream_<pid>_...``); one whose pid still runs is
    not stale, even if that pid was reused by another program.
    """
    try:
        names = os.listdir(path)
    except OSError:
        return {}
    stale = {}
    for name in names:
        if not name.startswith(SEGMENT_PREFIX):
            continue
        pid = name[len(SEGMENT_PREFIX):].split("_", 1)[0]
        if pid.isdigit() and not _owner_alive(int(pid)):
            stale[name] = int(pid)
    return stale


def remove_stale(path: str = SHM_DIR, children: Collection[int] = ()) -> list[str]:
    """Remove the :func:`stale_segments`; their names.

    ``children`` are pids of dead spawned children (``gapstream batch`` workers): they shared
    this process's resource tracker, which is told of their segments too, so that it does not
    report them as leaked at exit.
    """
    removed = []
    for name, pid in stale_segments(path).items():
        try:
            os.unlink(os.path.join(path, name))
        except OSError:
            continue
        if pid in children:
            resource_tracker.unregister(f"/{name}", "shared_memory")
        removed.append(name)
    if removed:
        log.info("removed %d stale shared-memory segment(s) of gapstream runs that were killed: %s",
                 len(removed), ", ".join(sorted(removed)))
    return removed
