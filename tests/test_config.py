"""Config parsing: typed dataclasses, one clear error naming the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gapstream.config import PipelineConfig, load_config
from gapstream.errors import ConfigError

CONFIG_DIR = Path(__file__).parent.parent / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_defaults_and_default_yaml_agree() -> None:
    assert load_config() == PipelineConfig()
    assert PipelineConfig().post.threshold is None  # None: the model's own
    # default.yaml documents the defaults: loading it changes nothing.
    assert load_config(CONFIG_DIR / "default.yaml") == PipelineConfig()


def _leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in tree.items():
        out.update(_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _matches(node: object, value: object) -> bool:
    """A parsed config value against its YAML: lists of sections item by item, ${VAR} expanded."""
    if isinstance(value, dict):
        return all(_matches(getattr(node, k), v) for k, v in value.items())
    if isinstance(value, list) and isinstance(node, list):
        return len(node) == len(value) and all(_matches(n, v) for n, v in zip(node, value))
    if isinstance(value, str) and "${" in value:
        return isinstance(node, str) and "${" not in node
    return node == value


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_set_what_they_say(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CAM_PASSWORD", "MQTT_PASSWORD"):  # cameras-4.yaml takes its secrets from these
        monkeypatch.setenv(var, "secret")
    cfg = load_config(path)
    leaves = _leaves(yaml.safe_load(path.read_text()))
    assert leaves, f"{path.name} sets nothing"
    for key, value in leaves.items():
        node: object = cfg
        for part in key.split("."):
            node = getattr(node, part)
        assert _matches(node, value), key


def test_shipped_configs_exist() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"default", "rtsp-camera", "raspberry-pi", "offline-batch", "cameras-4",
            "few-false-alarms", "zoom", "zoom-search"} <= names


def test_overrides_apply() -> None:
    cfg = load_config(None, {"infer.batch_size": 8, "post.threshold": 0.3, "output.video": "x.mp4"})
    assert cfg.infer.batch_size == 8 and cfg.post.threshold == 0.3 and cfg.output.video == "x.mp4"


def test_optional_lists_load_from_yaml(tmp_path: Path) -> None:
    # list[float] | None fields (box factors) once fell through to isinstance(value, list[float]).
    p = tmp_path / "boxes.yaml"
    p.write_text("post:\n  box_scale: [1, 1.25]\n  zoom_box_scale: [0.8, 1.0]\n")
    cfg = load_config(p)
    assert cfg.post.box_scale == [1.0, 1.25] and cfg.post.zoom_box_scale == [0.8, 1.0]
    assert all(isinstance(v, float) for v in cfg.post.box_scale)
    p.write_text("post:\n  zoom_box_scale: [0.8, wide]\n")
    with pytest.raises(ConfigError, match=r"post\.zoom_box_scale\[1\]"):
        load_config(p)


@pytest.mark.parametrize(
    "text, key",
    [
        ("infer:\n  batchsize: 4\n", "infer.batchsize"),
        ("inference:\n  batch_size: 4\n", "inference"),
        ("infer:\n  batch_size: four\n", "infer.batch_size"),
        ("infer:\n  batch_size: 0\n", "infer.batch_size"),
        ("post:\n  threshold: 1.5\n", "post.threshold"),
        ("source:\n  live: maybe\n", "source.live"),
        # Rules are declared on the fields, so they hold in every camera of a list too.
        ("sources:\n  - name: a\n  - name: b\n    stride: 0\n", "sources[1].stride"),
        ("sources:\n  - name: a\n    masks: [[[0, 0], [1, 0]]]\n", "sources[0].masks[0]"),
        ("output:\n  crf: 60\n", "output.crf"),
        ("source:\n  backoff_initial: 0\n", "source.backoff_initial"),
    ],
)
def test_bad_key_is_named(tmp_path: Path, text: str, key: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert f"'{key}'" in str(err.value) and "bad.yaml" in str(err.value)


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "broken.yaml"
    p.write_text("infer: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
