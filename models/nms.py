"""Non-maximum suppression in numpy: the same code behind every backend.

``batched_nms`` suppresses within each class, except that classes listed together in one agnostic
group suppress each other (car/truck/bus/motorbike for one vehicle). It uses the usual offset trick:
each NMS key's boxes are shifted into their own region of the plane, so one greedy pass never lets
boxes of different keys overlap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


def box_area(xyxy: np.ndarray) -> np.ndarray:
    return np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` xyxy boxes -> ``(N, M)``; 0 where both areas are 0."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS; indices of the kept boxes, highest score first (ties keep the earlier box)."""
    order = np.argsort(-scores, kind="stable")
    boxes = np.asarray(xyxy, np.float64)[order]
    areas = box_area(boxes)
    keep: list[int] = []
    alive = np.arange(len(order))  # positions in ``order`` not yet kept or suppressed
    while alive.size:
        best, rest = alive[0], alive[1:]
        keep.append(int(order[best]))
        top_left = np.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        alive = rest[iou <= iou_threshold]
    return np.asarray(keep, np.int64)


def group_keys(class_ids: np.ndarray, agnostic_groups: Iterable[Iterable[int]] = ()) -> np.ndarray:
    """The NMS key of each row: its class id, or one shared key for every class of an agnostic group."""
    class_ids = np.asarray(class_ids, np.int64)
    keys = class_ids.copy()
    for group in agnostic_groups:
        members = np.asarray(list(group), np.int64)
        if members.size:
            # A key no real class uses: below zero, one per group.
            keys[np.isin(class_ids, members)] = -1 - int(members.min())
    return keys


def batched_nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    iou_threshold: float,
    agnostic_groups: Mapping[str, Iterable[int]] | Iterable[Iterable[int]] = (),
) -> np.ndarray:
    """Per-class NMS, merged across the classes of each agnostic group; kept indices, best first."""
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    groups = agnostic_groups.values() if isinstance(agnostic_groups, Mapping) else agnostic_groups
    keys = group_keys(class_ids, groups)
    _, dense = np.unique(keys, return_inverse=True)
    # float64 so the shift (up to keys x span) costs no precision in the IoU.
    xyxy = np.asarray(xyxy, np.float64)
    span = float(np.abs(xyxy).max()) * 2 + 1  # wider than any box, so shifted keys never overlap
    shifted = xyxy + (dense.reshape(-1) * span)[:, None]
    return nms(shifted, np.asarray(scores), iou_threshold)
