"""The Dockerfile, replayed without a Docker engine (this machine has none, and no image registry).

What an image build could get wrong is checked here on the same steps: only the files it COPYs,
its `pip install` in a fresh virtual environment (from the package registry, as `make test`
itself installs), the shipped model found from the install, its CMD's config, and its
HEALTHCHECK command against a running server.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import make_video

ROOT = Path(__file__).resolve().parents[1]


def instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(ln for ln in path.read_text().splitlines()
                                         if not ln.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The replayed image: /app with only the COPYed files, and a venv with the RUN's install."""
    steps = instructions(ROOT / "Dockerfile")
    base = next(arg for op, arg in steps if op == "FROM")
    want = re.search(r"python:(\d+\.\d+)", base)
    assert want, base
    if f"{sys.version_info.major}.{sys.version_info.minor}" != want.group(1):
        pytest.skip(f"the image's Python is {want.group(1)}, this one is {sys.version.split()[0]}")
    tmp = tmp_path_factory.mktemp("image")
    app, venv = tmp / "app", tmp / "venv"
    app.mkdir()
    for op, arg in steps:
        if op == "COPY":
            *sources, dest = shlex.split(arg)
            assert not dest.startswith("/"), f"replay knows COPY relative to WORKDIR /app only: {arg}"
            for src in sources:
                path = ROOT / src
                assert path.exists(), f"the Dockerfile copies {src}, which the repository lacks"
                # As Docker does: a directory's contents go to dest; files go into dest/ or to dest.
                target = app / dest / path.name if dest.endswith("/") and path.is_file() else app / dest
                if path.is_dir():
                    shutil.copytree(path, target, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    runs = [arg for op, arg in steps if op == "RUN" and "pip install" in arg]
    assert runs, "the Dockerfile installs nothing"
    for cmd in runs:  # the other RUNs (useradd) need root and change nothing the run depends on
        r = subprocess.run(["bash", "-c", cmd], cwd=app, env=env, capture_output=True, text=True,
                           timeout=900)
        assert r.returncode == 0, f"RUN {cmd}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    entry = next(arg for op, arg in steps if op == "ENTRYPOINT")
    cmd = next(arg for op, arg in steps if op == "CMD")
    health = next(arg for op, arg in steps if op == "HEALTHCHECK")
    return {"app": app, "venv": venv, "env": env, "entry": entry, "cmd": cmd, "health": health}


def test_the_image_runs_the_shipped_model_from_its_own_install(image: dict, tmp_path: Path) -> None:
    import json

    entry = json.loads(image["entry"])
    clip = make_video(tmp_path / "clip.mp4", frames=12)
    data = tmp_path / "data"  # WORKDIR /data: not the source tree
    data.mkdir()
    r = subprocess.run([str(image["venv"] / "bin" / entry[0]), *entry[1:], "run", str(clip), "--json",
                        "out.jsonl"], cwd=data, env=image["env"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = (data / "out.jsonl").read_text().splitlines()
    assert len(lines) == 12 and all(json.loads(ln)["frame"] == i for i, ln in enumerate(lines))
    # The model came from the image's /app, not from this checkout.
    code = "import gapstream.paths as p; print(p.DEFAULT_MODEL)"
    r = subprocess.run([str(image["venv"] / "bin" / "python"), "-c", code], cwd=data, env=image["env"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip().startswith(str(image["app"])), (r.stdout, r.stderr)


def test_the_images_cmd_config_loads(image: dict, tmp_path: Path) -> None:
    import json

    cmd = json.loads(image["cmd"])
    config = cmd[cmd.index("--config") + 1]
    assert config.startswith("/app/")
    path = image["app"] / config.removeprefix("/app/")
    code = ("import sys; from gapstream.config import load_config; c = load_config(sys.argv[1]); "
            "print(len(c.sources), c.http.port)")
    r = subprocess.run([str(image["venv"] / "bin" / "python"), "-c", code, str(path)],
                       env={**image["env"], "CAM_PASSWORD": "x", "MQTT_PASSWORD": "y"}, cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    cameras, port = r.stdout.split()
    assert int(cameras) == 4 and f":{port}/healthz" in image["health"]


def test_the_healthcheck_passes_on_a_running_server_and_fails_without_one(image: dict,
                                                                          tmp_path: Path) -> None:
    health = image["health"]
    assert health.startswith("--") and " CMD " in health
    check = health.split(" CMD ", 1)[1]
    port = free_port()
    check = check.replace(":8080/", f":{port}/")
    venv_bin = image["venv"] / "bin"
    env = {k: v for k, v in image["env"].items() if k != "GAPSTREAM_HTTP_TOKEN"}  # no token: plain request

    def healthy() -> bool:
        return subprocess.run(["bash", "-c", check], env=env, capture_output=True, timeout=30).returncode == 0

    assert not healthy()  # nothing listens yet
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"http:\n  port: {port}\noutput:\n  stats_interval: 0\n")
    proc = subprocess.Popen([str(venv_bin / "gapstream"), "run", "synthetic://?width=160&height=120&live=1&fps=10",
                             "--config", str(cfg)], cwd=tmp_path, env=image["env"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not healthy():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the HEALTHCHECK never passed"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)  # the image's STOPSIGNAL
        proc.wait(timeout=30)
    assert proc.returncode == 130  # stopped cleanly, as the Dockerfile says
