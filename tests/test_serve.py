"""Live view, /metrics and /healthz on a running pipeline, with a real HTTP client and Chromium."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from gapstream import Pipeline
from gapstream.config import load_config

from .broker import free_port

LIVE = "synthetic://?width=320&height=240&live=1&fps=15"


def get(url: str, headers: dict | None = None, context: Any = None, timeout: float = 10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def mjpeg_frames(url: str, n: int) -> list[np.ndarray]:
    """The first ``n`` JPEG parts of a multipart/x-mixed-replace stream, decoded."""
    out = []
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace; boundary=")
        while len(out) < n:
            line = r.readline()
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
                r.readline()  # the blank line after the part headers
                out.append(cv2.imdecode(np.frombuffer(r.read(length), np.uint8), cv2.IMREAD_COLOR))
    return out


def while_running(cfg: Any, model: Path, check: Callable[[], None], source: str = LIVE) -> int:
    """Run a live pipeline until ``check`` (in a thread) returns; re-raise its failure."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            check()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failure.append(exc)

    pipe, t, n = Pipeline(source, str(model), cfg), threading.Thread(target=target), 0
    for _ in pipe.run():
        n += 1
        if n == 1:
            t.start()
        if not t.is_alive():
            pipe.stop()
    t.join()
    if failure:
        raise failure[0]
    return n


def test_live_view_metrics_and_health(tiny_model: Path, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = load_config(None, {"source.name": "lobby", "http.port": port, "http.live_fps": 10,
                             "output.stats_interval": 0})
    seen: dict[str, Any] = {}

    def check() -> None:
        status, page = get(base + "/")
        assert status == 200 and b"lobby" in page and b'src="/cameras/lobby/stream.mjpg"' in page
        frames = mjpeg_frames(base + "/cameras/lobby/stream.mjpg", 3)
        assert all(f.shape == (240, 320, 3) for f in frames)
        assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1  # the frames move
        status, jpeg = get(base + "/cameras/lobby/latest.jpg")
        assert status == 200
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (240, 320, 3)
        assert get(base + "/cameras/nope/latest.jpg")[0] == 404
        status, body = get(base + "/api/cameras")
        (cam,) = json.loads(body)
        assert cam["name"] == "lobby" and cam["frames"] > 0 and not cam["stalled"] and cam["fps"] > 3
        assert get(base + "/healthz") == (200, b"ok\n")
        time.sleep(0.5)
        seen["metrics"] = get(base + "/metrics")[1].decode()
        seen["shot"] = screenshot(base + "/", tmp_path)

    n = while_running(cfg, tiny_model, check)
    metrics = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
               for line in seen["metrics"].splitlines() if line and not line.startswith("#")}
    assert 0 < metrics['gapstream_frames_captured_total{camera="lobby"}'] <= n + 10
    assert metrics['gapstream_frames_inferred_total{camera="lobby"}'] > 0
    assert metrics['gapstream_frames_dropped_total{camera="lobby"}'] >= 0
    assert metrics['gapstream_reconnects_total{camera="lobby"}'] == 0
    assert metrics['gapstream_latency_seconds_count{camera="lobby"}'] > 0
    assert metrics['gapstream_seconds_since_last_frame{camera="lobby"}'] < 2
    assert metrics['gapstream_fps{camera="lobby"}'] > 3
    check_screenshot(seen["shot"])


def screenshot(url: str, tmp_path: Path) -> np.ndarray | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return None
    png = tmp_path / "page.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={png}",
                        "--window-size=800,600", "--timeout=3000", url],
                       capture_output=True, timeout=120, check=True)
    return cv2.imread(str(png))


def check_screenshot(shot: np.ndarray | None) -> None:
    if shot is None:
        pytest.skip("chromium is not installed (.ci/install-test-deps.sh installs it)")
    assert shot.shape[:2] == (600, 800)
    # The page background is flat #222; the <img> (320x240 frames shown 640 wide, below the
    # heading) must hold a textured, coloured frame.
    page = shot[5:15, 600:760].reshape(-1, 3)  # right of the heading, left of any scrollbar
    assert page.std(axis=0).max() < 2
    img = shot[120:400, 40:600]
    assert img.std() > 20
    assert np.abs(img.reshape(-1, 3).mean(axis=0) - page.mean(axis=0)).max() > 20


def test_healthz_fails_while_a_camera_is_stalled(tiny_model: Path) -> None:
    port = free_port()
    # One frame every 2 s against a 0.5 s timeout: stalled between frames.
    cfg = load_config(None, {"http.port": port, "http.stall_timeout": 0.5, "output.stats_interval": 0,
                             "infer.batch_size": 1})
    seen = []

    def check() -> None:
        end = time.monotonic() + 10
        while time.monotonic() < end and {s for s, _ in seen} != {200, 503}:
            seen.append(get(f"http://127.0.0.1:{port}/healthz"))
            time.sleep(0.1)

    while_running(cfg, tiny_model, check, "synthetic://?width=64&height=48&live=1&fps=0.5")
    assert (503, b"stalled: camera\n") in seen and (200, b"ok\n") in seen


