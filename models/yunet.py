"""YuNet face detection (OpenCV Zoo 2023mar): letterbox pre-processing and output decoding.

Why our own decode rather than ``cv2.FaceDetectorYN``: FaceDetectorYN runs OpenCV's DNN module on the
CPU, one image per call. Decoding the raw outputs ourselves lets YuNet run on the same backends as every
other model (TensorRT, PyTorch CUDA, ONNX Runtime) and run many person crops in one batched call. The
cost is a fixed 640x640 input (the graph fixes it), hence the letterbox. SOURCES.md measured this decode
against FaceDetectorYN: same face counts, scores within 0.02.

Input ``float32 [N, 3, 640, 640]``, BGR 0-255; the image is scaled by ``min(640/w, 640/h)`` (capped by
``max_upscale`` so a tiny crop is not blown up into noise) and pasted top-left on zeros. Outputs,
for strides 8, 16, 32 with ``(640/s)^2`` cells each, row-major: ``cls, obj [N, cells, 1]``,
``bbox [N, cells, 4]``, ``kps [N, cells, 10]``; the graph's output order is cls_8, cls_16, cls_32,
obj_*, bbox_*, kps_*. Score ``sqrt(clip(cls) * clip(obj))``; ``cx = (col + b0) * s``,
``w = exp(b2) * s``; landmark ``j = ((k[2j] + col) * s, (k[2j+1] + row) * s)`` in the order
right eye, left eye, nose tip, right and left mouth corner
(the subject's right eye is the one on the image's left). NMS at IoU 0.3.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from models.nms import nms

YUNET_SIZE = 640
STRIDES = (8, 16, 32)


@lru_cache(maxsize=2)
def yunet_grid(size: int = YUNET_SIZE) -> np.ndarray:
    """``(A, 3)`` rows ``col, row, stride`` over the three strides in output order (read-only)."""
    parts = []
    for s in STRIDES:
        rows, cols = np.mgrid[: size // s, : size // s]
        parts.append(np.stack([cols.ravel(), rows.ravel(), np.full(cols.size, s)], axis=1))
    grid = np.concatenate(parts).astype(np.float32)
    grid.setflags(write=False)
    return grid


def yunet_preprocess(images: list[np.ndarray], max_upscale: float = 4.0) -> tuple[np.ndarray, list[float]]:
    """BGR uint8 images -> ``float32 [N, 3, 640, 640]`` top-left letterbox on zeros, and each scale."""
    batch = np.zeros((len(images), YUNET_SIZE, YUNET_SIZE, 3), np.uint8)
    scales = []
    for index, image in enumerate(images):
        height, width = image.shape[:2]
        scale = min(YUNET_SIZE / width, YUNET_SIZE / height, max_upscale)
        new_w, new_h = (
            max(1, min(YUNET_SIZE, round(width * scale))),
            max(1, min(YUNET_SIZE, round(height * scale))),
        )
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        batch[index, :new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
        scales.append(scale)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32), scales


@dataclass(frozen=True)
class Faces:
    """Faces in one image: ``xyxy (K, 4)``, ``scores (K,)``, ``landmarks (K, 5, 2)`` in image pixels."""

    xyxy: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Faces:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))


@dataclass(frozen=True)
class YunetDecoder:
    score_threshold: float = 0.6
    nms_iou: float = 0.3
    max_faces: int = 50

    def __call__(
        self, outputs: list[np.ndarray], scales: list[float], sizes: list[tuple[int, int]]
    ) -> list[Faces]:
        """Decode the 12 outputs for images of ``(width, height)`` ``sizes`` letterboxed by ``scales``."""
        if len(outputs) != 12:
            raise ValueError(f"YuNet has 12 outputs (cls, obj, bbox, kps per stride), got {len(outputs)}")
        n = len(scales)
        cls, obj, bbox, kps = (
            np.concatenate([np.asarray(o).reshape(n, -1, w) for o in outputs[i : i + 3]], axis=1)
            for i, w in ((0, 1), (3, 1), (6, 4), (9, 10))
        )
        grid = yunet_grid()
        if cls.shape[1] != len(grid):
            raise ValueError(f"YuNet outputs have {cls.shape[1]} cells, a 640x640 input gives {len(grid)}")
        scores = np.sqrt(np.clip(cls[..., 0], 0, 1) * np.clip(obj[..., 0], 0, 1))
        return [self._decode_image(scores[i], bbox[i], kps[i], grid, scales[i], sizes[i]) for i in range(n)]

    def _decode_image(
        self,
        scores: np.ndarray,
        bbox: np.ndarray,
        kps: np.ndarray,
        grid: np.ndarray,
        scale: float,
        size: tuple[int, int],
    ) -> Faces:
        keep = np.flatnonzero(scores >= self.score_threshold)
        if keep.size == 0:
            return Faces.empty()
        cells, stride = grid[keep, :2], grid[keep, 2:3]
        centre = (cells + bbox[keep, :2]) * stride
        half = np.exp(np.minimum(bbox[keep, 2:4], 20.0)) * stride / 2
        xyxy = np.concatenate([centre - half, centre + half], axis=1) / scale
        landmarks = ((kps[keep].reshape(-1, 5, 2) + cells[:, None, :]) * stride[:, None, :]) / scale
        kept = nms(xyxy, scores[keep], self.nms_iou)[: self.max_faces]
        width, height = size
        xyxy = np.clip(xyxy[kept], 0, [width, height, width, height])
        return Faces(
            xyxy.astype(np.float32), scores[keep][kept].astype(np.float32), landmarks[kept].astype(np.float32)
        )
