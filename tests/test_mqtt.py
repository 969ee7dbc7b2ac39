"""MQTT against a real mosquitto on 127.0.0.1: events, state, discovery, last will, reconnection."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from gapstream import Pipeline
from gapstream.config import MqttConfig, load_config
from gapstream.errors import ConfigError
from gapstream.events import Event
from gapstream.mqtt import MqttPublisher

from .broker import Broker
from .helpers import make_video


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    yield b
    b.stop()


class Subscriber:
    """Records every message on ``#``; a persistent session, so nothing is missed across restarts."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="gapstream-test-sub",
                                  clean_session=False)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe("#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))

    def on(self, topic: str) -> list[str]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def wait(self, cond: Callable[[], bool], timeout: float = 15) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            time.sleep(0.05)
        return cond()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber(broker: Broker) -> Iterator[Subscriber]:
    s = Subscriber(broker.port)
    yield s
    s.close()


def events(sub: Subscriber) -> list[dict]:
    return [json.loads(p) for p in sub.on("gapstream/events")]


def test_pipeline_events_state_and_discovery(tiny_model: Path, tmp_path: Path, broker: Broker,
                                              subscriber: Subscriber) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=20)
    cfg = load_config(None, {
        "source.name": "porch", "output.stats_interval": 0, "mqtt.host": "127.0.0.1",
        "mqtt.port": broker.port, "mqtt.state_interval": 0,
        "events.on_threshold": 0.0, "events.off_threshold": 0.0, "events.min_frames": 2,
    })
    n = sum(1 for _ in Pipeline(str(clip), str(tiny_model), cfg).run())
    assert n == 20
    assert subscriber.wait(lambda: len(events(subscriber)) == 2)
    start, end = events(subscriber)
    assert (start["type"], end["type"]) == ("start", "end") and start["id"] == end["id"]
    assert start["camera"] == "porch" and start["end"] is None and end["end"] >= end["start"]
    assert subscriber.on("gapstream/porch/person")[:2] == ["ON", "OFF"]
    assert subscriber.wait(lambda: subscriber.on("gapstream/availability")[-1:] == ["offline"])
    assert "online" in subscriber.on("gapstream/availability")
    probs = [float(p) for p in subscriber.on("gapstream/porch/probability")]
    assert len(probs) == 20 and all(0 <= p <= 1 for p in probs)
    binary = json.loads(subscriber.on("homeassistant/binary_sensor/gapstream_porch/person/config")[0])
    assert binary["state_topic"] == "gapstream/porch/person" and binary["payload_on"] == "ON"
    assert binary["availability_topic"] == "gapstream/availability"
    sensor = json.loads(subscriber.on("homeassistant/sensor/gapstream_porch/probability/config")[0])
    assert sensor["state_topic"] == "gapstream/porch/probability"
    assert sensor["device"]["identifiers"] == binary["device"]["identifiers"] == ["gapstream_porch"]


def _event(i: int) -> Event:
    return Event(camera="cam", id=f"e{i}", start=time.time(), start_pts=float(i))


def test_reconnects_and_delivers_events_queued_while_the_broker_was_down(
        broker: Broker, subscriber: Subscriber) -> None:
    pub = MqttPublisher(MqttConfig(host="127.0.0.1", port=broker.port, discovery=False), ["cam"])
    try:
        assert pub.connected.wait(10)
        pub.event_started(_event(0))
        assert subscriber.wait(lambda: len(events(subscriber)) == 1)
        broker.stop()
        assert subscriber.wait(lambda: not pub.connected.is_set(), 10)
        for i in range(1, 6):
            pub.event_started(_event(i))  # queued: no broker
        time.sleep(0.5)
        broker.start()
        assert pub.connected.wait(20), "publisher did not reconnect"
        for i in range(6, 8):
            pub.event_started(_event(i))
        assert subscriber.wait(lambda: {e["id"] for e in events(subscriber)} >= {f"e{i}" for i in range(8)},
                               20), events(subscriber)
    finally:
        pub.close()
    ids = [e["id"] for e in events(subscriber)]
    assert sorted(set(ids)) == sorted(f"e{i}" for i in range(8))  # none lost (QoS 1 may repeat one)


def _publish_forever(port: int) -> None:
    pub = MqttPublisher(MqttConfig(host="127.0.0.1", port=port, discovery=False), ["cam"])
    pub.connected.wait(10)
    time.sleep(60)


def test_last_will_marks_a_dead_process_offline(broker: Broker, subscriber: Subscriber) -> None:
    child = mp.get_context("fork").Process(target=_publish_forever, args=(broker.port,))
    child.start()
    try:
        assert subscriber.wait(lambda: subscriber.on("gapstream/availability")[-1:] == ["online"])
        os.kill(child.pid, signal.SIGKILL)  # no goodbye: the broker publishes the will
        assert subscriber.wait(lambda: subscriber.on("gapstream/availability")[-1:] == ["offline"])
    finally:
        child.kill()
        child.join()


def _cli(config: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gapstream", "run", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_refuses_a_literal_password_and_an_unauthenticated_remote_broker(tiny_model: Path,
                                                                          tmp_path: Path) -> None:
    clip = make_video(tmp_path / "in.mp4", frames=5)
    literal = tmp_path / "literal.yaml"
    literal.write_text("mqtt: {host: 127.0.0.1, username: u, password: hunter2}\n")
    r = _cli(literal, str(clip), "--model", str(tiny_model))
    assert r.returncode == 1 and "Traceback" not in r.stderr and "hunter2" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("gapstream: error: ")
    assert "'mqtt.password' holds a literal secret" in r.stderr
    remote = tmp_path / "remote.yaml"
    remote.write_text("mqtt: {host: 192.0.2.1}\n")
    r = _cli(remote, str(clip), "--model", str(tiny_model))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "mqtt.username and mqtt.password" in r.stderr.strip().splitlines()[-1]
    from_env = tmp_path / "env.yaml"
    from_env.write_text("mqtt: {host: 127.0.0.1, username: u, password: '${MQTT_PW}'}\n")
    with pytest.raises(ConfigError, match="MQTT_PW"):
        load_config(from_env)
    os.environ["MQTT_PW"] = "s3cret"
    try:
        assert load_config(from_env).mqtt.password == "s3cret"
    finally:
        del os.environ["MQTT_PW"]
