"""`gapstream data`: dataset manifests rebuilt from git copies of their sources."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from gapstream.cli import main
from gapstream.training.manifests import group_digest, load_manifest


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def mirror(tmp_path: Path) -> tuple[Path, str, dict[str, bytes]]:
    """A repository with three files, copied bare to mirrors/owner+name/repo as the fetch tool does."""
    work = tmp_path / "work"
    (work / "imgs").mkdir(parents=True)
    files = {"clip.mp4": b"not really a video", "imgs/a.jpg": b"aaa", "imgs/b.jpg": b"bbbb"}
    for rel, data in files.items():
        (work / rel).write_bytes(data)
    _git("init", "-q", cwd=work)
    _git("add", ".", cwd=work)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "data", cwd=work)
    commit = _git("rev-parse", "HEAD", cwd=work)
    mirrors = tmp_path / "mirrors"
    mirrors.mkdir()
    _git("clone", "-q", "--bare", str(work), str(mirrors / "owner+name" / "repo"), cwd=tmp_path)
    return mirrors, commit, files


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _manifests(tmp_path: Path, commit: str, files: dict[str, bytes]) -> tuple[Path, Path]:
    src = {"repo": "owner/name", "commit": commit, "licence": "none stated"}
    clips = {"name": "clips", "dest": "data/clips_x", "clips": [{
        "file": "noperson/c.mp4", "split": "val", "segments": [{"start": 0.0, "end": 2.0, "person": False}],
        "source": {**src, "path": "clip.mp4", "sha256": _sha(files["clip.mp4"])}}]}
    groups = {"name": "imgs", "dest": "data/imgs_x", "groups": [{
        "dest": "neg/g", "label": "no_person", "source": src,
        "files": ["imgs/a.jpg", ["imgs/b.jpg", "renamed.jpg"]],
        "sha256": group_digest([_sha(files["imgs/a.jpg"]), _sha(files["imgs/b.jpg"])])}]}
    a, b = tmp_path / "clips.json", tmp_path / "imgs.json"
    a.write_text(json.dumps(clips))
    b.write_text(json.dumps(groups))
    return a, b


def test_data_rebuilds_files_and_labels(tmp_path, mirror, capsys):
    mirrors, commit, files = mirror
    a, b = _manifests(tmp_path, commit, files)
    root = tmp_path / "root"
    assert main(["data", str(a), str(b), "--root", str(root), "--sources"]) == 0
    assert capsys.readouterr().out.split() == [f"owner/name@{commit}"]
    assert main(["data", str(a), str(b), "--mirrors", str(mirrors), "--root", str(root)]) == 0
    assert (root / "data/clips_x/noperson/c.mp4").read_bytes() == files["clip.mp4"]
    assert (root / "data/imgs_x/neg/g/a.jpg").read_bytes() == files["imgs/a.jpg"]
    assert (root / "data/imgs_x/neg/g/renamed.jpg").read_bytes() == files["imgs/b.jpg"]
    labels = json.loads((root / "data/clips_x/labels.json").read_text())
    assert labels["clips"][0]["file"] == "noperson/c.mp4"
    assert "clips: 1 written" in capsys.readouterr().out
    # A second run needs no mirror: everything is in place with the right bytes.
    assert main(["data", str(a), str(b), "--root", str(root)]) == 0
    assert "imgs: 0 written, 2 already in place" in capsys.readouterr().out
    assert main(["data", str(a), str(b), "--root", str(root), "--sources"]) == 0
    assert capsys.readouterr().out == ""


def test_data_never_overwrites_other_bytes(tmp_path, mirror, capsys):
    mirrors, commit, files = mirror
    _, b = _manifests(tmp_path, commit, files)
    root = tmp_path / "root"
    mine = root / "data/imgs_x/neg/g/renamed.jpg"  # the group's second file
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own file")
    assert main(["data", str(b), "--mirrors", str(mirrors), "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gapstream: error:") and "never overwritten" in err
    assert mine.read_bytes() == b"my own file"
    assert not (root / "data/imgs_x/neg/g/a.jpg").exists()  # nothing of the refused group is written


def test_data_refuses_a_source_that_differs(tmp_path, mirror, capsys):
    mirrors, commit, files = mirror
    a, _ = _manifests(tmp_path, commit, {**files, "clip.mp4": b"other bytes"})
    root = tmp_path / "root"
    assert main(["data", str(a), "--mirrors", str(mirrors), "--root", str(root)]) == 1
    assert "does not match the manifest's sha256" in capsys.readouterr().err
    assert not (root / "data/clips_x/noperson/c.mp4").exists()


def test_data_names_a_missing_mirror(tmp_path, mirror, capsys):
    _, commit, files = mirror
    a, _ = _manifests(tmp_path, commit, files)
    assert main(["data", str(a), "--mirrors", str(tmp_path / "nowhere"), "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no git copy of owner/name" in err and "Traceback" not in err


def test_manifest_paths_stay_inside_the_collection(tmp_path, mirror):
    _, commit, files = mirror
    _, b = _manifests(tmp_path, commit, files)
    raw = json.loads(b.read_text())
    raw["groups"][0]["files"] = [["imgs/a.jpg", "../../escape.jpg"]]
    b.write_text(json.dumps(raw))
    with pytest.raises(Exception, match="relative path inside the collection"):
        load_manifest(b)


SHIPPED = sorted((Path(__file__).resolve().parents[1] / "configs" / "datasets").glob("*.json"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_manifests_are_well_formed(path: Path):
    m = load_manifest(path)
    assert m.dest.startswith("data/") and m.groups
    for g in m.groups:
        assert len(g.sha256) == 64 and int(g.sha256, 16) >= 0
    for clip in (m.labels or {}).get("clips", []):
        segs = clip["segments"]
        assert all(s["start"] < s["end"] for s in segs)
        assert all(a["end"] <= b["start"] for a, b in zip(segs, segs[1:]))
        if clip.get("labelled_by") == "eye":  # by eye: whole clip, contiguous, from 0
            assert segs[0]["start"] == 0 and abs(segs[-1]["end"] - clip["duration_s"]) < 0.1
            assert all(a["end"] == b["start"] for a, b in zip(segs, segs[1:]))
        assert clip["file"].startswith("noperson/") == (not any(s["person"] for s in segs))
