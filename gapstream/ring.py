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
import mmap
import multiprocessing as mp
import os
import queue
import secrets
import threading
from collections.abc import Callable, Mapping
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

_ALIGN = 64
EOS = None  # end-of-stream marker on the ready queue
SEGMENT_PREFIX = "gapstream_"  # then the creator's pid: gapstream_<pid>_<ring>_<random>
SHM_DIR = "/dev/shm"  # where Linux keeps POSIX shared memory


def _mapping(shm: SharedMemory) -> mmap.mmap:
    """A mapping of ``shm`` of its own, the one the slot views are made from.

    NumPy does not hold a buffer export on what it views, so ``SharedMemory.close()`` unmaps
    memory that views still point to, and reading such a view (a result's frame kept after the
    run) crashes the process. The views keep this mapping alive instead: it is unmapped when the
    ring has let go of it and the last view is gone.
    """
    fd = os.open(os.path.join(SHM_DIR, shm.name.lstrip("/")), os.O_RDWR)
    try:
        return mmap.mmap(fd, shm.size)
    finally:
        os.close(fd)


def _reserve(shm: SharedMemory, size: int) -> None:
    # tmpfs allocates pages on first touch; without this a full /dev/shm kills the writer
    # with SIGBUS in the middle of a frame.
    fd = getattr(shm, "_fd", -1)
    if fd >= 0 and hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)


Fields = Mapping[str, tuple[tuple[int, ...], Any]]


def slot_layout(fields: Fields) -> tuple[dict[str, tuple[int, tuple[int, ...], np.dtype]], int]:
    """Where each field sits in a slot (offset, shape, dtype), and the slot's size in bytes."""
    layout: dict[str, tuple[int, tuple[int, ...], np.dtype]] = {}
    offset = 8  # int64 sequence number first
    for key, (shape, dtype) in fields.items():
        dt = np.dtype(dtype)
        offset = -(-offset // _ALIGN) * _ALIGN
        layout[key] = (offset, tuple(int(s) for s in shape), dt)
        offset += int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    return layout, -(-offset // _ALIGN) * _ALIGN


class Ring:
    """Fixed-size slots of named arrays in one shared-memory segment.

    The segment's memory is reserved when it is made (``posix_fallocate``), so that a full
    ``/dev/shm`` is an OSError (ENOSPC) here and never a SIGBUS when a slot is first written.
    """

    def __init__(
        self,
        fields: Fields,
        slots: int,
        ctx: Any = None,
        name: str = "ring",
    ) -> None:
        if slots < 1:
            raise ValueError("a ring needs at least one slot")
        ctx = ctx or mp.get_context()
        self.name = name
        self.slots = slots
        self._layout, self.slot_bytes = slot_layout(fields)
        self._shm = SharedMemory(
            create=True, size=self.slot_bytes * slots,
            name=f"{SEGMENT_PREFIX}{os.getpid()}_{name}_{secrets.token_hex(4)}",
        )
        self._owner_pid = os.getpid()
        try:
            _reserve(self._shm, self.slot_bytes * slots)
        except OSError:
            self._shm.close()
            self._shm.unlink()
            raise
        self._map = _mapping(self._shm)
        self._views: dict[int, dict[str, np.ndarray]] = {}
        self.free = ctx.Queue()
        self.ready = ctx.Queue()
        self._dropped = ctx.Value("q", 0)
        for i in range(slots):
            self.free.put(i)

    @staticmethod
    def bytes_for(fields: Fields, slots: int) -> int:
        """The segment size a ring of these fields and slots takes."""
        return slot_layout(fields)[1] * slots

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
                key: np.ndarray(shape, dt, buffer=self._map, offset=base + off)
                for key, (off, shape, dt) in self._layout.items()
            }
            v["_seq"] = np.ndarray((1,), np.int64, buffer=self._map, offset=base)
            self._views[slot] = v
        return v

    def seq(self, slot: int) -> int:
        return int(self.view(slot)["_seq"][0])

    # -- writer side ---------------------------------------------------------------------
    def acquire(
        self, stop: threading.Event | Any | None = None, drop_oldest: bool = False,
        on_wait: Callable[[], None] | None = None,
    ) -> int | None:
        """A free slot to write into.

        Blocking mode waits (checking ``stop`` and calling ``on_wait`` every 0.1 s) and returns
        None only when stopped.
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
                if on_wait is not None:
                    on_wait()

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
        """Detach; the creating process also unlinks the segment. Views still held elsewhere stay
        readable (see :func:`_mapping`)."""
        self._views.clear()
        self._map = None
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
        state["_map"] = None
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
        self._map = _mapping(self._shm)
