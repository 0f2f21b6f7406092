#!/usr/bin/python3
"""A real RTSP server for tests: GStreamer's gst-rtsp-server, run by the SYSTEM python3 (needs ``gi``).

    /usr/bin/python3 tests/helpers/rtsp_server.py --port 8554 [--path /cam1] [--file CLIP.mp4]

Without ``--file`` it serves a live generated H.264 stream (``videotestsrc`` -> ``x264enc``, keyframe
every second) forever. With ``--file`` it serves an H.264 MP4, looped with segment seeks. Prints
``READY <port>`` on stdout once it listens. Debian packages: gir1.2-gst-rtsp-server-1.0, python3-gi,
gstreamer1.0-plugins-base, -good (rtp, qtdemux), -bad (h264parse), -ugly (x264enc).

The venv's Python cannot import ``gi``; ``RtspServerProcess`` (importable from the venv, stdlib only)
starts this script as a child process, waits for READY, and can kill, freeze (SIGSTOP) and resume it.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = Path(__file__).resolve()

LIVE_LAUNCH = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width={width},height={height},framerate={fps}/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} threads=1 "
    "! video/x-h264,profile=constrained-baseline ! rtph264pay name=pay0 pt=96 config-interval=1 )"
)
FILE_LAUNCH = (
    "( filesrc location={file} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


def gstreamer_missing() -> str | None:
    """None if this machine can run the server, else the reason (for ``pytest.skip``)."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} not found"
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "missing = [e for e in ('videotestsrc', 'x264enc', 'rtph264pay', 'qtdemux', 'h264parse')"
        " if Gst.ElementFactory.find(e) is None]; print(','.join(missing))"
    )
    try:
        out = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot probe GStreamer: {exc}"
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return (
            "GStreamer RTSP server unavailable (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 "
            f"gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad "
            f"gstreamer1.0-plugins-ugly): {last}"
        )
    if out.stdout.strip():
        return f"GStreamer elements missing: {out.stdout.strip()}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RtspServerProcess:
    """The server as a child process of the test (stdlib only, so the venv can import it)."""

    def __init__(self, port: int | None = None, path: str = "/cam1", file: Path | None = None, fps: int = 15):
        self.port = port or free_port()
        self.path = path
        self.file = file
        self.fps = fps
        self.proc: subprocess.Popen | None = None

    def url(self, userinfo: str = "") -> str:
        return f"rtsp://{userinfo}127.0.0.1:{self.port}{self.path}"

    def start(self, timeout: float = 20.0) -> RtspServerProcess:
        cmd = [
            SYSTEM_PYTHON,
            str(SCRIPT),
            "--port",
            str(self.port),
            "--path",
            self.path,
            "--fps",
            str(self.fps),
        ]
        if self.file is not None:
            cmd += ["--file", str(self.file)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("READY"):
                    return self
                if not line:  # EOF: the server died
                    break
            if self.proc.poll() is not None:
                break
        self.kill()
        raise RuntimeError(f"RTSP server did not start on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen process must be able to die
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing is sent (a hung camera)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def __enter__(self) -> RtspServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()


def serve(port: int, path: str, file: str | None, fps: int, width: int, height: int) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)

    class LoopingMedia(GstRtspServer.RTSPMedia):
        """Plays the file again from the start at its end (segment seeks: no EOS, no gap)."""

        def do_prepared(self) -> None:
            self.get_element().seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT, 0)

        def do_handle_message(self, message: Gst.Message) -> bool:
            if message.type == Gst.MessageType.SEGMENT_DONE:
                self.get_element().seek_simple(Gst.Format.TIME, Gst.SeekFlags.SEGMENT, 0)
                return True
            return GstRtspServer.RTSPMedia.do_handle_message(self, message)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    if file:
        factory.set_launch(FILE_LAUNCH.format(file=file))
        factory.set_media_gtype(LoopingMedia)
    else:
        factory.set_launch(LIVE_LAUNCH.format(width=width, height=height, fps=fps))
    factory.set_shared(True)
    server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {port}", file=sys.stderr)
        sys.exit(2)
    print(f"READY {port}", flush=True)
    GLib.MainLoop().run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--path", default="/cam1")
    parser.add_argument("--file", help="H.264 MP4 to serve in a loop (default: a live generated stream)")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    args = parser.parse_args()
    if args.file and not os.path.exists(args.file):
        sys.exit(f"no such file: {args.file}")
    serve(args.port, args.path, args.file, args.fps, args.width, args.height)


if __name__ == "__main__":
    main()
