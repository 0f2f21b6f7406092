"""One detections type with numpy columns, shared by every model and stage.

Boxes are ``xyxy`` in pixels of the image the detector was asked about (the original frame once
``scaled`` has been applied). Indexing with a boolean mask or an index array selects rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Detections:
    xyxy: np.ndarray  # (N, 4) float32
    confidence: np.ndarray  # (N,) float32
    class_id: np.ndarray  # (N,) int32
    data: dict[str, np.ndarray] = field(default_factory=dict)  # extra per-row columns

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must have shape (N, 4), got {self.xyxy.shape}")
        for name, column in (("confidence", self.confidence), ("class_id", self.class_id)):
            if column.shape != (n,):
                raise ValueError(
                    f"{name} must have shape ({n},) like xyxy {self.xyxy.shape}, got {column.shape}"
                )
        for name, column in self.data.items():
            if len(column) != n:
                raise ValueError(f"data[{name!r}] has {len(column)} rows, xyxy has {n}")

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    @classmethod
    def from_array(cls, rows: np.ndarray) -> Detections:
        """From an ``(N, 6)`` array of ``x1, y1, x2, y2, score, class_id`` (the wire format)."""
        rows = np.asarray(rows, np.float32).reshape(-1, 6)
        return cls(rows[:, :4].copy(), rows[:, 4].copy(), rows[:, 5].astype(np.int32))

    def to_array(self) -> np.ndarray:
        """The compact ``(N, 6)`` float32 wire format used between Serve replicas and groups."""
        return np.concatenate(
            [self.xyxy, self.confidence[:, None], self.class_id[:, None].astype(np.float32)], axis=1
        ).astype(np.float32)

    @classmethod
    def merge(cls, parts: list[Detections]) -> Detections:
        if not parts:
            return cls.empty()
        keys = set(parts[0].data)
        return cls(
            np.concatenate([p.xyxy for p in parts]).astype(np.float32),
            np.concatenate([p.confidence for p in parts]).astype(np.float32),
            np.concatenate([p.class_id for p in parts]).astype(np.int32),
            {k: np.concatenate([p.data[k] for p in parts]) for k in keys},
        )

    def scaled(self, factor: float) -> Detections:
        """Boxes multiplied by ``factor`` (e.g. ``1 / letterbox_scale`` back to original pixels)."""
        return Detections(self.xyxy * np.float32(factor), self.confidence, self.class_id, self.data)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice | list[int]) -> Detections:
        return Detections(
            self.xyxy[index],
            self.confidence[index],
            self.class_id[index],
            {k: v[index] for k, v in self.data.items()},
        )
