"""PlateReader: licence plates in full-resolution vehicle crops -> text with per-character confidence.

Chain per batch of vehicle crops (one backend call per model per batch, whatever the crop count):
LPD-YuNet finds the plate's four corners in each crop (``models.lpd``), each quad is rectified with a
perspective warp straight to the OCR input size (one warp, no second resize), and ``cct_xs_v1_global``
reads all plates of the batch at once (``models.plate_ocr``). ``recognize`` skips detection for images
that are already plate crops.

Both models run on any ``InferenceBackend`` (TensorRT, PyTorch, ONNX Runtime), chosen by config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.backends.base import BackendConfigBase, InferenceBackend
from models.backends.registry import create_backend
from models.data import DataLocator
from models.lpd import LpdDecoder, PlateQuads, lpd_preprocess
from models.plate_ocr import OCR_HEIGHT, OCR_WIDTH, PlateText, decode_plate_text, ocr_preprocess

BackendSetting = BackendConfigBase | Mapping[str, Any] | str | None


class PlateReaderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    detector_file: str = Field(
        "models/license_plate_detection_lpd_yunet_2023mar.onnx",
        description="Data-relative LPD-YuNet ONNX path.",
    )
    ocr_file: str = Field("models/cct_xs_v1_global.onnx", description="Data-relative plate OCR ONNX path.")
    score_threshold: float = Field(
        0.5, ge=0, le=1, description="Plate detection score; 0.9 suits Chinese plates, 0.5 others."
    )
    nms_iou: float = Field(0.3, gt=0, le=1, description="IoU for NMS among plate candidates of one crop.")
    max_plates_per_crop: int = Field(1, ge=1, le=8, description="Plates kept per vehicle crop, best first.")
    quad_margin: float = Field(
        0.0, ge=0, le=0.5, description="Grow the plate quad by this fraction of its size before rectifying."
    )
    min_text_confidence: float = Field(
        0.0, ge=0, le=1, description="Reads whose weakest character is below this are dropped."
    )


@dataclass(frozen=True)
class PlateRead:
    """One plate in one crop: corners in crop pixels (TL, TR, BR, BL), detector score and its text."""

    corners: np.ndarray  # (4, 2) float32
    detection_score: float
    text: str
    char_confidence: tuple[float, ...]

    @property
    def confidence(self) -> float:
        return min(self.char_confidence, default=0.0)


def grow_quad(corners: np.ndarray, margin: float) -> np.ndarray:
    """Move each corner away from the quad's centre by ``margin`` times its distance."""
    centre = corners.mean(axis=0, keepdims=True)
    return (centre + (corners - centre) * (1.0 + margin)).astype(np.float32)


def rectify_plate(
    image: np.ndarray, corners: np.ndarray, width: int = OCR_WIDTH, height: int = OCR_HEIGHT
) -> np.ndarray:
    """Warp the quad ``corners`` (TL, TR, BR, BL) of ``image`` onto an upright ``width x height`` image."""
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    matrix = cv2.getPerspectiveTransform(np.asarray(corners, np.float32), target)
    return cv2.warpPerspective(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


class PlateReader:
    def __init__(
        self, detector: InferenceBackend, ocr: InferenceBackend, config: PlateReaderConfig | None = None
    ) -> None:
        self.config = config or PlateReaderConfig()
        self.detector_backend = detector
        self.ocr_backend = ocr
        self._decode = LpdDecoder(
            self.config.score_threshold, self.config.nms_iou, self.config.max_plates_per_crop
        )

    @classmethod
    def from_config(
        cls,
        config: PlateReaderConfig | None = None,
        backend: BackendSetting = None,
        locator: DataLocator | None = None,
    ) -> PlateReader:
        config = config or PlateReaderConfig()
        locator = locator or DataLocator.from_env()
        return cls(
            create_backend(backend, locator.resolve(config.detector_file)),
            create_backend(backend, locator.resolve(config.ocr_file)),
            config,
        )

    @property
    def backend_name(self) -> str:
        return self.detector_backend.name

    def detect(self, crops: Sequence[np.ndarray]) -> list[PlateQuads]:
        """Plate quads per BGR crop (``models.lpd.PlateQuads``), one LPD call for the whole batch."""
        if not crops:
            return []
        outputs = self.detector_backend.run(lpd_preprocess(list(crops)))
        return self._decode(outputs, [(c.shape[1], c.shape[0]) for c in crops])

    def recognize(self, plates: Sequence[np.ndarray]) -> list[PlateText]:
        """Text of images that are already plate crops (BGR), one OCR call for the batch."""
        if not plates:
            return []
        return decode_plate_text(self.ocr_backend.run(ocr_preprocess(list(plates)))[0])

    def read(self, crops: Sequence[np.ndarray]) -> list[list[PlateRead]]:
        """Plates read in each BGR vehicle crop; an empty list where none is found or readable."""
        quads = self.detect(crops)
        rectified, owners = [], []
        for index, (crop, found) in enumerate(zip(crops, quads, strict=True)):
            for k in range(len(found)):
                corners = grow_quad(found.corners[k], self.config.quad_margin)
                rectified.append(rectify_plate(crop, corners))
                owners.append((index, k))
        results: list[list[PlateRead]] = [[] for _ in crops]
        for (index, k), text in zip(owners, self.recognize(rectified), strict=True):
            if not text.text or text.confidence < self.config.min_text_confidence:
                continue
            found = quads[index]
            results[index].append(
                PlateRead(found.corners[k], float(found.scores[k]), text.text, text.char_confidence)
            )
        return results
