"""LPD-YuNet licence-plate detection: priors, pre-processing and decoding (the zoo's ``lpd_yunet.py``).

The model takes the whole crop resized (no letterbox) to ``320x240`` BGR 0-255 and predicts, for each
of 4385 prior boxes, a score and the four plate corners. Priors: feature maps ``[60,80]`` then halved
four times to ``[30,40] [15,20] [7,10] [3,5]`` with steps 8, 16, 32, 64 and min sizes
``[[10,16,24],[32,48],[64,96],[128,192,256]]``, iterated row, column, min size. Score
``sqrt(conf[:,1] * clip(iou,0,1))``; corner ``a`` is ``(prior_xy + loc[:,a:a+2] * 0.1 * prior_wh) * (W,H)``
for ``a = 4, 6, 10, 12`` (top-left, top-right, bottom-right, bottom-left). NMS (IoU 0.3) runs on the
corners' bounding rectangles.

The graph fixes batch 1 and flattens its outputs to ``[4385, k]``; the batch-dynamic rewrite
(``models.onnx_batch``) and the loop mode both return ``[N*4385, k]`` image by image, so the decoder
reshapes to ``[N, 4385, k]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from models.nms import nms

LPD_WIDTH = 320
LPD_HEIGHT = 240
_MIN_SIZES = ((10.0, 16.0, 24.0), (32.0, 48.0), (64.0, 96.0), (128.0, 192.0, 256.0))
_STEPS = (8, 16, 32, 64)
_VARIANCE = 0.1
_CORNER_COLUMNS = (4, 6, 10, 12)


@lru_cache(maxsize=4)
def lpd_priors(width: int = LPD_WIDTH, height: int = LPD_HEIGHT) -> np.ndarray:
    """``(P, 4)`` float32 priors ``cx, cy, w, h`` relative to the input size (read-only, cached)."""
    maps = [(int(int((height + 1) / 2) / 2), int(int((width + 1) / 2) / 2))]  # [60, 80]: stem, no priors
    for _ in _STEPS:
        maps.append((maps[-1][0] // 2, maps[-1][1] // 2))
    maps = maps[1:]
    rows = []
    for (map_h, map_w), step, sizes in zip(maps, _STEPS, _MIN_SIZES, strict=True):
        i, j, m = np.meshgrid(np.arange(map_h), np.arange(map_w), np.asarray(sizes), indexing="ij")
        rows.append(
            np.stack(
                [(j + 0.5) * step / width, (i + 0.5) * step / height, m / width, m / height], axis=-1
            ).reshape(-1, 4)
        )
    priors = np.concatenate(rows).astype(np.float32)
    priors.setflags(write=False)
    return priors


def lpd_preprocess(crops: list[np.ndarray]) -> np.ndarray:
    """BGR ``uint8 (h, w, 3)`` crops -> ``float32 [N, 3, 240, 320]`` (plain resize, raw 0-255)."""
    resized = [cv2.resize(c, (LPD_WIDTH, LPD_HEIGHT), interpolation=cv2.INTER_LINEAR) for c in crops]
    return np.ascontiguousarray(np.stack(resized).transpose(0, 3, 1, 2), dtype=np.float32)


@dataclass(frozen=True)
class PlateQuads:
    """Plates found in one crop: ``corners (K, 4, 2)`` in crop pixels (TL, TR, BR, BL), ``scores (K,)``."""

    corners: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class LpdDecoder:
    score_threshold: float = 0.5  # the zoo uses 0.9 for Chinese plates; 0.5 for others (SOURCES.md)
    nms_iou: float = 0.3
    max_plates: int = 1

    def __call__(self, outputs: list[np.ndarray], sizes: list[tuple[int, int]]) -> list[PlateQuads]:
        """Decode backend outputs ``[loc, conf, iou]`` for crops of ``(width, height)`` ``sizes``."""
        priors = lpd_priors()
        n, p = len(sizes), len(priors)
        loc, conf, iou = (np.asarray(o, np.float32).reshape(n, p, -1) for o in outputs[:3])
        scores = np.sqrt(conf[..., 1] * np.clip(iou[..., 0], 0.0, 1.0))
        out = []
        for index, (width, height) in enumerate(sizes):
            keep = np.flatnonzero(scores[index] >= self.score_threshold)
            if keep.size == 0:
                out.append(PlateQuads(np.zeros((0, 4, 2), np.float32), np.zeros(0, np.float32)))
                continue
            prior = priors[keep]
            corners = np.stack(
                [
                    prior[:, :2] + loc[index, keep, a : a + 2] * _VARIANCE * prior[:, 2:]
                    for a in _CORNER_COLUMNS
                ],
                axis=1,
            ) * np.array([width, height], np.float32)
            rects = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
            kept = nms(rects, scores[index, keep], self.nms_iou)[: self.max_plates]
            out.append(
                PlateQuads(corners[kept].astype(np.float32), scores[index, keep][kept].astype(np.float32))
            )
        return out
