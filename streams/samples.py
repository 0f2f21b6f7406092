"""Deterministic synthetic messages for tests, benchmarks and demos (marked ``simulated``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.detections import Detections
from streams.schema import DetectionMessage

CLASS_NAMES = ("person", "bicycle", "car", "motorcycle", "bus", "truck")
_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: fixed so that payloads are reproducible


@dataclass(frozen=True)
class _Frame:
    camera_id: str
    frame_index: int
    pts_s: float
    capture_ts: float
    width: int = 1920
    height: int = 1080


def synthetic_message(camera_id: str, seq: int, detections: int = 5, seed: int = 0) -> DetectionMessage:
    """One 1080p frame's worth of plausible detections; the same arguments give the same message."""
    rng = np.random.default_rng([seed, seq, detections, *camera_id.encode()])
    corner = rng.uniform(0, 1700, (detections, 2))
    size = rng.uniform(20, 220, (detections, 2))
    found = Detections(
        np.concatenate([corner, corner + size], axis=1).astype(np.float32),
        rng.uniform(0.25, 1.0, detections).astype(np.float32),
        rng.integers(0, len(CLASS_NAMES), detections).astype(np.int32),
    )
    frame = _Frame(camera_id, frame_index=seq * 12, pts_s=seq * 0.5, capture_ts=_EPOCH + seq * 0.5)
    return DetectionMessage.from_detections(
        found, CLASS_NAMES, frame, seq=seq, model="yolox_nano", backend="onnxruntime-cpu", simulated=True
    )


def synthetic_batch(
    cameras: int, per_camera: int, detections: int = 5, first_seq: int = 0
) -> list[DetectionMessage]:
    """``per_camera`` messages for each of ``cameras`` cameras ``cam-0000``..., interleaved like a group's."""
    return [
        synthetic_message(f"cam-{c:04d}", seq, detections)
        for seq in range(first_seq, first_seq + per_camera)
        for c in range(cameras)
    ]