def test_token_auth_and_tls(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], capture_output=True, check=True)
    config = tmp_path / "serve.yaml"
    port = free_port()
    config.write_text(f"http: {{port: {port}, token: '${{LIVE_TOKEN}}', tls_cert: {cert}, tls_key: {key}}}\n"
                      "output: {stats_interval: 0}\n")
    monkeypatch.setenv("LIVE_TOKEN", "t0ken")
    cfg = load_config(config)
    ctx = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{port}"

    def check() -> None:
        assert get(base + "/healthz", context=ctx)[0] == 401
        assert get(base + "/healthz", {"Authorization": "Bearer wrong"}, ctx)[0] == 401
        assert get(base + "/healthz", {"Authorization": "Bearer t0ken"}, ctx) == (200, b"ok\n")
        status, page = get(base + "/?token=t0ken", context=ctx)
        assert status == 200 and b"stream.mjpg?token=t0ken" in page
        with pytest.raises(OSError):
            get(f"http://127.0.0.1:{port}/healthz", timeout=3)  # no plain HTTP beside HTTPS

    while_running(cfg, tiny_model, check)


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gapstream", "run", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=120, env=os.environ)


def test_refuses_literal_token_and_open_unauthenticated_server(tiny_model: Path, tmp_path: Path) -> None:
    for text, message in (
        ("http: {port: 0, token: s3cret}\n", "'http.token' holds a literal secret"),
        ("http: {port: 0, host: 0.0.0.0}\n", "needs http.token"),
    ):
        config = tmp_path / "c.yaml"
        config.write_text(text)
        r = _cli(config, LIVE.replace("live=1", "frames=3"), "--model", str(tiny_model))
        assert r.returncode == 1 and "Traceback" not in r.stderr and "s3cret" not in r.stderr
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("gapstream: error: ") and message in last


def test_page_never_shows_a_camera_password() -> None:
    from gapstream.monitor import CameraMonitor

    port = free_port()
    cfg = load_config(None, {"http.port": port,
                             "sources": [{"name": "door", "uri": "rtsp://admin:s3cret@127.0.0.1:1/x"}]})
    with CameraMonitor(cfg, cfg.post, 1, sources=cfg.sources):
        status, page = get(f"http://127.0.0.1:{port}/")
        _, api = get(f"http://127.0.0.1:{port}/api/cameras")
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200  # within its first open_timeout
    assert status == 200 and b"s3cret" not in page + api
    assert b"rtsp://admin:***@127.0.0.1:1/x" in page and json.loads(api)[0]["source"].startswith("rtsp://admin:***@")


def test_jpegs_are_made_only_while_someone_looks() -> None:
    """No viewer: the first JPEG only. An open MJPEG stream, or a latest.jpg request (which then
    waits for a fresh one), makes them again."""
    from gapstream.config import PostConfig
    from gapstream.detections import Detections
    from gapstream.results import Result
    from gapstream.serve.live import CameraView

    view = CameraView("door", "file.mp4", stall_timeout=5.0, live_fps=10.0)
    post = PostConfig(threshold=0.2, score_threshold=0.5)

    def feed(n: int, start: int) -> None:
        for i in range(start, start + n):
            frame = np.full((48, 64, 3), 10 * i, np.uint8)
            res = Result(index=i, pts=i / 15, probs=np.array([0.9, 0.1], np.float32), person_prob=0.1,
                         is_person=False, detections=Detections.empty(), cam=np.zeros((3, 4), np.float32),
                         frame=frame, latency_ms=1.0)
            view.update(res, 0.1, False, True, post)
            time.sleep(0.11)  # slower than 1 / live_fps: each frame may be encoded

    feed(5, 0)
    assert view.seq == 1 and view.frames == 5  # nobody looked: one JPEG, for latest.jpg's first answer
    view.watchers = 1  # an open MJPEG stream
    feed(3, 5)
    assert view.seq == 4
    view.watchers = 0
    time.sleep(0.25)  # the JPEG is now older than two frame intervals
    stale = view.fresh_jpeg()  # no frame comes: after waiting, the old one; but JPEGs are wanted now
    assert view.seq == 4 and stale == view.jpeg
    feed(1, 8)
    assert view.seq == 5  # made for the request, though nobody streams
    jpeg = view.fresh_jpeg()  # fresh now: no wait
    assert jpeg is not None and jpeg != stale
    assert abs(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE).mean() - 80) < 2


def test_metrics_count_zoom_crops_per_camera() -> None:
    """The Prometheus counters carry each camera's zoom crops beside its frames."""
    from prometheus_client import generate_latest

    from gapstream.serve.live import CameraView
    from gapstream.serve.metrics import RunMetrics

    views = {n: CameraView(n, n, 5.0) for n in ("door", "yard")}
    stats = {"door": {"inferred": 10, "zoom_crops": 7}, "yard": {"inferred": 10, "zoom_crops": 0}}
    text = generate_latest(RunMetrics(views, lambda: stats).registry).decode()
    assert 'gapstream_zoom_crops_total{camera="door"} 7.0' in text
    assert 'gapstream_zoom_crops_total{camera="yard"} 0.0' in text
