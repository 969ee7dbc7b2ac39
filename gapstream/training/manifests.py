"""Dataset manifests: every git-ignored training or validation collection, rebuilt exactly.

Third-party images and videos are never committed; a manifest in ``configs/datasets/`` is.
It names each file's public repository, commit and path, the sha256 of its bytes, and our own
labels, so that a fresh machine rebuilds ``data/`` byte for byte from git copies of those
repositories (the machines here reach no code host; a mirror is brought in by hand).

Two kinds, one JSON file each:

- **clips**: the ``labels.json`` layout of :mod:`.clips` plus a ``source`` block per clip
  (``repo``, ``commit``, ``path``, ``sha256``, ``licence``); materialising writes each video and
  the ``labels.json`` itself;
- **groups** of images (or other files) with one label per group: ``files`` are repository
  paths (or ``[path, local name]`` pairs), checked by one sha256 over the files' own digests.

    gapstream data configs/datasets/footage_target_val.json --mirrors /work/.mirror
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import DataError

LABELS = ("person", "no_person", "weights", "model")


@dataclass(frozen=True)
class Source:
    """Where one repository's files come from."""

    repo: str  # owner/name
    commit: str  # 40 hex digits
    licence: str = ""


@dataclass(frozen=True)
class Entry:
    """One file to write: ``path`` at the source's commit, to ``dest`` under the manifest's root."""

    path: str
    dest: str


@dataclass(frozen=True)
class Group:
    """Files of one source written to one folder, checked by one digest (clips: one file each)."""

    source: Source
    entries: tuple[Entry, ...]
    sha256: str
    label: str


@dataclass(frozen=True)
class Manifest:
    """A collection: where it goes, what it holds, and (clips only) its ``labels.json``."""

    name: str
    dest: str
    groups: tuple[Group, ...]
    labels: dict | None  # the labels.json to write, for clip manifests


def group_digest(file_hashes: Iterable[str]) -> str:
    """The digest of a group: sha256 of its files' hex digests, one per line, in list order."""
    return hashlib.sha256("".join(h + "\n" for h in file_hashes).encode()).hexdigest()


def _need(obj: dict, key: str, where: str) -> object:
    if key not in obj:
        raise DataError(f"{where}: missing {key!r}")
    return obj[key]


def _safe(rel: str, where: str) -> str:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise DataError(f"{where}: {rel!r} must be a relative path inside the collection")
    return str(p)


def _source(obj: dict, where: str) -> Source:
    commit = str(_need(obj, "commit", where))
    if len(commit) != 40 or any(c not in "0123456789abcdef" for c in commit.lower()):
        raise DataError(f"{where}: commit must be 40 hex digits, not {commit!r}")
    return Source(str(_need(obj, "repo", where)), commit.lower(), str(obj.get("licence", "")))


