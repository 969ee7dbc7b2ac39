"""Event clips with pre-roll, remuxed from a real RTSP stream's packets (no re-encoding)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import av

from gapstream import Pipeline
from gapstream.config import EventsConfig, SourceConfig, load_config
from gapstream.events import Event
from gapstream.record import ClipRecorder

from .test_rtsp import RtspServer, gst_rtsp, rtsp_server  # noqa: F401, F811 - fixtures


def clip_info(path: Path) -> tuple[str, int, float, bool]:
    """(codec, frames, seconds from first to last frame, first frame a keyframe) of a clip."""
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        frames = list(c.decode(st))
        return (st.codec_context.name, len(frames), float((frames[-1].pts - frames[0].pts) * st.time_base),
                frames[0].key_frame)


def test_clip_has_the_pre_roll_and_post_roll(rtsp_server: RtspServer, tmp_path: Path) -> None:  # noqa: F811
    cfg = EventsConfig(clips=str(tmp_path), pre_roll=2.0, post_roll=1.0)
    rec = ClipRecorder(SourceConfig(uri=rtsp_server.url, name="gate"), cfg)
    try:
        time.sleep(4.0)  # the recorder buffers more than the pre-roll
        ev = Event(camera="gate", id="e1", start=time.time(), start_pts=0.0)
        rec.event_started(ev)
        time.sleep(1.0)
        ev.end = time.time()
        rec.event_ended(ev)
        time.sleep(2.0)  # the post-roll passes and the clip is closed
    finally:
        rec.close()
    assert ev.clip == str(tmp_path / "gate-e1.mp4")
    codec, frames, seconds, key = clip_info(Path(ev.clip))
    assert codec == "h264" and key
    # 2 s pre-roll (from the keyframe before it: up to 1 s more at the server's 1 s GOP),
    # 1 s of event, 1 s post-roll; at 15 fps.
    assert 3.5 <= seconds <= 5.5, seconds
    assert frames >= 3.5 * 15 * 0.8


def test_pipeline_events_get_clips(rtsp_server: RtspServer, tiny_model: Path, tmp_path: Path) -> None:  # noqa: F811
    cfg = load_config(None, {
        "source.open_timeout": 5.0, "source.max_width": 320, "source.max_height": 240,
        "events.json": str(tmp_path / "ev.jsonl"), "events.clips": str(tmp_path / "clips"),
        "events.on_threshold": 0.0, "events.off_threshold": 0.0, "events.min_frames": 1,
        "events.pre_roll": 1.0, "output.stats_interval": 0,
    })
    pipe = Pipeline(rtsp_server.url, str(tiny_model), cfg)
    for r in pipe.run():
        if r.index == 45:  # 3 s
            pipe.stop()
    (ev,) = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    codec, frames, seconds, key = clip_info(Path(ev["clip"]))
    assert codec == "h264" and key and frames >= 15
