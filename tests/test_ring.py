"""Ring buffer: ordering, wrap-around, blocking without loss, live drop counting, cleanup."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gapstream.ring import EOS, Ring

CTX = mp.get_context("fork")


def make_ring(slots: int = 3) -> Ring:
    return Ring({"frame": ((4, 5, 3), np.uint8), "t": ((1,), np.float64)}, slots, CTX, "test")


def _writer(ring: Ring, n: int) -> None:
    for i in range(n):
        slot = ring.acquire()
        ring.view(slot)["frame"][:] = i % 256
        ring.publish(slot, {"seq": i}, i)
    ring.close_stream()


def test_views_are_zero_copy_and_slots_are_disjoint() -> None:
    ring = make_ring()
    try:
        a, b = ring.view(0)["frame"], ring.view(1)["frame"]
        a[:] = 7
        b[:] = 9
        assert np.all(ring.view(0)["frame"] == 7) and np.all(ring.view(1)["frame"] == 9)
        assert not np.shares_memory(a, b)
        assert ring.view(0)["frame"].ctypes.data == a.ctypes.data  # same memory, no copy
    finally:
        ring.close()


def test_blocking_mode_keeps_order_and_loses_nothing_across_wraparound() -> None:
    ring = make_ring(slots=3)
    n = 50  # many times the slot count: every slot is reused (wrap-around)
    proc = CTX.Process(target=_writer, args=(ring, n))
    proc.start()
    seen = []
    try:
        while True:
            item = ring.get(timeout=10)
            if item is EOS:
                break
            slot, meta = item
            assert ring.seq(slot) == meta["seq"]
            assert np.all(ring.view(slot)["frame"] == meta["seq"] % 256)
            seen.append(meta["seq"])
            ring.release(slot)
        proc.join(5)
        assert proc.exitcode == 0
        assert seen == list(range(n))
        assert ring.dropped == 0
    finally:
        ring.close()


def test_live_mode_drops_oldest_waiting_and_counts() -> None:
    ring = make_ring(slots=3)
    try:
        for i in range(5):  # nobody reads: slots 0..2 fill, then the oldest waiting are reclaimed
            slot = ring.acquire(drop_oldest=True)
            assert slot is not None
            ring.publish(slot, {"seq": i}, i)
        assert ring.dropped == 2
        got = [ring.get(timeout=1)[1]["seq"] for _ in range(3)]
        assert got == [2, 3, 4]  # the newest frames survive, in order
    finally:
        ring.close()


def test_live_mode_returns_none_when_every_slot_is_downstream() -> None:
    ring = make_ring(slots=2)
    try:
        for i in range(2):
            ring.publish(ring.acquire(drop_oldest=True), {"seq": i}, i)
        taken = [ring.get(timeout=1) for _ in range(2)]  # a reader holds both slots
        assert ring.acquire(drop_oldest=True) is None
        ring.count_drop()
        assert ring.dropped == 1
        ring.release(taken[0][0])
        assert ring.acquire(drop_oldest=True) == taken[0][0]
    finally:
        ring.close()


def test_blocking_acquire_returns_none_when_stopped() -> None:
    ring = make_ring(slots=1)
    stop = CTX.Event()
    try:
        assert ring.acquire(stop) == 0
        stop.set()
        assert ring.acquire(stop) is None
        with pytest.raises(queue.Empty):
            ring.get(timeout=0.05)
    finally:
        ring.close()


def test_close_unlinks_the_segment() -> None:
    ring = make_ring()
    name = ring.shm_name
    assert os.path.exists(f"/dev/shm/{name}")
    ring.close()
    assert not os.path.exists(f"/dev/shm/{name}")


def test_a_view_kept_after_close_stays_readable(tiny_model: Path, video: Path) -> None:
    """NumPy holds no buffer export on shared memory, so unmapping it under a view that is still
    held (a ring closed, a result's frame kept after its run) used to crash the process: a
    subprocess, so that a crash fails this test, not the test run."""
    code = f"""
import os
import numpy as np
from gapstream import Pipeline
from gapstream.config import load_config
from gapstream.ring import Ring
ring = Ring({{"frame": ((4, 6, 3), np.uint8)}}, 2)
view, name = ring.view(1)["frame"], ring.shm_name
view[:] = 7
ring.close()
assert not os.path.exists("/dev/shm/" + name) and int(view.sum()) == 7 * view.size
results = list(Pipeline({str(video)!r}, {str(tiny_model)!r}, load_config(None)).run())
print(len(results), sum(float(r.frame.mean()) > 0 for r in results))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["30", "30"]  # every kept frame still holds its pixels


def test_child_close_does_not_unlink() -> None:
    ring = make_ring()
    try:
        proc = CTX.Process(target=ring.close)
        proc.start()
        proc.join(5)
        assert os.path.exists(f"/dev/shm/{ring.shm_name}")
    finally:
        ring.close()
