"""A local HTTP "camera" for tests: MPEG-TS, MJPEG (multipart/x-mixed-replace), and misbehaving servers."""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2

from tests.helpers.video import synthetic_frame


class HttpCamera:
    """Routes: ``/cam.ts`` (a TS file sent at ``ts_rate`` bytes/s, then the connection closes),
    ``/mjpeg`` (endless JPEG parts at ``fps``), ``/stall.ts`` (the first ``stall_after`` bytes, then
    silence with the connection open), ``/hang.ts`` (headers, then silence)."""

    def __init__(self, ts_file: Path | None = None, fps: int = 20, stall_after: int = 40_000) -> None:
        self.ts_bytes = ts_file.read_bytes() if ts_file else b""
        self.fps = fps
        self.stall_after = stall_after
        self.closing = threading.Event()
        self.requests: list[str] = []
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                camera.requests.append(self.path)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    camera.route(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(self, req: BaseHTTPRequestHandler) -> None:
        if req.path == "/cam.ts":
            self._headers(req, "video/mp2t")
            for i in range(0, len(self.ts_bytes), 18_800):
                req.wfile.write(self.ts_bytes[i : i + 18_800])
                req.wfile.flush()
                if self.closing.wait(0.01):
                    return
        elif req.path == "/stall.ts":
            self._headers(req, "video/mp2t")
            req.wfile.write(self.ts_bytes[: self.stall_after])
            req.wfile.flush()
            self.closing.wait(60)
        elif req.path == "/hang.ts":
            self._headers(req, "video/mp2t")
            self.closing.wait(60)
        elif req.path == "/mjpeg":
            self._headers(req, "multipart/x-mixed-replace; boundary=frame")
            index = 0
            while not self.closing.is_set():
                ok, jpeg = cv2.imencode(".jpg", synthetic_frame(index, 320, 180))
                assert ok
                part = jpeg.tobytes()
                req.wfile.write(
                    b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(part)
                    + part
                    + b"\r\n"
                )
                req.wfile.flush()
                index += 1
                time.sleep(1 / self.fps)
        else:
            req.send_error(404)

    @staticmethod
    def _headers(req: BaseHTTPRequestHandler, content_type: str) -> None:
        req.send_response(200)
        req.send_header("Content-Type", content_type)
        req.send_header("Cache-Control", "no-cache")
        req.end_headers()

    def __enter__(self) -> HttpCamera:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()
