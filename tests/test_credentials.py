"""Source URL passwords are masked wherever gapstream writes, and config values take ``${VAR}``
from the environment."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest

from gapstream.config import load_config
from gapstream.credentials import RedactingFormatter, expand_env, redact_text, redact_url
from gapstream.errors import ConfigError


@pytest.mark.parametrize("url, shown", [
    ("rtsp://admin:s3cret@127.0.0.1:554/cam", "rtsp://admin:***@127.0.0.1:554/cam"),
    ("rtsp://admin:p%40ss%2Fw0rd@cam1/stream?channel=1", "rtsp://admin:***@cam1/stream?channel=1"),
    ("rtsp://admin:p@ss@cam1/stream", "rtsp://admin:***@cam1/stream"),  # unescaped "@" in the password
    ("http://:token@host", "http://:***@host"),
    ("rtsps://u:pw@[::1]:8554/x#frag", "rtsps://u:***@[::1]:8554/x#frag"),
    ("rtsp://u:pw@[::1/x", "rtsp://***@[::1/x"),  # not parseable: the whole user-info goes
])
def test_redact_url_masks_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("uri", [
    "samples/people.mp4", "/dev/video0", "rtsp://127.0.0.1:554/cam", "rtsp://viewer@cam1/stream",
    "synthetic://?width=64&height=48&frames=3", "images/*.jpg", "",
])
def test_redact_url_leaves_uris_without_a_password_alone(uri: str) -> None:
    assert redact_url(uri) == uri


def test_redact_text_scrubs_every_url_in_a_message() -> None:
    # What PyAV puts in an exception: the URL, quoted, among other text.
    msg = ("[Errno 111] Connection refused: 'rtsp://admin:s3cret@10.0.0.5/cam'; "
           "also tried rtsp://ops:hunter2@10.0.0.6:8554/a,b and http://10.0.0.7/x")
    out = redact_text(msg)
    assert "s3cret" not in out and "hunter2" not in out
    assert out == ("[Errno 111] Connection refused: 'rtsp://admin:***@10.0.0.5/cam'; "
                   "also tried rtsp://ops:***@10.0.0.6:8554/a,b and http://10.0.0.7/x")
    assert redact_text("no url here: a:b@c") == "no url here: a:b@c"


def test_formatter_redacts_messages_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test_credentials.formatter")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("%s: retrying", "rtsp://admin:s3cret@cam1/x")
        try:
            raise OSError("cannot open rtsp://admin:s3cret@cam1/x")
        except OSError:
            log.exception("open failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "s3cret" not in text
    assert "WARNING rtsp://admin:***@cam1/x: retrying" in text
    assert "OSError: cannot open rtsp://admin:***@cam1/x" in text


ENV = {"CAM1_PASSWORD": "s3cret", "CAM1_HOST": "10.0.0.5", "EMPTY": ""}


def test_expand_env_substitutes_string_values_at_any_depth() -> None:
    data = {"source": {"uri": "rtsp://admin:${CAM1_PASSWORD}@${CAM1_HOST}/stream", "fps": 25},
            "output": {"json": "out/${EMPTY}x.jsonl"}, "tags": ["${CAM1_HOST}", 3]}
    assert expand_env(data, environ=ENV) == {
        "source": {"uri": "rtsp://admin:s3cret@10.0.0.5/stream", "fps": 25},
        "output": {"json": "out/x.jsonl"}, "tags": ["10.0.0.5", 3]}


def test_expand_env_keeps_bare_dollars_and_escapes_double_dollar_brace() -> None:
    data = {"a": "pa$$w$rd", "b": "$CAM1_PASSWORD", "c": "$${CAM1_PASSWORD}", "d": "$"}
    assert expand_env(data, environ=ENV) == {
        "a": "pa$$w$rd", "b": "$CAM1_PASSWORD", "c": "${CAM1_PASSWORD}", "d": "$"}


def test_expand_env_unset_variable_names_key_and_variable() -> None:
    with pytest.raises(ConfigError) as err:
        expand_env({"source": {"uri": "rtsp://admin:${CAM2_PASSWORD}@cam2/x"}}, environ=ENV)
    assert str(err.value) == "config key 'source.uri': environment variable CAM2_PASSWORD is not set"


@pytest.mark.parametrize("value", ["${CAM1-PASSWORD}", "${CAM1_PASSWORD", "${}", "${1X}"])
def test_expand_env_malformed_reference_is_an_error(value: str) -> None:
    with pytest.raises(ConfigError, match=r"config key 'source.uri': bad variable reference"):
        expand_env({"source": {"uri": value}}, environ=ENV)


def test_load_config_expands_the_file_but_not_overrides(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM1_PASSWORD", "s3cret")
    cfg_file = tmp_path / "cam.yaml"
    cfg_file.write_text("source:\n  uri: rtsp://admin:${CAM1_PASSWORD}@cam1/stream\n")
    assert load_config(cfg_file).source.uri == "rtsp://admin:s3cret@cam1/stream"
    # The command line has been through the shell already: no second expansion.
    cfg = load_config(cfg_file, {"output.json": "out/${CAM1_PASSWORD}.jsonl"})
    assert cfg.output.json == "out/${CAM1_PASSWORD}.jsonl"


def test_load_config_unset_variable_is_one_clear_error(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAM9_PASSWORD", raising=False)
    cfg_file = tmp_path / "cam.yaml"
    cfg_file.write_text("source:\n  uri: rtsp://admin:${CAM9_PASSWORD}@cam9/stream\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg_file)
    assert str(err.value) == (f"{cfg_file}: config key 'source.uri': "
                              "environment variable CAM9_PASSWORD is not set")
