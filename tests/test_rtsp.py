"""RTSP for real: a GStreamer RTSP server on 127.0.0.1 is killed (or stalled) mid-stream and restarted;
live drops are counted; an unreachable URL fails with one clear error.

The server (tests/rtsp_server.py) runs under Debian's system python, which has python3-gi and
GstRtspServer (installed by .ci/install-test-deps.sh); the tests skip with a reason without them.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gapstream import Pipeline
from gapstream.config import PipelineConfig, load_config
from gapstream.errors import PipelineError
from gapstream.meta import load_meta
from gapstream.results import Result

from .helpers import brightness_model, shm_segments

pytestmark = pytest.mark.rtsp

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
GI_CHECK = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
            "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
            "assert all(Gst.ElementFactory.find(e) for e in "
            "('videotestsrc', 'videoconvert', 'x264enc', 'rtph264pay'))")


def _gst_rtsp_missing() -> str | None:
    """Why the RTSP server cannot run here, or None when it can."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found"
    try:
        r = subprocess.run([SYSTEM_PYTHON, "-c", GI_CHECK], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "checking for GStreamer timed out"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return (f"{SYSTEM_PYTHON} cannot run the GStreamer RTSP server ({last}); "
                "run .ci/install-test-deps.sh")
    return None


_MISSING: list[str | None] = []


@pytest.fixture(scope="session")
def gst_rtsp() -> None:
    if not _MISSING:
        _MISSING.append(_gst_rtsp_missing())
    if _MISSING[0]:
        pytest.skip(_MISSING[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    """The first stdout line of ``proc``, or "" if none comes within ``timeout`` s."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=max(timeout, 0.1))
    except queue.Empty:
        return ""


class RtspServer:
    """tests/rtsp_server.py as a child process that can be killed and restarted on one port."""

    def __init__(self, port: int, path: str = "/cam", width: int = 320, height: int = 240,
                 fps: int = 15) -> None:
        self.port, self.path = port, path
        self.args = ["--port", str(port), "--path", path, "--width", str(width), "--height", str(height),
                     "--fps", str(fps)]
        self.proc: subprocess.Popen | None = None
        self.url = f"rtsp://127.0.0.1:{port}{path}"

    def start(self, timeout: float = 20.0) -> None:
        """Start the server and wait for its READY line (retrying while the port is still busy)."""
        deadline = time.monotonic() + timeout
        last_err = ""
        while time.monotonic() < deadline:
            # stderr goes to a file: nobody reads it while the server runs, and a full pipe would block it.
            with tempfile.TemporaryFile("w+") as errfile:
                proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER_SCRIPT), *self.args],
                                        stdout=subprocess.PIPE, stderr=errfile, text=True)
                if _read_line(proc, deadline - time.monotonic()).startswith("READY"):
                    self.proc = proc
                    return
                proc.kill()
                proc.communicate(timeout=10)
                errfile.seek(0)
                last_err = errfile.read()
            time.sleep(0.2)
        raise RuntimeError(f"RTSP server did not start on port {self.port}: {last_err.strip()}")

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-stream, as a crashed camera would."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.communicate(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate(timeout=10)
        self.proc = None


@pytest.fixture
def rtsp_server(gst_rtsp: None) -> Iterator[RtspServer]:
    server = RtspServer(free_port())
    server.start()
    try:
        yield server
    finally:
        last = server.proc
        server.stop()
        assert last is None or last.returncode is not None, "the RTSP server outlived its test"


def stream_config(**overrides: object) -> PipelineConfig:
    """Short timeouts and backoff keep the tests quick; small slots keep them light."""
    base = {
        "source.open_timeout": 2.0, "source.backoff_initial": 0.2, "source.backoff_max": 1.0,
        "source.connect_attempts": 5, "source.reconnect_attempts": 10,
        "source.max_width": 320, "source.max_height": 240,
        "infer.batch_size": 2, "model.num_threads": 1, "output.stats_interval": 0,
    }
    base.update(overrides)
    return load_config(None, base)


def capture_time(result: Result) -> float:
    """When a result's frame was captured, on this process's monotonic clock."""
    return time.monotonic() - result.latency_ms / 1000


@pytest.mark.parametrize("failure", ["killed", "stalled"])
def test_reconnects_when_server_dies_or_stalls_mid_stream(rtsp_server: RtspServer, tiny_model: Path,
                                                          failure: str) -> None:
    """killed: SIGKILL, restart on the same port 1.5 s later (the connection drops at once).
    stalled: SIGSTOP, SIGCONT 6 s later (the connection stays open and goes silent, so only
    ``open_timeout`` can notice; noticing and closing the dead connection take up to 2 x 2 s)."""
    pipe = Pipeline(rtsp_server.url, str(tiny_model), stream_config())
    back: list[float] = []  # monotonic time from which the server was serving again
    back_failed: list[BaseException] = []

    def bring_back() -> None:
        time.sleep(1.5 if failure == "killed" else 6.0)
        try:
            if failure == "killed":
                rtsp_server.start()
            else:
                rtsp_server.proc.send_signal(signal.SIGCONT)
        except BaseException as exc:  # reported by the main thread
            back_failed.append(exc)
        else:
            back.append(time.monotonic())

    failed_at = None
    restorer = threading.Thread(target=bring_back, daemon=True)
    indices: list[int] = []
    before_failure = after_back = 0
    deadline = time.monotonic() + 45
    try:
        for r in pipe.run():
            indices.append(r.index)
            assert r.frame.shape == (240, 320, 3)
            if failed_at is None:
                before_failure += 1
                if before_failure == 10:
                    if failure == "killed":
                        rtsp_server.kill()
                    else:
                        rtsp_server.proc.send_signal(signal.SIGSTOP)
                    failed_at = time.monotonic()
                    restorer.start()
            elif back and capture_time(r) > back[0]:
                after_back += 1
                if after_back == 10:
                    pipe.stop()  # the generator ends once the frames in flight are out
            assert time.monotonic() < deadline, "the pipeline did not recover in time"
    except PipelineError as exc:  # reconnect_attempts ran out
        raise AssertionError(f"pipeline gave up: {exc}; server error: {back_failed}") from exc
    restorer.join(timeout=30)
    assert not back_failed, back_failed

    assert pipe.stats is not None
    assert before_failure == 10 and after_back >= 10, (before_failure, after_back, pipe.stats)
    assert pipe.stats.reconnects >= 1, pipe.stats
    assert indices == sorted(set(indices)), "results out of order or repeated"


def test_live_stream_drops_oldest_and_keeps_latency_bounded(rtsp_server: RtspServer,
                                                            tiny_model: Path) -> None:
    # The server sends 15 fps; a sink that needs 100 ms per frame keeps up with only 10.
    pipe = Pipeline(rtsp_server.url, str(tiny_model), stream_config())
    latencies: list[float] = []
    indices: list[int] = []
    for r in pipe.run():
        latencies.append(r.latency_ms)
        indices.append(r.index)
        time.sleep(0.1)
        if len(latencies) == 40:
            pipe.stop()
    stats = pipe.stats
    assert stats is not None
    assert stats.dropped > 0, stats
    assert indices == sorted(set(indices))
    # Frame indices count every frame read; each one missing before the last delivered frame was
    # dropped by capture and must have been counted (later drops are counted too, hence <=).
    missing = indices[-1] + 1 - len(indices)
    assert 0 < missing <= stats.dropped, (missing, stats, indices)
    steady = latencies[5:]
    assert max(steady) < 2000, f"latency not bounded: {max(steady):.0f} ms"


class SilentServer:
    """Accepts TCP connections and never answers: an RTSP URL that hangs rather than refuses."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_cli_unreachable_url_fails_with_one_clear_error(tiny_model: Path, tmp_path: Path,
                                                        kind: str) -> None:
    silent = SilentServer() if kind == "silent" else None
    port = silent.port if silent else free_port()
    url = f"rtsp://127.0.0.1:{port}/x"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("source:\n  connect_attempts: 2\n  backoff_initial: 0.2\n  open_timeout: 2\n")
    t0 = time.monotonic()
    out, js = tmp_path / "o.mp4", tmp_path / "o.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "gapstream", "run", url, "--model", str(tiny_model),
                             "--config", str(cfg), "--out", str(out), "--json", str(js)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"gapstream run {url} was still running after 60 s")
    finally:
        if silent:
            silent.close()
    elapsed = time.monotonic() - t0
    assert proc.returncode not in (0, None), err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("gapstream: error:")]
    assert len(errors) == 1, err
    assert url in errors[0], errors[0]
    reason = {"refused": "Connection refused", "silent": "no answer within 2 s"}[kind]
    assert reason in errors[0], errors[0]
    assert elapsed < 45, f"took {elapsed:.0f} s to give up"
    assert not out.exists() and not js.exists(), "a failed connect must leave no empty output"
    assert not shm_segments(proc.pid), "leaked shared memory"
    # Stage processes are forks of the CLI and share its command line, URL included.
    left = subprocess.run(["pgrep", "-f", url], capture_output=True, text=True).stdout
    assert not left.strip(), f"processes left behind: {left}"


