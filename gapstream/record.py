"""Event clips with pre-roll, remuxed from the camera's compressed packets (no re-encoding).

As Frigate and DeepStream's smart record do: a recorder process per live camera reads the
stream a second time without decoding it and keeps the last ``events.pre_roll`` seconds of
packets. When an event starts, the clip begins at the last keyframe before
``start - pre_roll``; it ends ``events.post_roll`` seconds after the event. Packets are copied
into the clip, so the buffer stays intact for the next event.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing as mp
import queue
import time
from pathlib import Path
from typing import Any

import av

from .config import EventsConfig, SourceConfig
from .credentials import redact_text, redact_url
from .events import Event
from .stage import _die_with_parent

log = logging.getLogger("gapstream.record")


class _Clip:
    """One clip being written: packets copied, timestamps shifted to start at 0."""

    def __init__(self, path: Path, template: Any, end: float | None = None) -> None:
        self.path, self.end = path, end
        self.out = av.open(str(path), "w")
        self.stream = self.out.add_stream_from_template(template)
        self.offset: int | None = None

    def mux(self, pkt: Any) -> None:
        if pkt.dts is None:
            return
        if self.offset is None:
            self.offset = pkt.dts
        copy = av.Packet(bytes(pkt))
        copy.pts = None if pkt.pts is None else pkt.pts - self.offset
        copy.dts = pkt.dts - self.offset
        copy.time_base, copy.is_keyframe, copy.stream = pkt.time_base, pkt.is_keyframe, self.stream
        self.out.mux(copy)

    def close(self) -> None:
        self.out.close()


def run_recorder(source: SourceConfig, cfg: EventsConfig, commands: Any, stop: Any) -> None:
    """Recorder process: buffer packets, write a clip per event; reconnects like the capture stage."""
    _die_with_parent()
    folder = Path(cfg.clips or ".")
    buf: collections.deque[tuple[float, Any]] = collections.deque()
    clips: dict[str, _Clip] = {}
    pending: list[tuple[str, str, float]] = []  # commands waiting for the stream's first keyframe
    delay = source.backoff_initial
    while not stop.is_set():
        try:
            opts = {"rtsp_transport": source.rtsp_transport} if source.uri.startswith("rtsp") else {}
            with av.open(source.uri, options=opts, timeout=(source.open_timeout, source.open_timeout)) as c:
                st = c.streams.video[0]
                delay = source.backoff_initial
                buf.clear()  # packets of an earlier connection do not fit this stream's timeline
                for pkt in c.demux(st):
                    if stop.is_set():
                        break
                    if pkt.dts is None:
                        continue
                    now = time.time()
                    buf.append((now, pkt))
                    _trim(buf, now - cfg.pre_roll - 1.0)
                    for clip in clips.values():
                        clip.mux(pkt)
                    _commands(commands, pending, clips, buf, st, folder, cfg, source.name)
                    for eid in [e for e, clip in clips.items() if clip.end is not None and now >= clip.end]:
                        clips.pop(eid).close()
        except (av.error.FFmpegError, OSError) as exc:
            log.warning("clip recorder %s: %s; retrying in %.1f s", redact_url(source.uri),
                        redact_text(str(exc)), delay)
        for clip in clips.values():  # a clip never spans two connections
            clip.close()
        clips.clear()
        stop.wait(delay)
        delay = min(delay * 2, source.backoff_max)


def _trim(buf: collections.deque, oldest: float) -> None:
    """Drop packets older than ``oldest``, but keep the keyframe that starts the remaining GOP."""
    while len(buf) > 1 and buf[0][0] < oldest:
        nxt = next((i for i, (_, p) in enumerate(buf) if i and p.is_keyframe), None)
        if nxt is None or buf[nxt][0] > oldest:
            return
        for _ in range(nxt):
            buf.popleft()


def _commands(commands: Any, pending: list[tuple[str, str, float]], clips: dict[str, _Clip],
              buf: collections.deque, st: Any, folder: Path, cfg: EventsConfig, camera: str) -> None:
    """Carry out the listener's commands, in order. An event that starts before the recorder has
    seen a keyframe (it connects at the same time as the capture) waits for one in ``pending``."""
    while True:
        try:
            pending.append(commands.get_nowait())
        except queue.Empty:
            break
    while pending:
        kind, eid, t = pending[0]
        if kind == "start" and eid not in clips:
            keys = [i for i, (ts, p) in enumerate(buf) if p.is_keyframe and ts <= t - cfg.pre_roll]
            first = keys[-1] if keys else next((i for i, (_, p) in enumerate(buf) if p.is_keyframe), None)
            if first is None:
                return  # no keyframe yet: nothing decodable to start from; tried again next packet
            pending.pop(0)
            clip = _Clip(folder / f"{camera}-{eid}.mp4", st)
            for _, pkt in list(buf)[first:]:
                clip.mux(pkt)
            clips[eid] = clip
        else:
            pending.pop(0)
            if kind == "end" and eid in clips:
                clips[eid].end = t + cfg.post_roll


class ClipRecorder:
    """The event listener that drives one camera's recorder process."""

    def __init__(self, source: SourceConfig, cfg: EventsConfig) -> None:
        ctx = mp.get_context("fork")
        self.camera, self.folder = source.name, Path(cfg.clips or ".")
        self.commands, self.stop = ctx.Queue(), ctx.Event()
        self.proc = ctx.Process(target=run_recorder, args=(source, cfg, self.commands, self.stop),
                                name=f"gapstream-record-{source.name}", daemon=True)
        self.proc.start()

    def event_started(self, event: Event) -> None:
        if event.camera == self.camera:
            event.clip = str(self.folder / f"{self.camera}-{event.id}.mp4")
            self.commands.put(("start", event.id, event.start))

    def event_ended(self, event: Event) -> None:
        if event.camera == self.camera:
            self.commands.put(("end", event.id, event.end))

    def close(self) -> None:
        """Let the recorder write what the queue holds (and the post-roll, briefly), then stop it."""
        time.sleep(0.2)
        self.stop.set()
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=2)
        with contextlib.suppress(OSError, ValueError):
            self.commands.close()
