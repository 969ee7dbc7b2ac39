"""Several cameras in one run: shared batches, per-camera names and input sizes, and one failing camera."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from gapstream.config import load_config
from gapstream.errors import ConfigError, PipelineError
from gapstream.meta import load_meta
from gapstream.multi import MultiPipeline, camera_line, parse_sources

from .broker import free_port
from .helpers import brightness_model, gapstream_children, make_video, make_video_frames, shm_segments
from .test_rtsp import RtspServer, gst_rtsp, rtsp_server  # noqa: F401, F811 - fixtures


def test_cameras_share_batches_and_keep_their_names_and_order(tiny_model: Path, tmp_path: Path) -> None:
    a = make_video(tmp_path / "a.mp4", frames=30, width=160, height=120)
    b = make_video(tmp_path / "b.mp4", frames=20, width=320, height=240)
    port = free_port()
    cfg = load_config(None, {
        "sources": [{"name": "front", "uri": str(a)}, {"name": "back", "uri": str(b)}],
        "output.json": str(tmp_path / "out.jsonl"), "events.json": str(tmp_path / "events.jsonl"),
        "events.on_threshold": 0.0, "events.off_threshold": 0.0, "events.min_frames": 1,
        "http.port": port, "output.stats_interval": 0, "infer.batch_size": 4,
    })
    pipe = MultiPipeline(model=str(tiny_model), config=cfg)
    seen: dict[str, list[tuple[int, int]]] = {"front": [], "back": []}
    metrics = ""
    for r in pipe.run():
        seen[r.camera].append((r.index, int(np.median(r.frame[:, :, 0]))))
        assert r.frame.shape == ((120, 160, 3) if r.camera == "front" else (240, 320, 3))
        if not metrics and len(seen["front"]) == 10:
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert [i for i, _ in seen["front"]] == list(range(30))
    assert [i for i, _ in seen["back"]] == list(range(20))
    for cam in seen.values():  # each camera's own frames (the gray level is the frame index)
        assert all(abs(g - (i * 8) % 256) <= 4 for i, g in cam)
    assert pipe.stats is not None and pipe.stats.frames == 50 and pipe.stats.batches < 50
    assert pipe.camera_stats["front"]["captured"] == 30 and pipe.camera_stats["back"]["captured"] == 20
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["camera"] for r in lines) == ["back"] * 20 + ["front"] * 30
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert sorted((e["camera"], e["frames"]) for e in events) == [("back", 20), ("front", 30)]
    assert 'gapstream_frames_captured_total{camera="front"}' in metrics
    assert 'gapstream_frames_captured_total{camera="back"}' in metrics


def test_cameras_of_different_aspect_keep_their_own_input_size(tmp_path: Path) -> None:
    """A 4:3 and a 16:9 camera in one run: each is run at its own (unsquashed) network input, so
    its CAM has its own grid (masks too), and its boxes land on its bright object, in its own
    pixels; the two share the inference stage and lose no frame."""
    model = brightness_model(tmp_path / "model")  # keep_aspect, 16-px cells: CAM = brightness
    meta = load_meta(model)
    # (name, width, height, frames, the bright object x1, y1, x2, y2 in the camera's pixels)
    cams = {"wide": (640, 360, 16, (64, 144, 256, 336)), "four3": (320, 240, 24, (192, 48, 288, 144))}
    sources, grids, cells = [], {}, {}
    for name, (w, h, n, (x1, y1, x2, y2)) in cams.items():
        img = np.full((h, w, 3), 150, np.uint8)  # grey enough to be "person" everywhere...
        img[y1:y2, x1:x2] = 255  # ...and the brightest, so the only cells above the box threshold
        make_video_frames(tmp_path / f"{name}.mp4", [img] * n, fps=10)
        sources.append({"name": name, "uri": str(tmp_path / f"{name}.mp4")})
        ih, iw = meta.input_size_for(h, w)
        grids[name] = meta.maps_shape((ih, iw))[:2]
        cells[name] = 16 * w / iw  # one CAM cell in the camera's pixels
    assert grids == {"wide": (4, 7), "four3": (5, 7)}  # the first camera's input would squash the other
    # A mask in a corner away from the objects, on each camera's own grid.
    sources[0]["masks"] = [[[0.7, 0.0], [1.0, 0.0], [1.0, 0.3], [0.7, 0.3]]]
    sources[1]["masks"] = [[[0.0, 0.7], [0.3, 0.7], [0.3, 1.0], [0.0, 1.0]]]
    # the bright objects never move: without this the motion gate would close their cells
    cfg = load_config(None, {"sources": sources, "post.threshold": 0.9, "infer.batch_size": 4,
                             "output.stats_interval": 0, "motion.enabled": False})
    pipe = MultiPipeline(model=str(model), config=cfg)
    seen: dict[str, list[int]] = {"wide": [], "four3": []}
    for r in pipe.run():
        w, h, _, (x1, y1, x2, y2) = cams[r.camera]
        seen[r.camera].append(r.index)
        assert r.frame.shape == (h, w, 3) and r.cam.shape == grids[r.camera], (r.camera, r.cam.shape)
        assert r.is_person and len(r.detections.xyxy) >= 1, (r.camera, r.index, r.person_prob)
        bx1, by1, bx2, by2 = r.detections.xyxy[0]
        assert 0 <= bx1 < bx2 <= w and 0 <= by1 < by2 <= h, (r.camera, r.detections.xyxy)
        cx, cy, margin = (bx1 + bx2) / 2, (by1 + by2) / 2, cells[r.camera]
        assert x1 - margin <= cx <= x2 + margin and y1 - margin <= cy <= y2 + margin, (r.camera, (cx, cy))
        assert (r.cam[0, -1] if r.camera == "wide" else r.cam[-1, 0]) == 0  # the masked corner cell
    assert seen == {"wide": list(range(16)), "four3": list(range(24))}
    assert pipe.stats is not None and pipe.stats.frames == 40 and pipe.stats.dropped == 0
    assert {n: s["captured"] for n, s in pipe.camera_stats.items()} == {"wide": 16, "four3": 24}


def test_a_failing_camera_does_not_stall_the_others(tiny_model: Path) -> None:
    dead = f"rtsp://user:pw@127.0.0.1:{free_port()}/nothing"  # nobody listens
    cfg = load_config(None, {
        "sources": [{"name": "good", "uri": "synthetic://?width=64&height=48&frames=45&live=1&fps=15"},
                    {"name": "bad", "uri": dead, "connect_attempts": 1, "open_timeout": 1.0}],
        "output.stats_interval": 0,
    })
    pipe = MultiPipeline(model=str(tiny_model), config=cfg)
    times = []
    with pytest.raises(PipelineError, match="camera bad: cannot connect") as err:
        for r in pipe.run():
            assert r.camera == "good"
            times.append((time.monotonic(), r.index))
    assert "pw" not in str(err.value)  # the password is redacted
    # Every frame of the good camera, at its pace: delivered in order or, being live, counted as
    # dropped (a loaded machine may drop a few; never a stall).
    got = [i for _, i in times]
    assert got == sorted(set(got)) and got[-1] == 44
    assert len(got) + pipe.camera_stats["good"]["dropped"] == 45 and len(got) >= 35
    assert pipe.failed.keys() == {"bad"}
    gaps = np.diff([t for t, _ in times])
    assert gaps.max() < 1.0  # the failure (about 1 s into the run) never held the good camera up
    assert not shm_segments() and not gapstream_children()


def test_camera_counters_add_up_when_a_slow_consumer_fills_the_rings(tiny_model: Path) -> None:
    """``captured`` counts every decoded frame, also those a full live ring refused or took back
    (``dropped``): once the run has drained, each camera's results + dropped == captured, in the
    stats, the summary line and the totals alike."""
    live = "synthetic://?width=64&height=48&fps=30&live=1&frames=60"
    cfg = load_config(None, {"sources": [{"name": "a", "uri": live}, {"name": "b", "uri": live}],
                             "output.stats_interval": 0})
    pipe = MultiPipeline(model=str(tiny_model), config=cfg)
    got = {"a": 0, "b": 0}
    for r in pipe.run():
        got[r.camera] += 1
        time.sleep(0.05)  # 20 results/s against 60 frames/s: every slot ends up waiting for this loop
    stats = pipe.camera_stats
    for name, s in stats.items():
        assert s["captured"] == 60, (name, s)  # every frame of the source, the refused ones too
        assert s["inferred"] == got[name] and s["dropped"] > 0, (name, s)
        assert s["inferred"] + s["dropped"] == s["captured"], (name, s)
        assert f"{name} {got[name]} frames, captured 60, dropped {60 - got[name]}," in camera_line(stats)
    assert pipe.stats is not None and pipe.stats.captured == 120
    assert pipe.stats.frames + pipe.stats.dropped == 120


def test_cameras_decode_straight_to_the_model_size_when_no_output_needs_full_frames(
        tiny_model: Path, tmp_path: Path) -> None:
    """source.decode_to_model per camera: each camera's ring holds model-size frames, the results
    match full-size decoding and the boxes are in the camera's own pixels; an output that needs
    full frames makes it a config error, as in a single run."""
    clips = {"big": make_video(tmp_path / "big.mp4", frames=12, width=320, height=240),
             "small": make_video(tmp_path / "small.mp4", frames=8, width=160, height=120)}
    sources = [{"name": n, "uri": str(p)} for n, p in clips.items()]
    base = {"sources": sources, "post.score_threshold": 0.0, "output.stats_interval": 0,
            "output.json": str(tmp_path / "o.jsonl")}

    def run(**extra: object) -> dict[str, list]:
        cfg = load_config(None, {**base, **extra})
        out: dict[str, list] = {"big": [], "small": []}
        for r in MultiPipeline(model=str(tiny_model), config=cfg).run():
            out[r.camera].append((r.index, r.frame.shape, r.probs.copy(), r.detections.xyxy.copy()))
        return out

    direct, full = run(**{"source.decode_to_model": True}), run()
    sizes = {"big": (240, 320), "small": (120, 160)}
    for name, (h, w) in sizes.items():
        assert [i for i, *_ in direct[name]] == [i for i, *_ in full[name]] == list(range(len(full[name])))
        assert len(full[name]) == (12 if name == "big" else 8)
        for (_, shape, probs, boxes), (_, full_shape, ref, _) in zip(direct[name], full[name]):
            assert shape == (64, 64, 3) and full_shape == (h, w, 3)  # the ring slot: the tiny model's input
            np.testing.assert_allclose(probs, ref, atol=0.05)  # swscale's area filter vs OpenCV's
            if len(boxes):
                assert boxes[:, 2].max() <= w and boxes[:, 3].max() <= h
                assert boxes[:, 2].max() > 64 or boxes[:, 3].max() > 64  # in the camera's pixels
    for key, value in (("events.snapshots", str(tmp_path / "shots")), ("http.port", free_port())):
        cfg = load_config(None, {**base, "source.decode_to_model": True, key: value})
        with pytest.raises(ConfigError, match="needs full-size frames"):
            MultiPipeline(model=str(tiny_model), config=cfg).plan()
    # The command line turns it on by itself when only JSON is written.
    r = subprocess.run([sys.executable, "-m", "gapstream", "run", *(f"{n}={p}" for n, p in clips.items()),
                        "--model", str(tiny_model), "--json", str(tmp_path / "cli.jsonl")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for name in clips:
        assert f"camera {name}: decoding straight to the model's input size 64x64" in r.stderr


def test_cli_several_sources_and_errors(tiny_model: Path, tmp_path: Path) -> None:
    a = make_video(tmp_path / "a.mp4", frames=10)
    r = subprocess.run([sys.executable, "-m", "gapstream", "run", f"left={a}", f"right={a}", "--model",
                        str(tiny_model), "--json", str(tmp_path / "o.jsonl")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "20 frames" in r.stdout and "left 10 frames" in r.stdout and "right 10 frames" in r.stdout
    r = subprocess.run([sys.executable, "-m", "gapstream", "run", str(a), str(a), "--model", str(tiny_model),
                        "--out", str(tmp_path / "o.mp4")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("gapstream: error: output.video and --show take one")


def test_cli_interrupted_still_reports_each_camera(tiny_model: Path, tmp_path: Path) -> None:
    live = "synthetic://?width=64&height=48&fps=15&live=1"
    with subprocess.Popen([sys.executable, "-m", "gapstream", "run", f"door={live}", f"yard={live}",
                           "--model", str(tiny_model), "--json", str(tmp_path / "o.jsonl")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_lines(tmp_path / "o.jsonl")) < 20:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    line = next(x for x in err.splitlines() if x.startswith("gapstream: cameras:"))
    assert "door " in line and "yard " in line and "interrupted" in err


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_sources_config_inherits_and_checks_names() -> None:
    cfg = load_config(None, {"source.open_timeout": 3.0,
                             "sources": [{"uri": "x.mp4"}, {"uri": "y.mp4", "name": "yard"}]})
    assert [(s.name, s.open_timeout) for s in cfg.sources] == [("cam1", 3.0), ("yard", 3.0)]
    with pytest.raises(ConfigError, match="'sources' has two cameras of one name"):
        load_config(None, {"sources": [{"uri": "x", "name": "a"}, {"uri": "y", "name": "a"}]})
    with pytest.raises(ConfigError, match="'sources.1..name'"):
        load_config(None, {"sources": [{"uri": "x"}, {"uri": "y", "name": "a b"}]})
    base = load_config(None).source
    assert [(s.name, s.uri) for s in parse_sources(["door=rtsp://h/x", "/v/a=b.mp4", "c.mp4"], base)] == [
        ("door", "rtsp://h/x"), ("cam2", "/v/a=b.mp4"), ("cam3", "c.mp4")]


def test_a_reconnecting_camera_does_not_stall_the_others(rtsp_server: RtspServer,  # noqa: F811
                                                         tiny_model: Path) -> None:
    cfg = load_config(None, {
        "source.open_timeout": 2.0, "source.backoff_initial": 0.2, "source.backoff_max": 1.0,
        "source.reconnect_attempts": 10, "source.max_width": 320, "source.max_height": 240,
        "sources": [{"name": "rtsp", "uri": rtsp_server.url},
                    {"name": "ticker", "uri": "synthetic://?width=64&height=48&frames=150&live=1&fps=15"}],
        "infer.batch_size": 2, "output.stats_interval": 0,
    })
    pipe = MultiPipeline(model=str(tiny_model), config=cfg)
    ticker: list[float] = []
    rtsp: list[float] = []
    killed_at = 0.0
    start = time.monotonic()
    for r in pipe.run():
        now = time.monotonic()
        (ticker if r.camera == "ticker" else rtsp).append(now)
        if not killed_at and len(rtsp) == 10:
            rtsp_server.kill()  # the camera vanishes; restarted 1.5 s later, from another thread
            killed_at = now
            threading.Timer(1.5, rtsp_server.start).start()
        # The ticker is done (or something is wrong); the RTSP camera would go on forever.
        if (r.camera == "ticker" and r.index == 149) or now - start > 60:
            pipe.stop()
    assert killed_at and len(ticker) + pipe.camera_stats["ticker"]["dropped"] == 150
    # The ticker never waited for the reconnecting camera (an outage here lasts 2 s or more).
    assert np.diff(ticker).max() < 1.5, np.diff(ticker).max()
    assert any(t > killed_at + 1.5 for t in rtsp), "the RTSP camera did not come back"
    assert pipe.camera_stats["rtsp"]["reconnects"] >= 1 and not pipe.failed, (pipe.camera_stats, pipe.failed)


def test_watchdog_stops_a_hung_camera_and_the_others_go_on(tiny_model: Path) -> None:
    """Every camera's capture has a heartbeat: a SIGSTOPped one is found within watchdog_timeout
    (while the other cameras keep delivering) and ends alone, like a failed camera."""
    import multiprocessing as mp
    import os
    import re
    import signal

    cfg = load_config(None, {"watchdog_timeout": 2.0, "output.stats_interval": 0})
    live = "synthetic://?width=64&height=48&fps=10&live=1&frames=150"
    pipe = MultiPipeline(parse_sources([f"a={live}", f"b={live}"], cfg.source), str(tiny_model), cfg)
    counts = {"a": 0, "b": 0}
    stopped = False
    with pytest.raises(PipelineError, match="camera a: capture:a stage made no progress") as err:
        for r in pipe.run():
            counts[r.camera] += 1
            if not stopped and counts["a"] == 10:
                (cap,) = [p for p in mp.active_children() if p.name == "gapstream-capture-a"]
                os.kill(cap.pid, signal.SIGSTOP)
                stopped = True
    silent = int(re.search(r"no progress for (\d+) s", str(err.value)).group(1))
    assert 2 <= silent <= 6, str(err.value)  # noticed while camera b still delivered (15 s of frames)
    assert "a" in pipe.failed and not gapstream_children() and not shm_segments()
    assert counts["b"] >= 140  # a live camera may drop a frame under load


@pytest.mark.parametrize(("stage", "fault"),
                         [("infer", "SIGKILL"), ("infer", "SIGSTOP"), ("post", "SIGKILL")])
def test_a_killed_or_hung_shared_stage_is_restarted_and_every_camera_goes_on(
        rtsp_server: RtspServer, tiny_model: Path, stage: str, fault: str) -> None:  # noqa: F811
    """The inference (or post) process of a live run over an RTSP camera and a synthetic one is
    killed (the OOM killer) or stopped for good (hung): every stage is replaced with fresh
    processes and rings,
    the sinks stay open, and both cameras go on delivering, in order; the restart is counted and
    the old rings are gone."""
    import os

    cfg = load_config(None, {
        "watchdog_timeout": 2.0, "source.open_timeout": 2.0, "source.backoff_initial": 0.2,
        "source.backoff_max": 1.0, "source.max_width": 320, "source.max_height": 240,
        "sources": [{"name": "rtsp", "uri": rtsp_server.url},
                    {"name": "ticker", "uri": "synthetic://?width=64&height=48&fps=15&live=1"}],
        "infer.batch_size": 2, "output.stats_interval": 0,
    })
    pipe = MultiPipeline(model=str(tiny_model), config=cfg)
    before, after = {"rtsp": 0, "ticker": 0}, {"rtsp": 0, "ticker": 0}
    indices: dict[str, list[int]] = {"rtsp": [], "ticker": []}
    hit: list[int] = []
    rings_before: set[str] = set()
    rings_after: set[str] = set()
    deadline = time.monotonic() + 90
    for r in pipe.run():
        indices[r.camera].append(r.index)
        (after if hit else before)[r.camera] += 1
        if not hit and min(before.values()) >= 10:
            rings_before = shm_segments()
            (proc,) = [p for p in gapstream_children() if p.name == f"gapstream-{stage}"]
            os.kill(proc.pid, getattr(signal, fault))
            hit.append(proc.pid)
        # More frames per camera than its ring holds: most come from the new stages.
        if hit and min(after.values()) >= 20 and not rings_after:
            rings_after = shm_segments()
            pipe.stop()
        if time.monotonic() > deadline:
            pipe.stop()
    assert min(after.values()) >= 20, (before, after, pipe.camera_stats)
    with pytest.raises(ProcessLookupError):
        os.kill(hit[0], 0)  # the faulty stage is gone (reaped), not left behind
    for name, got in indices.items():  # each camera's frames in order, numbering on after the restart
        assert got == sorted(set(got)), name
    assert pipe.stats is not None and pipe.stats.restarts == 1 and "stage restarts 1" in pipe.stats.summary()
    for s in pipe.camera_stats.values():  # frames lost with the old rings count as dropped, not twice
        assert s["restarts"] == 1 and s["inferred"] + s["dropped"] <= s["captured"], pipe.camera_stats
    assert not pipe.failed, pipe.failed
    # The old rings were unlinked at the restart, the new ones at the end.
    assert len(rings_after) == len(rings_before) == 3 and not rings_before & rings_after
    assert not shm_segments() and not gapstream_children()


def test_a_hung_inference_stage_ends_a_run_with_a_file_camera(tiny_model: Path, tmp_path: Path) -> None:
    """Restarting would read a file camera again from its start: as in a single offline run, a hung
    inference stage ends the run with one clear error instead."""
    import os

    clip = make_video(tmp_path / "a.mp4", frames=300)
    live = "synthetic://?width=64&height=48&fps=15&live=1"
    cfg = load_config(None, {"watchdog_timeout": 2.0, "output.stats_interval": 0,
                             "sources": [{"name": "file", "uri": str(clip)}, {"name": "live", "uri": live}]})
    pipe = MultiPipeline(model=str(tiny_model), config=cfg)
    with pytest.raises(PipelineError, match=r"infer stage made no progress .* ended the run \(a camera is"):
        for n, _ in enumerate(pipe.run()):
            if n == 5:
                (proc,) = [p for p in gapstream_children() if p.name == "gapstream-infer"]
                os.kill(proc.pid, signal.SIGSTOP)
    assert not shm_segments() and not gapstream_children()


def test_each_camera_has_its_own_score_history(tmp_path: Path) -> None:
    """Smoothing (on by default) keeps one history per camera: a steady bright camera must not
    lend its "person" frames to another camera's lone bright one, batched with it."""
    model = brightness_model(tmp_path / "model")  # a bright frame is a "person"
    dark, light = np.full((90, 160, 3), 20, np.uint8), np.full((90, 160, 3), 230, np.uint8)
    make_video_frames(tmp_path / "blink.mp4", [dark] * 10 + [light] + [dark] * 9, fps=10)
    make_video_frames(tmp_path / "steady.mp4", [light] * 20, fps=10)
    cfg = load_config(None, {"sources": [{"name": "blink", "uri": str(tmp_path / "blink.mp4")},
                                         {"name": "steady", "uri": str(tmp_path / "steady.mp4")}],
                             "infer.batch_size": 4, "output.stats_interval": 0, "motion.enabled": False})
    flags: dict[str, list[bool]] = {"blink": [], "steady": []}
    for r in MultiPipeline(model=str(model), config=cfg).run():
        flags[r.camera].append(r.is_person)
    assert flags == {"blink": [False] * 20, "steady": [True] * 20}
