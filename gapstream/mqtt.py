"""Events and per-camera state over MQTT (paho-mqtt), with Home Assistant discovery.

Topics (``P`` = ``mqtt.topic_prefix``, ``C`` = the camera name):

- ``P/availability``: ``online`` (retained) while running; ``offline`` on exit and, as the
  broker's last-will message, when the process dies or loses the connection.
- ``P/C/person``: ``ON`` / ``OFF`` (retained) when an event starts / ends.
- ``P/C/probability``: the event score, at most every ``mqtt.state_interval`` seconds.
- ``P/events``: one JSON message per event start and end, ``{"type": "start"|"end", ...event}``.
- ``<discovery_prefix>/binary_sensor|sensor/gapstream_C/.../config``: Home Assistant discovery.

paho's network thread reconnects with backoff; messages of QoS >= 1 published while the broker
is away wait in paho's queue and are sent once it is back, so no event is lost.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any

import paho.mqtt.client as paho

from .config import MqttConfig
from .errors import ConfigError, OutputError
from .events import Event
from .results import Result
from .secrets import is_loopback, read_secret

log = logging.getLogger("gapstream.mqtt")

_FLUSH_TIMEOUT = 5.0  # seconds to wait at exit for queued messages to reach the broker


class MqttPublisher:
    """One connection per run; an event listener and a per-frame hook of the monitor."""

    def __init__(self, cfg: MqttConfig, cameras: list[str]) -> None:
        password = read_secret(cfg.password, cfg.password_file, "mqtt.password")
        if not is_loopback(cfg.host) and not (cfg.username and password):
            raise ConfigError(f"config key 'mqtt.host': the broker {cfg.host} is not on this machine, so "
                              "mqtt.username and mqtt.password (${VAR} or mqtt.password_file) are required")
        if not is_loopback(cfg.host) and not cfg.tls:
            log.warning("MQTT to %s without TLS: the password crosses the network in clear; "
                        "set mqtt.tls: true", cfg.host)
        self.cfg, self.cameras = cfg, cameras
        self.prefix = cfg.topic_prefix.rstrip("/")
        self.availability = f"{self.prefix}/availability"
        self._last_state: dict[str, float] = {}
        # Message ids of QoS >= 1 messages not yet acknowledged, and acknowledgements that came
        # back before publish() returned the id (paho's network thread runs concurrently).
        self._pending: set[int] = set()
        self._early: set[int] = set()
        self._lock = threading.Lock()
        self.connected = threading.Event()
        client = paho.Client(paho.CallbackAPIVersion.VERSION2,
                             client_id=f"gapstream-{'-'.join(cameras)}-{os.getpid()}")
        client.max_queued_messages_set(0)  # unbounded: events wait for the broker however long
        client.reconnect_delay_set(0.5, 10)
        if cfg.username:
            client.username_pw_set(cfg.username, password)
        if cfg.tls:
            client.tls_set(ca_certs=cfg.ca_file)
        client.will_set(self.availability, "offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self.client = client
        try:
            client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive)
        except (OSError, ValueError) as exc:
            raise OutputError(f"cannot connect to MQTT broker {cfg.host}:{cfg.port}: {exc}") from None
        client.loop_start()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT broker %s:%d refused the connection: %s", self.cfg.host, self.cfg.port, reason)
            return
        log.info("MQTT connected to %s:%d", self.cfg.host, self.cfg.port)
        client.publish(self.availability, "online", qos=1, retain=True)
        if self.cfg.discovery:
            for camera in self.cameras:
                for topic, payload in discovery_messages(self.cfg, camera):
                    client.publish(topic, json.dumps(payload), qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connected.clear()
        if reason.is_failure:
            log.warning("MQTT connection to %s:%d lost (%s); reconnecting", self.cfg.host, self.cfg.port,
                        reason)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            if mid in self._pending:
                self._pending.discard(mid)
            else:
                self._early.add(mid)

    def _publish(self, topic: str, payload: str, retain: bool = False, qos: int | None = None) -> None:
        qos = self.cfg.qos if qos is None else qos
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos > 0:
            with self._lock:
                if info.mid in self._early:
                    self._early.discard(info.mid)
                else:
                    self._pending.add(info.mid)

    @property
    def unacknowledged(self) -> int:
        """Messages of QoS >= 1 the broker has not acknowledged yet (queued or in flight)."""
        with self._lock:
            return len(self._pending)

    def event_started(self, event: Event) -> None:
        self._publish(f"{self.prefix}/{event.camera}/person", "ON", retain=True)
        self._publish(f"{self.prefix}/events", json.dumps({"type": "start", **event.to_dict()}))

    def event_ended(self, event: Event) -> None:
        self._publish(f"{self.prefix}/{event.camera}/person", "OFF", retain=True)
        self._publish(f"{self.prefix}/events", json.dumps({"type": "end", **event.to_dict()}))

    def frame(self, camera: str, result: Result, score: float, zones: dict[str, float], active: bool) -> None:
        """The probability state, throttled to one message per ``state_interval`` per camera."""
        now = time.monotonic()
        if now - self._last_state.get(camera, -1e9) < self.cfg.state_interval:
            return
        self._last_state[camera] = now
        self._publish(f"{self.prefix}/{camera}/probability", f"{score:.4f}", qos=0)

    def close(self) -> None:
        """Wait (bounded) for queued events to reach the broker, say offline, disconnect."""
        for camera in self.cameras:
            self._publish(f"{self.prefix}/{camera}/person", "OFF", retain=True, qos=1)
        self._publish(self.availability, "offline", retain=True, qos=1)
        deadline = time.monotonic() + _FLUSH_TIMEOUT
        while self.unacknowledged and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.unacknowledged:
            log.warning("MQTT: %d messages not delivered to %s:%d before exit", self.unacknowledged,
                        self.cfg.host, self.cfg.port)
        self.client.disconnect()
        self.client.loop_stop()


def discovery_messages(cfg: MqttConfig, camera: str) -> list[tuple[str, dict]]:
    """Home Assistant MQTT discovery: a person binary_sensor and a probability sensor per camera."""
    prefix = cfg.topic_prefix.rstrip("/")
    node = f"gapstream_{camera}"
    device = {"identifiers": [node], "name": f"gapstream {camera}", "manufacturer": "gapstream"}
    common = {"availability_topic": f"{prefix}/availability", "device": device}
    return [
        (f"{cfg.discovery_prefix}/binary_sensor/{node}/person/config", {
            **common, "name": "Person", "unique_id": f"{node}_person", "device_class": "occupancy",
            "state_topic": f"{prefix}/{camera}/person", "payload_on": "ON", "payload_off": "OFF"}),
        (f"{cfg.discovery_prefix}/sensor/{node}/probability/config", {
            **common, "name": "Person probability", "unique_id": f"{node}_probability",
            "state_topic": f"{prefix}/{camera}/probability", "unit_of_measurement": "%",
            "value_template": "{{ (value | float * 100) | round(1) }}", "state_class": "measurement"}),
    ]
