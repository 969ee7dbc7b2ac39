# gapstream for camera operators: person events, MQTT, /metrics and the live view.
#
#   docker build -t gapstream .
#   docker run -d --name gapstream --restart unless-stopped --network host --shm-size=256m \
#       -e CAM_PASSWORD -e MQTT_PASSWORD -v /srv/gapstream:/data \
#       gapstream run --config /app/configs/cameras-4.yaml
#
# /dev/shm: every camera has a ring of `buffers.live_frame_slots` (6) frames sized
# source.max_width x max_height x 3 bytes (1920x1080 by default: 37 MB a camera), plus a small
# maps ring. Four cameras need about 150 MB; Docker's default of 64 MB is too small, hence
# --shm-size=256m (or set source.max_width/max_height to 1280x720: 17 MB a camera).
# --network host keeps the HTTP server on the host's 127.0.0.1 (its default) and lets the
# container reach cameras and a local broker; to publish a port instead, set http.host: 0.0.0.0,
# http.token: ${GAPSTREAM_HTTP_TOKEN} and preferably http.tls_cert/tls_key.
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

WORKDIR /app
# The wheels bring their own FFmpeg (PyAV), OpenCV (headless) and TFLite (ai-edge-litert).
COPY setup.cfg pyproject.toml README.md ./
COPY gapstream ./gapstream
COPY models ./models
COPY configs ./configs
# Editable, so that the shipped models are found beside the package (gapstream/paths.py).
RUN pip install -e '.[runtime]' && gapstream --version

RUN useradd --system --uid 10001 --home-dir /data gapstream && mkdir -p /data && chown gapstream /data
USER gapstream
WORKDIR /data
VOLUME /data

# Works with the HTTP server on port 8080 (as in configs/cameras-4.yaml); sends the token if set.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s CMD python -c "import os, urllib.request; \
t = os.environ.get('GAPSTREAM_HTTP_TOKEN'); \
urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:8080/healthz', \
headers={'Authorization': 'Bearer ' + t} if t else {}), timeout=4)"

# SIGTERM stops the pipeline cleanly (exit 130 after flushing).
STOPSIGNAL SIGTERM
ENTRYPOINT ["gapstream"]
CMD ["run", "--config", "/app/configs/cameras-4.yaml"]
