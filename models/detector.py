"""The detector: model spec + inference backend + output decoder, as one plain Python object.

A Ray Serve deployment wraps ``Detector``; decoders already letterbox frames to the model input, so
the hot path is ``detect`` on a ``uint8 [N, H, W, 3]`` batch. ``detect_images`` does the letterbox
itself and returns boxes in original pixels (tests, demos, second-stage crops).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from models.backends.base import BackendConfigBase, InferenceBackend
from models.backends.registry import create_backend
from models.data import DataLocator
from models.detections import Detections
from models.preprocess import letterbox
from models.spec import ModelSpec, get_model_spec, load_class_names
from models.yolox import YoloxDecoder

OutputDecoder = Callable[[np.ndarray], list[Detections]]

# Output decoders by ``ModelSpec.decoder``; the spec's Literal keeps the two in step.
_DECODERS: dict[str, Callable[[ModelSpec], OutputDecoder]] = {"yolox": YoloxDecoder.from_spec}


class Detector:
    def __init__(
        self,
        spec: ModelSpec,
        backend: InferenceBackend,
        class_names: Sequence[str],
        decoder: OutputDecoder | None = None,
    ) -> None:
        self.spec = spec
        self.backend = backend
        self.class_names = tuple(class_names)
        self._decode = decoder or _DECODERS[spec.decoder](spec)

    @classmethod
    def from_spec(
        cls,
        spec: ModelSpec | str,
        locator: DataLocator | None = None,
        backend_config: BackendConfigBase | Mapping[str, Any] | str | None = None,
    ) -> Detector:
        """Resolve the model's files (``DataFileMissing`` says where it looked) and build its backend."""
        spec = get_model_spec(spec) if isinstance(spec, str) else spec
        locator = locator or DataLocator.from_env()
        model_path = locator.resolve(spec.file)
        class_names = load_class_names(locator.resolve(spec.classes_file))
        return cls(spec, create_backend(backend_config, model_path), class_names)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def info(self) -> dict[str, Any]:
        """What a caller needs to prepare frames and label results (the deployment's ``info``)."""
        return {
            "model": self.spec.name,
            "backend": self.backend_name,
            "input_width": self.spec.input_width,
            "input_height": self.spec.input_height,
            "color": self.spec.color,
            "class_names": list(self.class_names),
        }

    def preprocess(self, batch: np.ndarray) -> np.ndarray:
        """``uint8 [N, H, W, 3]`` -> contiguous ``float32 [N, 3, H, W]`` (YOLOX takes raw 0-255)."""
        expected = (self.spec.input_height, self.spec.input_width, 3)
        if batch.ndim != 4 or batch.shape[1:] != expected or batch.dtype != np.uint8:
            raise ValueError(
                f"{self.spec.name} expects a uint8 batch of shape (N, {', '.join(map(str, expected))}), "
                f"got {batch.dtype} {batch.shape}"
            )
        # One pass: the transpose is a view, the cast writes the NCHW copy.
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)

    def detect(self, batch: np.ndarray) -> list[Detections]:
        """Detections per letterboxed image (spec colour order), boxes in model-input pixels."""
        tensor = self.preprocess(batch)
        if len(tensor) == 0:
            return []
        raw = self.backend.run(tensor)[0]
        return [_clipped(d, self.spec.input_width, self.spec.input_height) for d in self._decode(raw)]

    def detect_images(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detections per original BGR ``uint8 (H, W, 3)`` image, boxes in that image's pixels."""
        if not images:
            return []
        boxed = [letterbox(image, self.spec.input_width, self.spec.input_height) for image in images]
        batch = np.stack([canvas for canvas, _ in boxed])
        if self.spec.color == "rgb":
            batch = batch[..., ::-1]
        results = self.detect(batch)
        return [
            _clipped(dets.scaled(1.0 / scale), image.shape[1], image.shape[0])
            for dets, (_, scale), image in zip(results, boxed, images, strict=True)
        ]


def _clipped(dets: Detections, width: int, height: int) -> Detections:
    """Boxes clipped to the image: letterbox padding and the frame's outside are not content."""
    if len(dets) == 0:
        return dets
    limits = np.array([width, height, width, height], np.float32)
    return Detections(np.clip(dets.xyxy, 0, limits), dets.confidence, dets.class_id, dets.data)
