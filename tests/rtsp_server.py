#!/usr/bin/python3
"""A tiny live H.264 RTSP server for the tests (GStreamer RTSP server through python3-gi).

Run it with Debian's system python, which has ``gi`` (the virtualenv does not):

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --path /cam

It binds to 127.0.0.1 only, prints ``READY`` on stdout once it is serving, and exits
cleanly (status 0) on SIGTERM or SIGINT. It serves GStreamer's moving-ball test pattern, or
with ``--frames 'dir/%04d.jpg'`` a numbered sequence of JPEG images, looped forever at
``--fps`` (benchmarks/cameras.py serves frames of a clip with persons this way).
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch_line(width: int, height: int, fps: int, frames: str = "") -> str:
    if frames:  # paced by the server's sinks (the source is not live), across the loops too
        src = (f"multifilesrc location=\"{frames}\" loop=true caps=image/jpeg,framerate={fps}/1 "
               f"! jpegdec ! videoconvert ! videoscale ! video/x-raw,width={width},height={height} ")
    else:
        src = (f"videotestsrc is-live=true pattern=ball "
               f"! video/x-raw,width={width},height={height},framerate={fps}/1 ")
    return (
        f"( {src}"
        f"! videoconvert ! video/x-raw,format=I420 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={max(fps, 1)} bframes=0 "
        f"! video/x-h264,profile=baseline "
        f"! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--path", default="/cam", help="mount point, e.g. /cam")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=240)
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--frames", default="", help="serve these numbered JPEG files, looped "
                    "(a multifilesrc location such as frames/%%04d.jpg) instead of the test pattern")
    args = ap.parse_args()
    path = args.path if args.path.startswith("/") else "/" + args.path

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.width, args.height, args.fps, args.frames))
    factory.set_shared(True)
    server.get_mount_points().add_factory(path, factory)

    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1

    def quit_(*_: object) -> bool:
        loop.quit()
        return GLib.SOURCE_REMOVE

    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, quit_)
    print(f"READY rtsp://127.0.0.1:{args.port}{path}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
