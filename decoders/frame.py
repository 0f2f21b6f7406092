"""What a decoder hands to its group: one sampled frame, already at model input size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ModelInput:
    """The geometry and colour order the detector expects; decoders resize to it."""

    width: int = 416
    height: int = 416
    color: str = "bgr"  # "bgr" or "rgb"
    fill: int = 114


@dataclass(frozen=True)
class DecodedFrame:
    camera_id: str
    frame_index: int  # index of the frame in the decoded stream (restarts at 0 on loop/reconnect)
    pts_s: float  # presentation time in seconds
    capture_ts: float  # wall-clock time.time() when the frame was decoded (start of latency)
    image: np.ndarray  # (model_h, model_w, 3) uint8 letterboxed, in ModelInput.color order
    scale: float  # letterbox scale: original pixels = model pixels / scale
    width: int  # original frame width
    height: int  # original frame height
    keyframe: bool = False
    full_frame: np.ndarray | None = None  # (height, width, 3) BGR, kept only when second stages need crops
