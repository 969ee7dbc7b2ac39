"""Bad input: one clear message, a non-zero exit, no traceback, nothing left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gapstream.meta import load_meta, save_meta

from .helpers import make_video, shm_segments


def run_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "gapstream", "run", *args]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        out, err = proc.communicate(timeout=120)
    assert not shm_segments(proc.pid), "leaked shared memory"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def assert_one_clear_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("gapstream: error:")]
    assert len(errors) == 1, r.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_missing_file(tiny_model: Path, tmp_path: Path) -> None:
    r = run_cli(str(tmp_path / "nope.mp4"), "--model", str(tiny_model))
    assert_one_clear_error(r, "nope.mp4", "no such file")


def test_not_a_video(tiny_model: Path, tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 100)
    r = run_cli(str(fake), "--model", str(tiny_model))
    assert_one_clear_error(r, "notes.mp4", "not a readable video")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    assert_one_clear_error(run_cli(str(empty), "--model", str(tiny_model)), "empty.mp4")


def test_truncated_mp4(tiny_model: Path, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "cut.mp4", frames=60)
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])  # the index (moov) at the end is gone
    assert_one_clear_error(run_cli(str(clip), "--model", str(tiny_model)), "cut.mp4")


def test_truncated_mkv_keeps_what_was_readable(tiny_model: Path, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "cut.mkv", frames=90)
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o.jsonl"
    r = run_cli(str(clip), "--model", str(tiny_model), "--json", str(out))
    assert_one_clear_error(r, "cut.mkv", "truncated")
    lines = out.read_text().splitlines()
    assert 10 < len(lines) < 90  # the readable part was processed and written


def test_unknown_uri_scheme_dir_without_images(tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert_one_clear_error(run_cli(str(tmp_path / "empty"), "--model", str(tiny_model)), "no images")


def test_missing_model(video: Path, tmp_path: Path) -> None:
    r = run_cli(str(video), "--model", str(tmp_path / "missing.tflite"))
    assert_one_clear_error(r, "missing.tflite", "not found")


def test_model_without_metadata(video: Path, tiny_model: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.tflite"
    shutil.copy(tiny_model, bare)
    assert_one_clear_error(run_cli(str(video), "--model", str(bare)), "metadata")


def test_model_that_does_not_match_its_metadata(video: Path, tiny_model: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.tflite"
    shutil.copy(tiny_model, other)
    shutil.copy(tiny_model.with_suffix(".json"), other.with_suffix(".json"))
    with open(other, "ab") as f:
        f.write(b"tampered")
    assert_one_clear_error(run_cli(str(video), "--model", str(other)), "does not match")


def test_garbage_model_with_metadata(video: Path, tiny_model: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(os.urandom(4096))
    save_meta(load_meta(tiny_model), garbage)
    assert_one_clear_error(run_cli(str(video), "--model", str(garbage)), "garbage.tflite")


def test_bad_config_key(video: Path, tiny_model: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("infer:\n  batchsize: 4\n")
    r = run_cli(str(video), "--model", str(tiny_model), "--config", str(cfg))
    assert_one_clear_error(r, "infer.batchsize", "bad.yaml")


def test_unwritable_output(video: Path, tiny_model: Path, tmp_path: Path) -> None:
    r = run_cli(str(video), "--model", str(tiny_model), "--out", str(tmp_path / "no" / "dir" / "o.mp4"))
    assert_one_clear_error(r, "does not exist")


@pytest.mark.parametrize("verb", ["run", "train", "export", "eval", "bench"])
def test_help_for_each_verb(verb: str) -> None:
    r = subprocess.run([sys.executable, "-m", "gapstream", verb, "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "usage: gapstream" in r.stdout


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["bench", "--help"], ["--version"]])
def test_help_imports_neither_pyav_nor_opencv(argv: list[str]) -> None:
    code = ("import sys\nfrom gapstream.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('av', 'cv2', 'tensorflow') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]", r.stdout


def test_version_comes_from_the_package_metadata() -> None:
    from importlib import metadata

    import gapstream

    assert gapstream.__version__ == metadata.version("gapstream")
    r = subprocess.run([sys.executable, "-m", "gapstream", "--version"], capture_output=True, text=True,
                       timeout=60)
    assert r.stdout.strip() == f"gapstream {metadata.version('gapstream')}"


def test_missing_camera_device(tiny_model: Path) -> None:
    assert_one_clear_error(run_cli("/dev/video97", "--model", str(tiny_model)), "/dev/video97")


def test_show_without_gui_support_is_a_clear_error(video: Path, tiny_model: Path) -> None:
    import cv2

    try:
        cv2.namedWindow("probe")
        cv2.destroyWindow("probe")
        pytest.skip("this OpenCV build has GUI support")
    except cv2.error:
        pass
    assert_one_clear_error(run_cli(str(video), "--model", str(tiny_model), "--show"), "--show")


def test_unset_env_variable_in_config(tiny_model: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GAPSTREAM_TEST_UNSET", raising=False)  # the CLI inherits this environment
    cfg = tmp_path / "cam.yaml"
    cfg.write_text("source:\n  uri: rtsp://admin:${GAPSTREAM_TEST_UNSET}@127.0.0.1/cam\n")
    r = run_cli("--config", str(cfg), "--model", str(tiny_model))
    assert_one_clear_error(r, str(cfg), "config key 'source.uri'",
                           "environment variable GAPSTREAM_TEST_UNSET is not set")


def test_no_source_given(tiny_model: Path) -> None:
    assert_one_clear_error(run_cli("--model", str(tiny_model)), "no source given", "source.uri")


@pytest.mark.parametrize("script", ["operating_points", "zoom", "smoothing", "multiscale", "seed_agreement"])
def test_benchmark_script_with_a_missing_clip_folder(script: str, tiny_model: Path, tmp_path: Path) -> None:
    """The benchmark scripts that read labelled clips end a wrong --clips with one error line."""
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / f"{script}.py"
    extra = {"operating_points": ["--model", f"A={tiny_model}"],
             "zoom": ["--crop", f"Z={tiny_model}", "--dumps", str(tmp_path / "d")],
             "smoothing": ["--model", str(tiny_model)],
             "multiscale": ["--model", str(tiny_model), "--long-side", "320", "--long-side", "640"],
             "seed_agreement": ["--recipe", f"R={tiny_model},{tiny_model}"]}[script]
    r = subprocess.run([sys.executable, str(bench), "--clips", str(tmp_path / "missing"), *extra],
                       capture_output=True, text=True, timeout=120)
    assert_one_clear_error(r, str(tmp_path / "missing"), "labels.json")


def test_log_forwarding_is_drained_and_stopped_before_exit() -> None:
    """The program ends the stage processes' log forwarding itself (its receiving thread could otherwise
    meet multiprocessing's exit handlers closing its queue and print a traceback): a child's record
    still arrives, the thread is gone, and later records go straight to stderr."""
    code = """
import logging, multiprocessing, threading
from gapstream import cli
cli._setup_logging("INFO")
log = logging.getLogger("gapstream")
child = multiprocessing.get_context("fork").Process(target=log.info, args=("from the child",))
child.start(); child.join()
cli._stop_log_forwarding()
assert not any(t.name.startswith("mp-handler") for t in threading.enumerate()), threading.enumerate()
log.info("after the forwarding")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "from the child" in r.stderr and "after the forwarding" in r.stderr