def load_manifest(path: str | Path) -> Manifest:
    """Read and check one manifest file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read manifest {path}: {exc}") from exc
    where = str(path)
    name, dest = str(_need(raw, "name", where)), _safe(str(_need(raw, "dest", where)), where)
    groups: list[Group] = []
    if "clips" in raw:
        for i, clip in enumerate(raw["clips"]):
            w = f"{where}: clip {i}"
            src = _need(clip, "source", w)
            entry = Entry(str(_need(src, "path", w)), _safe(str(_need(clip, "file", w)), w))
            groups.append(Group(_source(src, w), (entry,), str(_need(src, "sha256", w)), "clip"))
        labels: dict | None = {"clips": raw["clips"]}
    else:
        for i, g in enumerate(_need(raw, "groups", where)):
            w = f"{where}: group {i}"
            label = str(_need(g, "label", w))
            if label not in LABELS:
                raise DataError(f"{w}: label must be one of {', '.join(LABELS)}, not {label!r}")
            folder = str(g.get("dest", "."))
            entries = []
            for f in _need(g, "files", w):
                repo_path, local = (f, PurePosixPath(f).name) if isinstance(f, str) else (f[0], f[1])
                entries.append(Entry(repo_path, _safe(str(PurePosixPath(folder) / local), w)))
            groups.append(Group(_source(_need(g, "source", w), w), tuple(entries),
                                str(_need(g, "sha256", w)), label))
        labels = None
    dests = [e.dest for g in groups for e in g.entries]
    if len(set(dests)) != len(dests):
        raise DataError(f"{where}: two files would be written to the same local path")
    return Manifest(name, dest, tuple(groups), labels)


def find_mirror(mirrors: Sequence[Path], repo: str) -> Path:
    """The git directory of ``repo`` (owner/name) under one of ``mirrors``.

    Accepted layouts: ``OWNER+NAME/repo`` (as the fetch tool writes them), ``OWNER+NAME``,
    ``OWNER/NAME`` and ``OWNER/NAME.git``, bare or with a work tree."""
    owner, _, name = repo.partition("/")
    for root in mirrors:
        for cand in (root / f"{owner}+{name}" / "repo", root / f"{owner}+{name}", root / owner / name,
                     root / owner / f"{name}.git"):
            if (cand / "HEAD").is_file() and (cand / "objects").is_dir():
                return cand
            if (cand / ".git" / "HEAD").is_file():
                return cand / ".git"
    raise DataError(f"no git copy of {repo} under {', '.join(map(str, mirrors))} "
                    f"(expected {owner}+{name}/repo or {owner}/{name})")


def _blobs(git_dir: Path, commit: str, paths: Sequence[str]) -> Iterator[bytes]:
    """The bytes of ``paths`` at ``commit``, in order, from one ``git cat-file --batch``."""
    try:
        proc = subprocess.Popen(["git", f"--git-dir={git_dir}", "cat-file", "--batch"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError as exc:
        raise DataError(f"cannot run git to read {git_dir}: {exc}") from exc
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for path in paths:
            proc.stdin.write(f"{commit}:{path}\n".encode())
            proc.stdin.flush()
            header = proc.stdout.readline().decode().split()
            if len(header) != 3 or header[1] != "blob":
                raise DataError(f"{git_dir}: no file {path!r} at commit {commit[:12]}")
            data = proc.stdout.read(int(header[2]))
            proc.stdout.read(1)  # the newline after each object
            yield data
    finally:
        proc.stdin.close()
        proc.kill()
        proc.wait()


@dataclass(frozen=True)
class Written:
    """What materialising one manifest did."""

    written: int
    present: int  # already there with the right bytes


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digest(group: Group, hashes: Sequence[str]) -> str:
    """A clip is checked by its own sha256, a group of files by :func:`group_digest`."""
    return hashes[0] if group.label == "clip" else group_digest(hashes)


def _present(path: Path) -> str | None:
    return _sha(path.read_bytes()) if path.is_file() else None


def _in_place(group: Group, base: Path) -> tuple[list[Path], list[str | None], bool]:
    targets = [base / e.dest for e in group.entries]
    have = [_present(t) for t in targets]
    ok = all(h is not None for h in have) and _digest(group, have) == group.sha256  # type: ignore[arg-type]
    return targets, have, ok


def missing_groups(manifest: Manifest, root: str | Path = ".") -> list[Group]:
    """The groups of ``manifest`` not yet in place under ``root`` with the right bytes."""
    return [g for g in manifest.groups if not _in_place(g, Path(root) / manifest.dest)[2]]


def materialise(manifest: Manifest, mirrors: Sequence[Path], root: str | Path = ".") -> Written:
    """Write the manifest's files under ``root/dest``, checking every digest first.

    A file already there with the right bytes is kept; one with other bytes is an error, never
    overwritten. Nothing of a group is written unless the whole group matches its digest."""
    base = Path(root) / manifest.dest
    written = present = 0
    for group in manifest.groups:
        targets, have, ok = _in_place(group, base)
        if ok:
            present += len(targets)
            continue
        git_dir = find_mirror(mirrors, group.source.repo)
        blobs = list(_blobs(git_dir, group.source.commit, [e.path for e in group.entries]))
        hashes = [_sha(b) for b in blobs]
        if _digest(group, hashes) != group.sha256:
            raise DataError(f"{manifest.name}: {group.source.repo}@{group.source.commit[:12]} does not "
                            f"match the manifest's sha256 ({len(blobs)} file(s))")
        clash = [t for t, h, want in zip(targets, have, hashes) if h is not None and h != want]
        if clash:  # before writing any of the group, so that a refused group is not left half-written
            raise DataError(f"{clash[0]} exists with other bytes than the manifest's; move it away first "
                            "(it is never overwritten)")
        for t, h, data, want in zip(targets, have, blobs, hashes):
            if h == want:
                present += 1
                continue
            t.parent.mkdir(parents=True, exist_ok=True)
            tmp = t.with_name(t.name + ".part")
            tmp.write_bytes(data)
            tmp.replace(t)
            written += 1
    if manifest.labels is not None:
        _write_labels(base / "labels.json", manifest.labels)
    return Written(written, present)


def _write_labels(path: Path, labels: dict) -> None:
    if path.is_file():
        try:
            same = json.loads(path.read_text()) == labels
        except (OSError, ValueError):
            same = False
        if not same:
            raise DataError(f"{path} exists with other labels than the manifest's; move it away first")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(labels, indent=1) + "\n")
