"""gapstream batch: a folder with a corrupt and a truncated clip, resume, killed workers, Ray = local."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gapstream.batch import job
from gapstream.batch.driver import BatchOptions, run_batch
from gapstream.batch.events import PresenceIntervals, person_seconds
from gapstream.batch.inputs import discover
from gapstream.batch.job import FileOutcome, FileTask, process_file
from gapstream.batch.pool import LocalPool
from gapstream.config import EventsConfig, PipelineConfig, load_config
from gapstream.errors import SourceError
from gapstream.shm import stale_segments

from .helpers import make_video

GOOD = {"a": 30, "b": 45, "sub/c": 20}  # key -> frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three good clips (one in a subfolder), a corrupt one and a truncated one."""
    d = tmp_path_factory.mktemp("clips")
    make_video(d / "a.mp4", frames=GOOD["a"])
    make_video(d / "b.mkv", frames=GOOD["b"], width=192, height=108)
    (d / "sub").mkdir()
    make_video(d / "sub" / "c.mp4", frames=GOOD["sub/c"])
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(4000))
    cut = make_video(d / "cut.mkv", frames=90)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    return d


def dead_owner_segments() -> set[str]:
    """Ring segments whose creating process is gone: a leak."""
    return set(stale_segments())


def batch_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gapstream", "batch", *args], capture_output=True,
                          text=True, timeout=timeout)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("gapstream: error:")]


def outputs(out: Path) -> dict[str, str]:
    """Every output file below ``out`` (not the manifest or lock) -> its text."""
    return {p.relative_to(out).as_posix(): p.read_text() for p in sorted(out.rglob("*.jsonl"))}


def no_parts(out: Path) -> bool:
    return not list(out.rglob(".*.part*"))


# -- pieces ---------------------------------------------------------------------------------------

def test_presence_intervals_follow_the_event_hysteresis() -> None:
    """Per-file events use the live events' rule: min_frames to start, a dip shorter than
    hold_time does not split an interval, and it ends at the first frame of the final dip."""
    cfg = EventsConfig(on_threshold=0.6, off_threshold=0.4, min_frames=2, hold_time=1.0)
    ev = PresenceIntervals(cfg)
    probs = [0.1, 0.8, 0.9, 0.2, 0.7, 0.1, 0.1, 0.1, 0.9, 0.95]
    for i, p in enumerate(probs):
        ev.update(i, i * 0.5, p)
    events = ev.finish()
    assert [(e.start, e.end, e.start_frame, e.end_frame, e.peak_frame) for e in events] == [
        (0.5, 2.5, 1, 5, 2), (4.0, 5.0, 8, 10, 9)]
    assert events[1].peak_prob == 0.95 and person_seconds(events) == 3.0
    single = PresenceIntervals(cfg)
    for i, p in enumerate([0.9, 0.1, 0.9]):  # never min_frames in a row: no event
        single.update(i, i * 0.5, p)
    assert single.finish() == []


def test_discover_inputs(clips: Path, tmp_path: Path) -> None:
    out = clips / "out"  # an output folder inside an input folder is never read
    (out / "x").mkdir(parents=True)
    make_video(out / "x" / "annotated.mp4", frames=5)
    files = discover([str(clips), str(clips / "a.mp4"), str(clips / "*.mkv")], out)
    assert sorted(f.key for f in files) == ["a", "b", "corrupt", "cut", "sub/c"]
    other = tmp_path / "a.avi"
    make_video(other, frames=5)
    keys = sorted(f.key for f in discover([str(clips / "a.mp4"), str(other)], tmp_path / "o"))
    assert keys[0].startswith("a-") and keys[1].startswith("a-") and keys[0] != keys[1]
    with pytest.raises(SourceError, match="nope: no such file"):
        discover([str(tmp_path / "nope")], out)
    with pytest.raises(SourceError, match="no video files"):
        discover([str(tmp_path / "*.mov")], out)
    import shutil

    shutil.rmtree(out)


# -- the CLI on a folder with bad files ---------------------------------------------------------

