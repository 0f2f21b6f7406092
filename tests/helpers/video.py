"""Real H.264 test streams made with PyAV's own libx264 (no system ffmpeg needed)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def synthetic_frame(index: int, width: int, height: int) -> np.ndarray:
    """A BGR frame with a moving square and a gradient: cheap to make, not trivial to compress."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (x * 255 // max(1, width - 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // max(1, height - 1)).astype(np.uint8)
    img[..., 2] = (index * 7) % 256
    side = max(4, min(width, height) // 4)
    x0 = (index * 5) % max(1, width - side)
    y0 = (index * 3) % max(1, height - side)
    img[y0 : y0 + side, x0 : x0 + side] = 255
    return img


def make_h264(
    path: Path,
    frames: int = 50,
    size: tuple[int, int] = (160, 120),
    fps: int = 10,
    gop: int = 10,
    bframes: int = 0,
    start_index: int = 0,
) -> Path:
    """Encode ``frames`` synthetic frames as H.264 (container from the suffix: .mp4, .ts, .mkv, .h264).

    Keyframes exactly every ``gop`` frames (scene-cut detection off), constant ``fps``.
    """
    width, height = size
    fmt = {".h264": "h264", ".ts": "mpegts"}.get(path.suffix)
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {
            "preset": "ultrafast",
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
            "bf": str(bframes),
            "threads": "1",
        }
        for i in range(frames):
            image = synthetic_frame(start_index + i, width, height)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def keyframe_times(path: Path) -> list[float]:
    """Presentation times (s) of the keyframes, from a full decode."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate)
        return [
            float(f.time) if f.time is not None else i / rate
            for i, f in enumerate(container.decode(stream))
            if f.key_frame
        ]
