"""Shared-memory ring buffers that link the pipeline stages.

A :class:`Ring` is one ``multiprocessing.shared_memory`` segment cut into fixed-size
slots, each holding a few named numpy arrays plus a sequence number. Only slot indices
and small per-frame records travel on the queues; the pixels and feature maps are written
once and read in place through zero-copy numpy views.

Life of a slot: the writer ``acquire``s a free slot, fills ``view(slot)``, and
``publish``es it; the reader ``get``s it, uses it, and ``release``s it (possibly in a
later stage). Offline writers block when no slot is free, so nothing is lost and order
is kept; live writers pass ``drop_oldest=True`` and take back the oldest frame still
waiting for its reader, which keeps latency bounded and is counted in ``dropped``.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import secrets
import threading
from collections.abc import Mapping
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

_ALIGN = 64
EOS = None  # end-of-stream marker on the ready queue


def segment_prefix(pid: int) -> str:
    """The name prefix of every ring segment created by process ``pid``."""
    return f"gapstream_{pid}_"


def remove_segments(pid: int) -> int:
    """Unlink the segments of a process that was killed before it could close its rings.

    Returns how many were removed. Only for a dead owner: a live one still uses them. The
    owner was a child sharing this process's resource tracker (spawn), which is told too, so
    that it does not report them as leaked at exit.
    """
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir("/dev/shm"):
            if name.startswith(segment_prefix(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join("/dev/shm", name))
                    resource_tracker.unregister(f"/{name}", "shared_memory")
                    removed += 1
    return removed


def orphan_segments() -> list[str]:
    """Segments on this machine whose creating process is gone (killed): no pipeline can use
    them any more, as its stages die with it."""
    with contextlib.suppress(FileNotFoundError):
        names = [n for n in os.listdir("/dev/shm") if n.startswith("gapstream_")]
        alive: dict[str, bool] = {}
        for name in names:
            pid = name.split("_")[1]
            if pid.isdigit() and pid not in alive:
                try:
                    os.kill(int(pid), 0)
                    alive[pid] = True
                except ProcessLookupError:
                    alive[pid] = False
                except PermissionError:  # alive, someone else's
                    alive[pid] = True
        return [n for n in names if alive.get(n.split("_")[1], True) is False]
    return []


def remove_orphans() -> int:
    """Unlink :func:`orphan_segments`; returns how many were removed."""
    removed = 0
    for name in orphan_segments():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join("/dev/shm", name))
            removed += 1
    return removed


class Ring:
    """Fixed-size slots of named arrays in one shared-memory segment."""

    def __init__(
        self,
        fields: Mapping[str, tuple[tuple[int, ...], Any]],
        slots: int,
        ctx: Any = None,
        name: str = "ring",
    ) -> None:
        if slots < 1:
            raise ValueError("a ring needs at least one slot")
        ctx = ctx or mp.get_context()
        self.name = name
        self.slots = slots
        self._layout: dict[str, tuple[int, tuple[int, ...], np.dtype]] = {}
        offset = 8  # int64 sequence number first
        for key, (shape, dtype) in fields.items():
            dt = np.dtype(dtype)
            offset = -(-offset // _ALIGN) * _ALIGN
            self._layout[key] = (offset, tuple(int(s) for s in shape), dt)
            offset += int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        self.slot_bytes = -(-offset // _ALIGN) * _ALIGN
        self._shm = SharedMemory(
            create=True, size=self.slot_bytes * slots,
            name=f"{segment_prefix(os.getpid())}{name}_{secrets.token_hex(4)}",
        )
        self._owner_pid = os.getpid()
        self._views: dict[int, dict[str, np.ndarray]] = {}
        self.free = ctx.Queue()
        self.ready = ctx.Queue()
        self._dropped = ctx.Value("q", 0)
        for i in range(slots):
            self.free.put(i)

    # -- shared state ------------------------------------------------------------------
    @property
    def shm_name(self) -> str:
        return self._shm.name

    @property
    def dropped(self) -> int:
        """Frames taken back from the ready queue (or refused) by a live writer."""
        return int(self._dropped.value)

    def count_drop(self, n: int = 1) -> None:
        with self._dropped.get_lock():
            self._dropped.value += n

    def view(self, slot: int) -> dict[str, np.ndarray]:
        """Zero-copy numpy views of one slot's arrays."""
        v = self._views.get(slot)
        if v is None:
            base = slot * self.slot_bytes
            v = {
                key: np.ndarray(shape, dt, buffer=self._shm.buf, offset=base + off)
                for key, (off, shape, dt) in self._layout.items()
            }
            v["_seq"] = np.ndarray((1,), np.int64, buffer=self._shm.buf, offset=base)
            self._views[slot] = v
        return v

    def seq(self, slot: int) -> int:
        return int(self.view(slot)["_seq"][0])

    # -- writer side ---------------------------------------------------------------------
    def acquire(
        self, stop: threading.Event | Any | None = None, drop_oldest: bool = False
    ) -> int | None:
        """A free slot to write into.

        Blocking mode waits (checking ``stop``) and returns None only when stopped.
        ``drop_oldest`` never blocks: it takes a free slot, else reclaims the oldest
        published slot no reader has taken yet (a drop), else returns None (the caller
        drops its new frame and should ``count_drop``).
        """
        if drop_oldest:
            try:
                return self.free.get(timeout=0.002)
            except queue.Empty:
                pass
            try:
                item = self.ready.get_nowait()
            except queue.Empty:
                return None
            self.count_drop()
            return item[0]
        while True:
            try:
                return self.free.get(timeout=0.1)
            except queue.Empty:
                if stop is not None and stop.is_set():
                    return None

    def publish(self, slot: int, meta: Any, seq: int = -1) -> None:
        """Hand a filled slot and its small record ``meta`` to the reader; ``seq`` is stamped
        into the slot."""
        self.view(slot)["_seq"][0] = seq
        self.ready.put((slot, meta))

    def close_stream(self) -> None:
        """Tell the reader that no more slots will come."""
        self.ready.put(EOS)

    # -- reader side ---------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> tuple[int, Any] | None:
        """Next published ``(slot, meta)``, or None at end of stream; raises queue.Empty."""
        return self.ready.get(timeout=timeout)

    def release(self, slot: int) -> None:
        """Give a slot back to the writer."""
        self.free.put(slot)

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Detach; the creating process also unlinks the segment."""
        self._views.clear()
        for q in (self.free, self.ready):
            q.cancel_join_thread()
            q.close()
        with contextlib.suppress(BufferError):  # a caller still holds a view; unlink anyway
            self._shm.close()
        if os.getpid() == self._owner_pid:
            with contextlib.suppress(FileNotFoundError):
                self._shm.unlink()

    def __getstate__(self) -> dict:
        # Under fork the ring is inherited; under spawn it is re-attached by name.
        state = self.__dict__.copy()
        state["_shm"] = self._shm.name
        state["_views"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        # Python < 3.13 registers attached segments with the resource tracker as if this
        # process owned them; only the creator should ever unlink.
        register = resource_tracker.register
        resource_tracker.register = lambda *a, **k: None
        try:
            self._shm = SharedMemory(name=state["_shm"])
        finally:
            resource_tracker.register = register
