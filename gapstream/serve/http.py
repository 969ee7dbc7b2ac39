"""The HTTP server of a run, on the standard library's ThreadingHTTPServer (no extra dependency).

Routes: ``/`` the camera page; ``/cameras/<name>/stream.mjpg`` (MJPEG) and
``/cameras/<name>/latest.jpg``; ``/api/cameras`` (JSON state); ``/metrics`` (Prometheus);
``/healthz`` (200, or 503 naming the cameras stalled longer than their timeout).

It binds to 127.0.0.1 by default. Any other address needs a token (``Authorization: Bearer
<token>`` or ``?token=<token>``) and serves HTTPS when given a certificate.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import ssl
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..config import HttpConfig
from ..errors import ConfigError, OutputError
from ..secrets import is_loopback, read_secret
from .live import CameraView
from .metrics import RunMetrics

log = logging.getLogger("gapstream.http")

_BOUNDARY = "gapstreamframe"


class LiveServer:
    """Serves the views in a background thread; ``close`` stops it and ends every stream."""

    def __init__(self, cfg: HttpConfig, views: dict[str, CameraView], metrics: RunMetrics) -> None:
        token = read_secret(cfg.token, cfg.token_file, "http.token")
        if not is_loopback(cfg.host) and not token:
            raise ConfigError(f"config key 'http.host': serving on {cfg.host} (beyond this machine) needs "
                              "http.token (${VAR} or http.token_file)")
        self.views, self.metrics, self.token = views, metrics, token
        self.closing = threading.Event()
        handler = type("Handler", (_Handler,), {"app": self})
        assert cfg.port is not None
        try:
            self.httpd = _Server((cfg.host, cfg.port), handler)
        except OSError as exc:
            raise OutputError(f"cannot serve HTTP on {cfg.host}:{cfg.port}: {exc.strerror}") from None
        self.scheme = "http"
        if cfg.tls_cert:
            try:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
            except (OSError, ssl.SSLError) as exc:
                self.httpd.server_close()
                raise ConfigError(f"config key 'http.tls_cert': cannot load {cfg.tls_cert} / {cfg.tls_key}: "
                                  f"{exc}") from None
            # The handshake then happens in the request's thread, so a client that connects and
            # says nothing cannot hold up the accept loop.
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True,
                                                do_handshake_on_connect=False)
            self.scheme = "https"
        elif not is_loopback(cfg.host):
            log.warning("serving plain HTTP on %s: the token crosses the network in clear; "
                        "set http.tls_cert and http.tls_key", cfg.host)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="gapstream-http", daemon=True)
        self._thread.start()
        log.info("live view, /metrics and /healthz on %s://%s:%d/", self.scheme, cfg.host, self.port)

    def close(self) -> None:
        self.closing.set()
        for view in self.views.values():  # wake the MJPEG streams so that they end
            with view.cond:
                view.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A viewer that goes away or fails the TLS handshake is routine: no traceback on stderr.
        log.debug("HTTP request from %s failed", client_address[0], exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    app: LiveServer
    server_version = "gapstream"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if self.app.token and not self._authorized(query):
            self._send(HTTPStatus.UNAUTHORIZED, b"token required\n", "text/plain",
                       {"WWW-Authenticate": 'Bearer realm="gapstream"'})
            return
        parts = [p for p in url.path.split("/") if p]
        if parts == []:
            page = self._page(query.get("token", [""])[0])
            self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
        elif parts == ["metrics"]:
            self._send(HTTPStatus.OK, generate_latest(self.app.metrics.registry), CONTENT_TYPE_LATEST)
        elif parts == ["healthz"]:
            stalled = [v.name for v in self.app.views.values() if v.stalled_for() > v.stall_timeout]
            if stalled:
                self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"stalled: {', '.join(stalled)}\n".encode(),
                           "text/plain")
            else:
                self._send(HTTPStatus.OK, b"ok\n", "text/plain")
        elif parts == ["api", "cameras"]:
            body = json.dumps([v.state() for v in self.app.views.values()]).encode()
            self._send(HTTPStatus.OK, body, "application/json")
        elif len(parts) == 3 and parts[0] == "cameras" and parts[1] in self.app.views:
            view = self.app.views[parts[1]]
            if parts[2] == "latest.jpg":
                self._latest(view)
            elif parts[2] == "stream.mjpg":
                self._stream(view)
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _authorized(self, query: dict[str, list[str]]) -> bool:
        token = self.app.token or ""
        auth = self.headers.get("Authorization", "")
        given = auth[7:] if auth.startswith("Bearer ") else query.get("token", [""])[0]
        return hmac.compare_digest(given.encode(), token.encode())

    def _send(self, status: HTTPStatus, body: bytes, ctype: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _latest(self, view: CameraView) -> None:
        jpeg = view.fresh_jpeg()
        if jpeg is None:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"no frame yet\n", "text/plain", {"Retry-After": "1"})
        else:
            self._send(HTTPStatus.OK, jpeg, "image/jpeg")

    def _stream(self, view: CameraView) -> None:
        """multipart/x-mixed-replace: each new JPEG (at most ``live_fps`` a second) as one part."""
        self.close_connection = True
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        seq = -1
        with view.cond:
            view.watchers += 1
        try:
            while not self.app.closing.is_set():
                with view.cond:
                    if view.seq == seq or view.jpeg is None:
                        view.cond.wait(timeout=1.0)
                    if view.seq == seq or view.jpeg is None:
                        continue
                    jpeg, seq = view.jpeg, view.seq
                self.wfile.write(f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                 f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the viewer went away
        finally:
            with view.cond:
                view.watchers -= 1

    def _page(self, token: str) -> str:
        suffix = f"?token={quote(token)}" if token else ""
        cards = []
        for v in self.app.views.values():
            n = quote(v.name)
            cards.append(
                f'<figure class="cam" id="cam-{html.escape(v.name)}">'
                f'<img src="/cameras/{n}/stream.mjpg{suffix}" alt="{html.escape(v.name)}" width="640">'
                f'<figcaption><b>{html.escape(v.name)}</b> <code>{html.escape(v.source)}</code> '
                f'<span class="state">…</span></figcaption></figure>')
        return _PAGE.replace("{{cards}}", "\n".join(cards)).replace("{{api}}", f"/api/cameras{suffix}")


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>gapstream cameras</title>
<style>body{font-family:sans-serif;margin:1em;background:#222;color:#eee}
.cam{display:inline-block;margin:0 1em 1em 0}img{display:block;background:#000}
.person{color:#f55;font-weight:bold}.stalled{color:#fa0}</style></head>
<body><h1>gapstream cameras</h1>
{{cards}}
<script>
async function refresh() {
  try {
    const cams = await (await fetch("{{api}}")).json();
    for (const c of cams) {
      const el = document.querySelector(`#cam-${CSS.escape(c.name)} .state`);
      if (!el) continue;
      el.textContent = (c.stalled ? "STALLED " : "") + (c.person ? "PERSON" : "clear") +
        ` score ${c.score.toFixed(2)}, ${c.fps.toFixed(1)} fps,` +
        ` last frame ${c.seconds_since_last_frame}s ago`;
      el.className = "state" + (c.person ? " person" : "") + (c.stalled ? " stalled" : "");
    }
  } catch (e) {}
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""
