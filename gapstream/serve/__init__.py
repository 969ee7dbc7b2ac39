"""The HTTP side of a run: live view (MJPEG, latest.jpg, a camera page), /metrics and /healthz."""
