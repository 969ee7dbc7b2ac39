"""Credentials in source URLs: redaction for everything gapstream writes, and ``${VAR}``
substitution so that passwords can live in the environment rather than in config files.

Everything user-visible that may hold a source URL (log lines, errors, reports, pages) goes
through :func:`redact_url` or :func:`redact_text`; :class:`RedactingFormatter` applies the
latter to every formatted log record as a safety net for messages (FFmpeg's included) that
echo a URL.
"""

from __future__ import annotations

import logging
import os
import re
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError

MASK = "***"

# A scheme and the authority that follows "//" (up to the path, query or fragment). A password
# must escape "/", "?" and "#" (as %2F etc.) to be a valid URL; an unescaped "@" is tolerated
# because the user-info ends at the authority's last "@".
_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#]*")


def redact_url(uri: str) -> str:
    """``uri`` with the password of its user-info masked: ``rtsp://admin:***@host/path``.

    Anything without a password (file paths, plain URLs) comes back unchanged.
    """
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:  # e.g. an unbalanced "[" in the host: mask the whole user-info
        parts, password = None, ""
    if password is None or "@" not in uri:
        return uri
    if parts is None:
        return re.sub(r"(://)[^\s/?#]*@", rf"\g<1>{MASK}@", uri, count=1)
    host = parts.netloc.rpartition("@")[2]
    return uri.replace(parts.netloc, f"{parts.username}:{MASK}@{host}", 1)


def redact_text(text: str) -> str:
    """``text`` with every ``scheme://user:password@`` in it redacted (see :func:`redact_url`)."""
    if "://" not in text:
        return text
    return _AUTHORITY.sub(lambda m: redact_url(m.group()), text)


class RedactingFormatter(logging.Formatter):
    """A log formatter whose output, exception text included, never holds a URL password."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class _EnvTemplate(string.Template):
    # Only the braced form: a bare "$" (common in passwords) stays literal, and "$${" is an
    # escape for a literal "${". A "${" that does not close over a valid name is an error.
    pattern = r"""
    \$(?:
      (?P<escaped>\$)(?=\{) |
      \{(?P<braced>[_a-z][_a-z0-9]*)\} |
      (?P<named>(?!)) |
      (?P<invalid>\{)
    )
    """


def expand_env(data: Any, prefix: str = "", environ: Mapping[str, str] | None = None) -> Any:
    """``data`` (parsed YAML) with ``${VAR}`` in every string replaced from the environment.

    Raises ConfigError naming the config key and the variable when one is unset.
    """
    env = os.environ if environ is None else environ
    if isinstance(data, dict):
        return {k: expand_env(v, f"{prefix}.{k}" if prefix else str(k), env) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, f"{prefix}[{i}]", env) for i, v in enumerate(data)]
    if not isinstance(data, str) or "$" not in data:
        return data
    try:
        return _EnvTemplate(data).substitute(env)
    except KeyError as exc:
        raise ConfigError(f"config key '{prefix}': environment variable {exc.args[0]} is not set") from None
    except ValueError:
        raise ConfigError(f"config key '{prefix}': bad variable reference; write ${{NAME}} "
                          "(or $${ for a literal ${)") from None
