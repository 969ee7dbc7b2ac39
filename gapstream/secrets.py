"""Secrets for the network outputs (MQTT password, HTTP token) and the exposure rule.

A secret comes from the environment (``${VAR}`` in the config, checked by
:func:`gapstream.config.refuse_literal_secrets`) or from a file; never from the YAML itself.
Anything that talks beyond the loopback interface must be authenticated.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from .errors import ConfigError


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_secret(value: str | None, file: str | None, key: str) -> str | None:
    """The secret of config key ``key``: its (environment-expanded) value, or the first line of ``file``."""
    if value and file:
        raise ConfigError(f"config keys '{key}' and '{key}_file' are both set; use one")
    if file:
        try:
            text = Path(file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"config key '{key}_file': cannot read {file}: {exc.strerror}") from None
        if not text:
            raise ConfigError(f"config key '{key}_file': {file} is empty")
        return text
    return value or None
