"""YOLOX output decoding: raw ``[N, A, 5 + C]`` grid predictions -> ``Detections`` per image.

Layout (SOURCES.md): A = sum over strides 8, 16, 32 of (H/s) * (W/s) cells, stride by stride, each grid
row-major (y outer, x inner). Per cell ``[dx, dy, log_w, log_h, objectness, C class scores]``, sigmoids
already applied. ``cx = (dx + gx) * s``, ``w = exp(log_w) * s``; score = objectness * class score.

Like YOLOX's own ``postprocess``, each cell proposes one box with its best class; boxes come out in
model-input pixels (the caller divides by the letterbox scale).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from models.detections import Detections
from models.nms import batched_nms
from models.spec import ModelSpec

STRIDES = (8, 16, 32)


@lru_cache(maxsize=8)
def yolox_grid(input_width: int, input_height: int, strides: tuple[int, ...] = STRIDES) -> np.ndarray:
    """``(A, 3)`` float32 rows ``gx, gy, stride`` in the model's cell order (read-only, cached)."""
    parts = []
    for s in strides:
        gy, gx = np.mgrid[: input_height // s, : input_width // s]
        parts.append(np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, s)], axis=1))
    grid = np.concatenate(parts).astype(np.float32)
    grid.setflags(write=False)
    return grid


@dataclass(frozen=True)
class YoloxDecoder:
    input_width: int
    input_height: int
    score_threshold: float = 0.35
    nms_iou: float = 0.45
    max_detections: int = 300
    agnostic_groups: Mapping[str, Sequence[int]] = field(default_factory=dict)
    strides: tuple[int, ...] = STRIDES

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> YoloxDecoder:
        return cls(
            input_width=spec.input_width,
            input_height=spec.input_height,
            score_threshold=spec.score_threshold,
            nms_iou=spec.nms_iou,
            max_detections=spec.max_detections,
            agnostic_groups=dict(spec.agnostic_groups),
        )

    def __call__(self, raw: np.ndarray) -> list[Detections]:
        """Decode a batch of raw outputs; one ``Detections`` per image, best score first."""
        grid = yolox_grid(self.input_width, self.input_height, self.strides)
        if raw.ndim != 3 or raw.shape[1] != len(grid) or raw.shape[2] < 6:
            raise ValueError(
                f"YOLOX output must have shape (N, {len(grid)}, 5 + classes) for a "
                f"{self.input_width}x{self.input_height} input, got {raw.shape}"
            )
        # A class score is at most 1, so objectness alone rules out most cells before the
        # (A x C) class work: typically a few dozen of 3549 cells survive.
        candidates = raw[..., 4] >= self.score_threshold
        return [self._decode_image(raw[i][candidates[i]], grid[candidates[i]]) for i in range(len(raw))]

    def _decode_image(self, cells: np.ndarray, grid: np.ndarray) -> Detections:
        class_id = cells[:, 5:].argmax(axis=1)
        score = cells[:, 4] * cells[np.arange(len(cells)), 5 + class_id]
        keep = score >= self.score_threshold
        if not keep.any():
            return Detections.empty()
        cells, grid, class_id, score = cells[keep], grid[keep], class_id[keep], score[keep]
        stride = grid[:, 2:3]
        centre = (cells[:, :2] + grid[:, :2]) * stride
        half = np.exp(np.minimum(cells[:, 2:4], 20.0)) * stride / 2  # clip: garbage must not give inf
        xyxy = np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)
        kept = batched_nms(xyxy, score, class_id, self.nms_iou, self.agnostic_groups)[: self.max_detections]
        return Detections(xyxy[kept], score[kept].astype(np.float32), class_id[kept].astype(np.int32))
