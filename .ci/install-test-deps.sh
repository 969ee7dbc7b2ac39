#!/usr/bin/env bash
# System packages the tests need beyond the virtualenv: GStreamer's RTSP server for Debian's
# python3 (tests/rtsp_server.py, tests/test_rtsp.py), the FFmpeg command-line tools, the mosquitto
# MQTT broker (tests/test_mqtt.py) and Chromium for the live-view screenshot (tests/test_serve.py).
# Idempotent: does nothing when they are already there. Debian bookworm; root or sudo.
set -euo pipefail

PACKAGES=(
    python3-gi gir1.2-gst-rtsp-server-1.0
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-tools
    ffmpeg
)
# Installed without their recommended packages (a broker and a headless browser are all we need).
LEAN_PACKAGES=(mosquitto chromium)
CHECK="import gi
gi.require_version('Gst', '1.0')
gi.require_version('GstRtspServer', '1.0')
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in ('videotestsrc', 'videoconvert', 'x264enc', 'rtph264pay') if not Gst.ElementFactory.find(e)]
assert not missing, missing"

have_all() {
    [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "$CHECK" >/dev/null 2>&1 && command -v ffmpeg >/dev/null 2>&1 \
        && [ -x /usr/sbin/mosquitto ] && command -v chromium >/dev/null 2>&1
}

if have_all; then
    echo "install-test-deps: GStreamer RTSP server, ffmpeg, mosquitto and chromium already installed"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-deps: apt-get not found; install these (Debian names) by hand: ${PACKAGES[*]} ${LEAN_PACKAGES[*]}" >&2
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install-test-deps: not root and no sudo; as root run: apt-get install ${PACKAGES[*]} ${LEAN_PACKAGES[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() {
    # No recommended packages: they would pull in ImageMagick, GTK and more that no test needs.
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${PACKAGES[@]}" "${LEAN_PACKAGES[@]}"
}

echo "install-test-deps: installing ${PACKAGES[*]} ${LEAN_PACKAGES[*]}"
# Update the package lists only when they are missing or the install fails with the current ones.
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null || ! apt_install; then
    "${SUDO[@]}" apt-get update -q
    apt_install
fi

if ! have_all; then
    echo "install-test-deps: packages installed but the GStreamer RTSP server still does not load:" >&2
    /usr/bin/python3 -c "$CHECK" >&2 || true
    exit 1
fi
echo "install-test-deps: done"
