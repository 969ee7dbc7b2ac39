"""Faults injected for real: outputs that are inputs, signals, failing outputs, small /dev/shm,
hung stages, stale segments. Each must end in one clear error (or exit 130), no lost data, no leak."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .helpers import make_video
from .test_bad_input import assert_one_clear_error, run_cli


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
    same = tmp_path / "same.out"
    assert_one_clear_error(run_cli(str(clip), "--model", str(tiny_model), "--out", str(same), "--json",
                                   str(same)), "same file")
    assert not same.exists()