SECRET = "s3cret-Pw"


def _run_cli_to_files(args: list[str], tmp_path: Path, env: dict[str, str] | None = None,
                      until: Any = None, timeout: float = 60) -> tuple[int, str, str]:
    """``gapstream run ARGS`` with stdout and stderr (its log) in files; ``until(proc)`` runs while
    it does. Returns the exit code and both files' text."""
    out_path, log_path = tmp_path / "stdout.txt", tmp_path / "gapstream.log"
    with out_path.open("w") as out, log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gapstream", "run", *args], stdout=out, stderr=log,
                                env={**os.environ, **(env or {})})
        try:
            if until is not None:
                until(proc)
            proc.wait(timeout=timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode, out_path.read_text(), log_path.read_text()


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text, text
        assert "p@ss" not in text and "p%40ss" not in text, text


@pytest.mark.parametrize("password", [SECRET, f"p%40ss{SECRET}"])
def test_cli_unreachable_url_never_shows_the_password(tiny_model: Path, tmp_path: Path,
                                                      password: str) -> None:
    port = free_port()
    url = f"rtsp://admin:{password}@127.0.0.1:{port}/cam"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("source:\n  connect_attempts: 3\n  backoff_initial: 0.2\n  open_timeout: 2\n")
    jsonl = tmp_path / "x.jsonl"
    code, out, err = _run_cli_to_files([url, "--json", str(jsonl), "--model", str(tiny_model),
                                        "--config", str(cfg), "--log-level", "DEBUG"], tmp_path)
    assert code == 1, err
    shown = f"rtsp://admin:***@127.0.0.1:{port}/cam"
    assert f"WARNING gapstream-capture: {shown}: Connection refused; retrying" in err, err
    assert f"source {shown} (stream" in err, err
    assert f"gapstream: error: cannot connect to {shown} after 3 attempts (Connection refused)" in err, err
    _assert_no_secret(out, err, jsonl.read_text() if jsonl.exists() else "")


def test_cli_stream_with_password_from_env_never_shows_it(rtsp_server: RtspServer, tiny_model: Path,
                                                          tmp_path: Path) -> None:
    """The camera URL lives in the config with ${VAR}; frames flow, stats lines are logged, then the
    server dies for good: the log, the error, stdout and the JSON output hold no password."""
    url = f"rtsp://admin:${{GAPSTREAM_TEST_CAM_PASSWORD}}@127.0.0.1:{rtsp_server.port}{rtsp_server.path}"
    cfg = tmp_path / "cam.yaml"
    cfg.write_text(f"source:\n  uri: {url}\n  open_timeout: 2\n  backoff_initial: 0.2\n"
                   "  reconnect_attempts: 2\n  max_width: 320\n  max_height: 240\n"
                   "infer:\n  batch_size: 2\nmodel:\n  num_threads: 1\noutput:\n  stats_interval: 0.5\n")
    jsonl = tmp_path / "x.jsonl"

    def kill_server_after_frames(proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + 45
        while not (jsonl.exists() and jsonl.read_text().count("\n") >= 20):
            assert proc.poll() is None, "gapstream ended before any frames came through"
            assert time.monotonic() < deadline, "no frames from the RTSP server"
            time.sleep(0.2)
        time.sleep(1.0)  # a stats line or two
        rtsp_server.kill()

    code, out, err = _run_cli_to_files(
        ["--config", str(cfg), "--json", str(jsonl), "--model", str(tiny_model), "--log-level", "DEBUG"],
        tmp_path, env={"GAPSTREAM_TEST_CAM_PASSWORD": SECRET}, until=kill_server_after_frames)
    shown = f"rtsp://admin:***@127.0.0.1:{rtsp_server.port}{rtsp_server.path}"
    assert code == 1, err
    assert f"source {shown} (stream" in err, err
    assert "| infer " in err and "reconnects" in err, err  # stats lines were logged too
    assert f"gapstream: error: {shown}: stream lost and 2 reconnect attempts failed" in err, err
    assert jsonl.read_text().count("\n") >= 20
    _assert_no_secret(out, err, jsonl.read_text())


def test_a_stalled_stream_is_noticed_while_it_is_still_stalled(rtsp_server: RtspServer, tiny_model: Path,
                                                              tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("source:\n  open_timeout: 2\n  backoff_max: 1\n")
    log_path = tmp_path / "gapstream.log"

    def wait_for(text: str, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in log_path.read_text():
                return True
            time.sleep(0.2)
        return False

    with log_path.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "gapstream", "run", rtsp_server.url, "--model",
                                 str(tiny_model), "--config", str(cfg), "--stats-interval", "0"],
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        assert wait_for("320x240 @ 15.00 fps"), log_path.read_text()  # the real size and rate
        rtsp_server.proc.send_signal(signal.SIGSTOP)  # the connection stays open and goes silent
        try:
            noticed = wait_for("the stream stalled")
        finally:
            rtsp_server.proc.send_signal(signal.SIGCONT)
        assert noticed, log_path.read_text()
        assert wait_for("reconnected to"), log_path.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 130
    assert not shm_segments(proc.pid)


def test_a_stream_runs_at_its_own_aspect_not_the_configured_guess(rtsp_server: RtspServer,
                                                                   tmp_path: Path) -> None:
    """A 4:3 camera (320x240) while ``max_width`` x ``max_height`` says 16:9: a keep-aspect model
    sizes the network input from the frames that arrive, not from the guess made before connecting."""
    model = brightness_model(tmp_path / "model")  # keep_aspect, 16-px cells
    meta = load_meta(model)
    guess = meta.maps_shape(meta.input_size_for(360, 640))[:2]
    own = meta.maps_shape(meta.input_size_for(240, 320))[:2]
    assert guess != own
    pipe = Pipeline(rtsp_server.url, str(model), stream_config(**{"source.max_width": 640,
                                                                 "source.max_height": 360}))
    shapes = []
    for r in pipe.run():
        assert r.frame.shape == (240, 320, 3)
        shapes.append(r.cam.shape)
        if len(shapes) == 10:
            pipe.stop()
    assert set(shapes) == {own}, (shapes, guess)
