"""Faults injected for real: outputs that are inputs, signals, failing outputs, small /dev/shm,
hung stages, stale segments. Each must end in one clear error (or exit 130), no lost data, no leak."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import yaml

from gapstream.config import load_config
from gapstream.detections import Detections
from gapstream.errors import PipelineError
from gapstream.media import add_video_stream, encode
from gapstream.paths import ROOT
from gapstream.pipeline import Pipeline

from .helpers import (
    gapstream_children,
    make_video,
    private_mounts_unavailable,
    run_with_tmpfs,
    shm_segments,
)
from .test_bad_input import assert_one_clear_error, run_cli

CONFIGS = ROOT / "configs"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_output_that_is_the_input_is_refused_before_anything_is_opened(tiny_model: Path,
                                                                         tmp_path: Path) -> None:
    clip = make_video(tmp_path / "x.mp4")
    before = digest(clip)
    (tmp_path / "link.mp4").symlink_to(clip)
    os.link(clip, tmp_path / "hard.mp4")
    for flag, target in (("--out", clip), ("--json", clip), ("--out", tmp_path / "link.mp4"),
                         ("--json", tmp_path / "hard.mp4"), ("--out", tmp_path / "sub" / ".." / "x.mp4")):
        (tmp_path / "sub").mkdir(exist_ok=True)
        r = run_cli(str(clip), "--model", str(tiny_model), flag, str(target))
        assert_one_clear_error(r, flag, "is the input", "refusing to overwrite")
        assert "truncated" not in r.stderr
        assert digest(clip) == before
    r = run_cli(str(clip), "--model", str(tiny_model), "--model", str(tiny_model), "--json", str(tiny_model))
    assert_one_clear_error(r, "is the input")
    assert tiny_model.stat().st_size > 0
    config = tmp_path / "c.yaml"
    config.write_text("infer:\n  batch_size: 2\n")
    r = run_cli(str(clip), "--model", str(tiny_model), "--config", str(config), "--json", str(config))
    assert_one_clear_error(r, "is the input")
    assert config.read_text() == "infer:\n  batch_size: 2\n"
    same = tmp_path / "same.out"
    assert_one_clear_error(run_cli(str(clip), "--model", str(tiny_model), "--out", str(same), "--json",
                                   str(same)), "same file")
    assert not same.exists()


def count_frames(path: Path) -> int:
    """Frames that decode (a broken or truncated video raises)."""
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def popen_run(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gapstream", "run", *args, "--stats-interval", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_no_leftovers(proc: subprocess.Popen) -> None:
    assert not shm_segments(proc.pid), "leaked shared memory"
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True).stdout.strip()
    assert children == b"", "leaked stage processes"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_at_any_moment_exits_130_and_video_matches_json(tiny_model: Path, tmp_path: Path,
                                                               sig: int) -> None:
    # An endless offline source: the run only ends by the signal, whenever it comes
    # (start-up, model loading, first frames, steady state; once twice in a row).
    source = "synthetic://?width=320&height=240"
    for i, (delay, repeat) in enumerate(((0.4, 1), (0.9, 1), (1.6, 1), (3.0, 1), (3.0, 2), (5.0, 3))):
        out, js = tmp_path / f"o{i}.mp4", tmp_path / f"o{i}.jsonl"
        proc = popen_run(source, "--model", str(tiny_model), "--out", str(out), "--json", str(js))
        time.sleep(delay)
        for _ in range(repeat):
            proc.send_signal(sig)
            time.sleep(0.05)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "interrupted" in err
        assert_no_leftovers(proc)
        lines = js.read_text().splitlines() if js.exists() else []
        assert [json.loads(line)["frame"] for line in lines] == list(range(len(lines)))
        if lines:
            assert count_frames(out) == len(lines)  # flushed: not one packet lost
        else:
            assert not out.exists()  # no empty, unplayable video


def test_read_only_folder_full_disk_and_bad_encoder_option_give_one_error(tiny_model: Path,
                                                                          tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", frames=200, width=640, height=480)
    base = (str(clip), "--model", str(tiny_model), "--stats-interval", "0")
    ro, full = tmp_path / "ro", tmp_path / "full"
    ro.mkdir()
    full.mkdir()
    for flag, name in (("--out", "o.mp4"), ("--json", "o.jsonl")):
        r = run_with_tmpfs({str(ro): "ro,size=64k"}, *base, flag, str(ro / name))
        assert_one_clear_error(r, str(ro / name), "Read-only file system")
        assert not shm_segments(r.pid)
    # Full disk: the output that cannot be completed is removed; the other is finalised.
    js = tmp_path / "o.jsonl"
    r = run_with_tmpfs({str(full): "size=32k"}, *base, "--out", str(full / "o.mp4"), "--json", str(js))
    assert_one_clear_error(r, str(full / "o.mp4"), "No space left on device")
    assert r.left[str(full)] == [] and not shm_segments(r.pid)
    lines = [json.loads(line) for line in js.read_text().splitlines()]
    assert lines and [d["frame"] for d in lines] == list(range(len(lines)))
    r = run_with_tmpfs({str(full): "size=8k"}, *base, "--json", str(full / "o.jsonl"))
    assert_one_clear_error(r, str(full / "o.jsonl"), "No space left on device")
    assert r.left[str(full)] == []
    bad = tmp_path / "bad.yaml"
    bad.write_text("output:\n  preset: superduper\n")
    r = run_cli(*base, "--config", str(bad), "--out", str(tmp_path / "p.mp4"))
    assert_one_clear_error(r, "output.preset 'superduper'")
    assert not (tmp_path / "p.mp4").exists()


# Every single-source config; a several-camera one (configs/cameras-4.yaml: RTSP cameras with
# max_fps, secrets from the environment, a broker) is for cameras, not files (see test_multi.py).
@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")
                                          if "sources" not in (yaml.safe_load(p.read_text()) or {})))
def test_every_shipped_config_keeps_every_frame_of_a_file(tiny_model: Path, tmp_path: Path,
                                                          config: str) -> None:
    clip = make_video(tmp_path / "clip.mp4", frames=200)
    js = tmp_path / "o.jsonl"
    r = run_cli(str(clip), "--config", str(CONFIGS / config), "--model", str(tiny_model), "--json", str(js))
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["frame"] for line in js.read_text().splitlines()] == list(range(200))
    assert "dropped 0," in r.stdout, r.stdout
    # Whatever the machine's speed: the file is planned offline (a blocking, never-dropping ring).
    assert not Pipeline(str(clip), str(tiny_model), str(CONFIGS / config)).plan().source.live
    assert Pipeline(str(clip), str(tiny_model), load_config(CONFIGS / config, {"source.live": True})
                    ).plan().source.live  # --live still forces it


def test_small_dev_shm_fits_the_rings_or_says_what_is_needed(tiny_model: Path, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "hd.mp4", frames=12, width=1920, height=1080)
    js = tmp_path / "o.jsonl"
    full = tmp_path / "full-frames.yaml"  # JSON only would decode straight to the model's size
    full.write_text("source:\n  decode_to_model: false\n")
    base = (str(clip), "--model", str(tiny_model), "--stats-interval", "0", "--json", str(js),
            "--config", str(full))
    # Docker's default 64 MB: 16 slots of 1080p (100 MB) do not fit, fewer do; no frame is lost.
    r = run_with_tmpfs({"/dev/shm": "size=64m"}, *base)
    assert r.returncode == 0, r.stderr
    assert "frame slots of 1920x1080 instead of 16" in r.stderr
    assert [json.loads(line)["frame"] for line in js.read_text().splitlines()] == list(range(12))
    assert not [n for n in r.left["/dev/shm"] if n.startswith("gapstream_")]
    # --batch 100 needs 101 slots (600 MB): a clear error, not a SIGBUS (exit -7).
    r = run_with_tmpfs({"/dev/shm": "size=64m"}, *base, "--batch", "100")
    assert_one_clear_error(r, "not enough shared memory", "MB", "--shm-size", "--batch")
    # A /dev/shm too small for even one batch.
    r = run_with_tmpfs({"/dev/shm": "size=8m"}, *base, "--batch", "1")
    assert_one_clear_error(r, "not enough shared memory", "/dev/shm has 8 MB free")
    assert not [n for n in r.left["/dev/shm"] if n.startswith("gapstream_")]
    # JSON only (decode_to_model by default): the ring holds model-size frames; 64 MB is plenty.
    r = run_with_tmpfs({"/dev/shm": "size=64m"}, *base[:-2])
    assert r.returncode == 0, r.stderr
    assert "decoding straight to the model's input size" in r.stderr and "instead of 16" not in r.stderr


def test_a_ring_larger_than_dev_shm_is_an_error_when_made_never_a_sigbus() -> None:
    why = private_mounts_unavailable()
    if why:
        pytest.skip(why)
    code = ("import errno, numpy as np\nfrom gapstream.ring import Ring\n"
            "try:\n    r = Ring({'f': ((32 << 20,), np.uint8)}, 1)\nexcept OSError as e:\n"
            "    raise SystemExit(0 if e.errno == errno.ENOSPC else 3)\n"
            "r.view(0)['f'][:] = 1\nr.close()\nraise SystemExit(4)\n")
    r = subprocess.run(["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=8m tmpfs /dev/shm && '
                        '"$0" -c "$1"; rc=$?; ls -A /dev/shm; exit $rc', sys.executable, code],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.returncode, r.stderr)  # -7 would be SIGBUS
    assert "gapstream_" not in r.stdout  # the segment was removed again


def test_watchdog_ends_an_offline_run_whose_inference_stage_hangs(tiny_model: Path) -> None:
    cfg = load_config(None, {"watchdog_timeout": 2.0, "output.stats_interval": 0})
    pipe = Pipeline("synthetic://?width=160&height=120&frames=100000", str(tiny_model), cfg)
    stopped = []
    with pytest.raises(PipelineError, match=r"infer stage made no progress for \d+ s"):
        for r in pipe.run():
            if r.index == 5:
                [infer] = [p for p in gapstream_children() if p.name == "gapstream-infer"]
                os.kill(infer.pid, signal.SIGSTOP)  # hung for real: it never runs again
                stopped.append(infer.pid)
    assert stopped
    with pytest.raises(ProcessLookupError):
        os.kill(stopped[0], 0)  # the hung stage was killed, not left stopped


def test_segments_of_a_killed_run_are_removed_at_the_next_start(tiny_model: Path, tmp_path: Path,
                                                                 video: Path) -> None:
    js = tmp_path / "o.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "gapstream", "run", "synthetic://?width=160&height=120",
                             "--model", str(tiny_model), "--json", str(js)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (js.exists() and js.stat().st_size):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # docker kill, the OOM killer: no handler runs
    proc.wait()
    stale = shm_segments(proc.pid)
    assert stale, "the kill should have left the rings behind"
    assert len(list(Pipeline(str(video), str(tiny_model)).run())) == 30
    assert not shm_segments(proc.pid) & stale


def test_json_to_stdout_with_a_progress_bar_on_a_terminal(tiny_model: Path, video: Path) -> None:
    master, slave = pty.openpty()  # stderr is a terminal: the bar is drawn there
    proc = subprocess.Popen([sys.executable, "-m", "gapstream", "run", str(video), "--model", str(tiny_model),
                             "--json", "-", "--stats-interval", "0"],
                            stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    tty = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        tty += chunk
    out, _ = proc.communicate(timeout=60)
    os.close(master)
    assert proc.returncode == 0, tty
    assert [json.loads(line)["frame"] for line in out.splitlines()] == list(range(30))  # nothing else
    assert b"30/30" in tty and b"frame" in tty and b"gapstream: 30 frames" in tty
    assert not (Path.cwd() / "-").exists()
    # Not a terminal: no bar.
    r = run_cli(str(video), "--model", str(tiny_model), "--json", "-")
    assert r.returncode == 0 and "30/30" not in r.stderr and "it/s" not in r.stderr


def test_source_line_shows_the_real_size(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (h, w) in enumerate(((480, 640), (480, 640), (600, 800))):
        cv2.imwrite(str(folder / f"{i}.png"), np.zeros((h, w, 3), np.uint8))
    r = run_cli(str(folder), "--model", str(tiny_model))
    assert r.returncode == 0, r.stderr
    assert "(images, 3 images, 640x480, largest 800x600)" in r.stderr, r.stderr


def test_small_points_unquoted_glob_bad_synthetic_corrupt_first_image(tiny_model: Path,
                                                                     tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "0.png").write_bytes(b"not an image")  # corrupt first image: skipped like any other
    for i in (1, 2):
        cv2.imwrite(str(folder / f"{i}.png"), np.zeros((48, 64, 3), np.uint8))
    js = tmp_path / "o.jsonl"
    r = run_cli(str(folder), "--model", str(tiny_model), "--json", str(js))
    assert r.returncode == 0, r.stderr
    assert "skipping unreadable image" in r.stderr and len(js.read_text().splitlines()) == 2
    # What the shell makes of an unquoted frames/*.png: one argument per file.
    r = run_cli(*sorted(str(p) for p in folder.glob("*.png")), "--model", str(tiny_model))
    assert r.returncode == 2 and "must be quoted" in r.stderr and "Traceback" not in r.stderr
    for bad in ("width=0", "height=-3", "fps=0"):
        assert_one_clear_error(run_cli(f"synthetic://?{bad}", "--model", str(tiny_model)), bad.split("=")[0])


def test_mixed_frame_sizes_give_results_in_own_coordinates_and_a_letterboxed_video(
        tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "0.png"), rng.integers(0, 120, (480, 640, 3), np.uint8))
    big = rng.integers(0, 120, (1440, 2560, 3), np.uint8)
    big[400:1000, 2200:2500] = 255  # only in the part a 1920-wide crop would cut off
    cv2.imwrite(str(folder / "1.png"), big)
    cfg = load_config(None, {"post.score_threshold": 0.0, "post.blend_alpha": 0.0,
                             "output.stats_interval": 0, "output.video": str(tmp_path / "o.mp4")})
    pipe = Pipeline(str(folder), str(tiny_model), cfg)
    got = [(r.frame.shape, r.detections.xyxy.copy()) for r in pipe.run()]
    assert [shape for shape, _ in got] == [(480, 640, 3), (1440, 2560, 3)]
    (_, small), (_, large) = got
    # The random test model may call neither frame a person; any box must be in its own frame.
    assert np.all(small[:, [0, 2]] <= 640) and np.all(small[:, [1, 3]] <= 480)
    assert np.all(large[:, [0, 2]] <= 2560) and np.all(large[:, [1, 3]] <= 1440)
    with av.open(str(tmp_path / "o.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 2 and frames[1].shape == (480, 640, 3)
    second = frames[1].astype(int)
    assert second[:50].mean() < 8 and second[-50:].mean() < 8  # letterbox bars (2560x1440 -> 640x360)
    assert second[200:240, 560:620].mean() > 150  # the right-hand patch is there: scaled, not cropped


def test_a_frame_scaled_down_to_fit_its_slot_gets_boxes_in_its_own_coordinates(tiny_model: Path) -> None:
    # A stream frame larger than source.max_width x max_height is stored scaled down; post
    # works on the stored frame and must scale its boxes back.
    from gapstream.post import to_frame_coordinates
    from gapstream.results import FrameRecord

    rec = FrameRecord(index=0, pts=0.0, h=1080, w=1920, t_cap=0.0, src_h=2160, src_w=3840)
    det = to_frame_coordinates(Detections(np.array([[960, 540, 1920, 1080]], np.float32),
                                          np.array([0.9], np.float32)), rec)
    np.testing.assert_allclose(det.xyxy, [[1920, 1080, 3840, 2160]])
    same = FrameRecord(index=0, pts=0.0, h=480, w=640, t_cap=0.0)
    assert to_frame_coordinates(det, same) is det


def test_the_wheel_ships_the_models_and_an_install_finds_them(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    root = Path(__file__).resolve().parent.parent
    # Built from a copy, so that the checkout gets no build/ or egg-info of the test's making.
    src = tmp_path / "src"
    shutil.copytree(root, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "out", "data", "runs", "build", "*.egg-info", "__pycache__", "benchmarks"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                        "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    [wheel] = (tmp_path / "dist").glob("gapstream-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    for model in ("gapstream_person_int8", "gapstream_person_float32"):
        assert {f"gapstream/models/{model}.tflite", f"gapstream/models/{model}.json"} <= names
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)  # what an install puts on sys.path
    code = ("from gapstream.paths import DEFAULT_MODEL, shipped_model\n"
            "assert DEFAULT_MODEL.is_file() and shipped_model('float32').is_file(), DEFAULT_MODEL\n"
            "print(DEFAULT_MODEL)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(target)}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(str(target))


def test_a_portrait_phone_clip_is_processed_upright(tiny_model: Path, tmp_path: Path) -> None:
    clip = tmp_path / "phone.mp4"
    with av.open(str(clip), "w") as c:  # stored landscape 160x96 with a display matrix of -90
        st = add_video_stream(c, 160, 96, 10)
        st.set_display_rotation(-90)
        for _ in range(5):
            img = np.zeros((96, 160, 3), np.uint8)
            img[:, :40] = 255  # the stored left edge is the top when shown upright
            encode(c, st, img)
        encode(c, st)
    cfg = load_config(None, {"output.stats_interval": 0, "output.video": str(tmp_path / "o.mp4"),
                             "output.annotate": False})
    pipe = Pipeline(str(clip), str(tiny_model), cfg)
    frames = [r.frame.copy() for r in pipe.run()]
    assert pipe.source is not None and (pipe.source.width, pipe.source.height) == (96, 160)
    assert len(frames) == 5 and all(f.shape == (160, 96, 3) for f in frames)
    assert frames[0][:30].mean() > 200 and frames[0][-60:].mean() < 30  # as ffmpeg/players show it
    with av.open(str(tmp_path / "o.mp4")) as c:
        out = next(c.decode(video=0))
    assert (out.width, out.height) == (96, 160)


def test_watchdog_restarts_the_stages_of_a_live_run(tiny_model: Path) -> None:
    cfg = load_config(None, {"watchdog_timeout": 2.0, "output.stats_interval": 0})
    pipe = Pipeline("synthetic://?width=160&height=120&live=1&fps=20", str(tiny_model), cfg)
    indices: list[int] = []
    hung: list[int] = []
    for r in pipe.run():
        indices.append(r.index)
        if r.index == 5 and not hung:
            [infer] = [p for p in gapstream_children() if p.name == "gapstream-infer"]
            os.kill(infer.pid, signal.SIGSTOP)
            hung.append(infer.pid)
        if hung and len(indices) >= 20:
            pipe.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(hung[0], 0)  # the hung stage was killed and replaced
    assert indices == sorted(set(indices)) and len(indices) >= 20  # the run went on, in order
    assert pipe.stats is not None and pipe.stats.restarts == 1
    assert "stage restarts 1" in pipe.stats.summary()


def test_frames_lost_with_the_old_rings_at_a_restart_count_as_dropped(tiny_model: Path) -> None:
    """The frames a hung stage held when it was replaced were captured but never delivered: once the
    run drains, every captured frame is either a result or counted as dropped."""
    cfg = load_config(None, {"watchdog_timeout": 2.0, "output.stats_interval": 0})
    pipe = Pipeline("synthetic://?width=160&height=120&live=1&fps=20&frames=80", str(tiny_model), cfg)
    hung: list[int] = []
    for r in pipe.run():
        if r.index == 5 and not hung:
            [infer] = [p for p in gapstream_children() if p.name == "gapstream-infer"]
            os.kill(infer.pid, signal.SIGSTOP)
            hung.append(infer.pid)
    stats = pipe.stats
    assert hung and stats is not None and stats.restarts == 1
    assert stats.dropped > 0  # at least the frames queued before the hung stage
    assert stats.frames + stats.dropped == stats.captured, stats


def test_an_in_process_run_leaves_the_callers_signal_handlers_alone(tiny_model: Path, video: Path,
                                                                     tmp_path: Path) -> None:
    """cli.main is also called in-process (tests, embedding): a finished run must give the caller
    its own handlers back, never leave SIGINT ignored (children would inherit that)."""
    from gapstream import cli

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        out = str(tmp_path / "o.jsonl")
        assert cli.main(["run", str(video), "--model", str(tiny_model), "--json", out]) == 0
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, old)