def test_cli_folder_with_corrupt_and_truncated_files(clips: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    before = dead_owner_segments()
    r = batch_cli(str(clips), "--out", str(out), "--model", str(tiny_model), "--video", "--workers", "2")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert error_lines(r.stderr) == [error_lines(r.stderr)[0]] and "2 of 5 files failed" in r.stderr
    assert "local pool: 2 worker(s)" in r.stderr and "frames/s" in r.stderr and "files" in r.stderr
    assert "corrupt: [bad input]" in r.stdout and "not a readable video" in r.stdout
    assert "cut: [read error]" in r.stdout and "truncated" in r.stdout
    for key, n in GOOD.items():
        rows = [json.loads(line) for line in (out / key / "frames.jsonl").read_text().splitlines()]
        assert [row["frame"] for row in rows] == list(range(n)) and "latency_ms" not in rows[0]
        assert (out / key / "events.jsonl").exists() and (out / key / "annotated.mp4").stat().st_size > 0
    assert not (out / "corrupt").exists() and not (out / "cut").exists()  # no partial outputs
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    assert {k: v["status"] for k, v in manifest.items()} == {
        "a": "done", "b": "done", "sub/c": "done", "corrupt": "failed", "cut": "failed"}
    assert manifest["cut"]["reason"] == "read error" and manifest["cut"]["frames"] > 0
    assert no_parts(out) and dead_owner_segments() <= before

    # Re-run: nothing is redone; the failures are only retried when asked.
    first = outputs(out)
    r = batch_cli(str(clips), "--out", str(out), "--model", str(tiny_model), "--video", "--no-progress")
    assert r.returncode == 1 and "0 to do, 3 done earlier, 2 failed earlier" in r.stderr
    r = batch_cli(str(clips), "--out", str(out), "--model", str(tiny_model), "--video", "--no-progress",
                  "--retry-failed")
    assert "2 to do" in r.stderr and "2 of 5 files failed" in r.stderr and outputs(out) == first
    # Other settings into the same folder would mix results: refused before any work.
    r = batch_cli(str(clips), "--out", str(out), "--model", str(tiny_model), "--threshold", "0.3")
    assert r.returncode == 1 and len(error_lines(r.stderr)) == 1 and "other settings" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_resume_after_interrupted_run(tiny_model: Path, tmp_path: Path, sig: int) -> None:
    """A signal only sets the stop flag: the files in flight are abandoned, the manifest keeps
    the finished ones, the run exits 130, and a re-run does the rest."""
    src = tmp_path / "clips"
    src.mkdir()
    for i in range(6):
        make_video(src / f"c{i}.mp4", frames=60, width=320, height=240)
    out = tmp_path / "out"
    before = dead_owner_segments()
    cmd = [sys.executable, "-m", "gapstream", "batch", str(src), "--out", str(out), "--model",
           str(tiny_model), "--workers", "1", "--no-progress"]
    # The child starts with Ctrl-C's default action whatever this process inherited (an ignored
    # SIGINT is inherited across exec, and Python then never installs its KeyboardInterrupt).
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) as proc:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (out / "manifest.json").exists():
            time.sleep(0.05)
        proc.send_signal(sig)  # as Ctrl-C or a service manager would, mid-run
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    done = {k for k, v in json.loads((out / "manifest.json").read_text())["files"].items()
            if v["status"] == "done"}
    assert 1 <= len(done) < 6 and no_parts(out) and dead_owner_segments() <= before
    r = batch_cli(str(src), "--out", str(out), "--model", str(tiny_model), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"{6 - len(done)} to do, {len(done)} done earlier" in r.stderr
    for i in range(6):
        assert len((out / f"c{i}" / "frames.jsonl").read_text().splitlines()) == 60


# -- killed workers ------------------------------------------------------------------------------

def _die_once(task: FileTask, progress: object, stop: object) -> FileOutcome:
    """Killed on the first attempt (a marker remembers it); ``always`` is killed every time."""
    marker = Path(task.out_dir) / "tried"
    if task.key == "always" or not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return FileOutcome(task.key, "done", frames=1)


def _killed_mid_pipeline(task: FileTask, progress: object, stop: object) -> FileOutcome:
    """The real job, but the worker is killed at its first progress report of the first attempt,
    with the pipeline's stage processes and shared memory in use."""
    marker = Path(task.out_dir + ".tried")
    # report from the first frame: a fast machine finishes the whole clip inside one reporting interval
    job.PROGRESS_EVERY = 0.0

    def report(frames: int) -> None:
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)

    return process_file(task, report)


def test_pool_retries_a_killed_worker_up_to_the_limit(tmp_path: Path) -> None:
    tasks = [FileTask(k, "unused", str(tmp_path / k), PipelineConfig(), False) for k in ("once", "always")]
    with LocalPool(2, max_attempts=2, work=_die_once) as pool:
        results = {o.key: o for o in pool.run(tasks) if isinstance(o, FileOutcome)}
    assert results["once"].ok and results["once"].attempts == 2
    assert not results["always"].ok and results["always"].attempts == 2
    assert results["always"].reason == "worker killed (SIGKILL)"


def test_pool_worker_killed_mid_file_leaves_nothing(tiny_model: Path, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "long.mp4", frames=600, width=320, height=240)
    cfg = load_config(None, {"model.path": str(tiny_model), "infer.batch_size": 1})
    task = FileTask("long", str(clip), str(tmp_path / "out" / "long"), cfg, False)
    before = dead_owner_segments()
    with LocalPool(1, max_attempts=3, work=_killed_mid_pipeline) as pool:
        (outcome,) = [o for o in pool.run([task]) if isinstance(o, FileOutcome)]
    assert outcome.ok and outcome.attempts == 2 and outcome.frames == 600
    assert len((tmp_path / "out" / "long" / "frames.jsonl").read_text().splitlines()) == 600
    assert no_parts(tmp_path / "out") and dead_owner_segments() <= before


# -- Ray ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'gapstream[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def test_ray_and_local_pool_give_identical_results(ray_session: None, clips: Path, tiny_model: Path,
                                                   tmp_path: Path) -> None:
    cfg = load_config(None, {"model.path": str(tiny_model)})
    runs = {}
    for name, extra in (("local", {"workers": 2}), ("ray", {"ray": "auto", "cpus_per_file": 1})):
        out = tmp_path / name
        report = run_batch(BatchOptions([str(clips)], out, cfg, progress=False, **extra), say=lambda s: None)
        assert report.runner.startswith(name)
        manifest = json.loads((out / "manifest.json").read_text())["files"]
        runs[name] = (outputs(out), {k: (v["status"], v["frames"], v["reason"], v["error"],
                                         v["person_seconds"], v["events"]) for k, v in manifest.items()})
    assert runs["ray"] == runs["local"]
    assert sorted(k for k, v in runs["ray"][1].items() if v[0] == "done") == ["a", "b", "sub/c"]
