"""FaceAnalyzer: YuNet faces in person crops or whole frames, 5-point alignment, embeddings, watchlist.

Chain per batch of BGR images (person crops cut from full-resolution frames, or whole frames): YuNet
finds faces and 5 landmarks (``models.yunet``, one batched backend call); each face with both eyes in
view and at least ``min_face_px`` wide is aligned to 112x112 with a similarity transform onto the
ArcFace template (``cv2.estimateAffinePartial2D``); an ArcFace-style ONNX model (configured; none is
shipped) turns all aligned faces into L2-normalised embeddings in one call; the gallery
(``models.face_gallery``) reports watchlist matches by cosine similarity.

Privacy and retention. Faces run only on cameras whose ``CameraSpec.faces`` is true. This class keeps
nothing between calls: no crops, no embeddings. Embeddings leave it only inside the returned results;
whether they go any further (into stream messages) is ``SecondStageConfig.face_embeddings`` in
``cluster.second_stage``, off by default. The watchlist file is the only stored face data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.backends.base import BackendConfigBase, InferenceBackend
from models.backends.registry import create_backend
from models.data import DataLocator
from models.face_gallery import FaceGallery, GalleryMatch, l2_normalise
from models.yunet import Faces, YunetDecoder, yunet_preprocess

BackendSetting = BackendConfigBase | Mapping[str, Any] | str | None

# InsightFace's ArcFace destination for a 112x112 crop: eyes, nose tip, mouth corners (image left first).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float32,
)
ALIGNED_SIZE = 112


class FaceEmbedderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(description="ONNX embedding model: an absolute path or a data-relative one.")
    color: Literal["rgb", "bgr"] = Field("rgb", description="Channel order the model expects (ArcFace: RGB).")
    layout: Literal["nchw", "nhwc"] = Field("nchw", description="Input layout of the model.")
    mean: float = Field(127.5, description="Subtracted from every pixel value (0-255).")
    std: float = Field(127.5, gt=0, description="Divides every pixel value after the mean.")


class FaceAnalyzerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    detector_file: str = Field(
        "models/face_detection_yunet_2023mar.onnx", description="Data-relative YuNet path."
    )
    score_threshold: float = Field(0.6, ge=0, le=1, description="Face score (the zoo demo uses 0.9).")
    nms_iou: float = Field(0.3, gt=0, le=1, description="IoU for NMS among faces of one image.")
    max_faces: int = Field(50, ge=1, description="Faces kept per image, best first.")
    max_upscale: float = Field(
        4.0, ge=1, description="Largest enlargement of a small crop into the 640x640 input."
    )
    min_face_px: float = Field(
        24.0, ge=0, description="Narrower faces (original pixels) are reported, not embedded."
    )
    embedder: FaceEmbedderConfig | None = Field(None, description="Embedding model; None: detection only.")
    gallery_file: str | None = Field(
        None, description="Watchlist .npz (see models.face_gallery); None: no watchlist."
    )
    match_threshold: float = Field(0.45, ge=-1, le=1, description="Cosine similarity that counts as a match.")


@dataclass(frozen=True)
class FaceResult:
    """One face in one image: box/landmarks in that image's pixels; embedding and match when available."""

    xyxy: np.ndarray  # (4,) float32
    score: float
    landmarks: np.ndarray  # (5, 2) float32
    embedding: np.ndarray | None = None  # (D,) L2-normalised
    match: GalleryMatch | None = None


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """The face warped onto the ArcFace template: ``uint8 (size, size, 3)``, colours as in ``image``."""
    template = ARCFACE_TEMPLATE * (size / ALIGNED_SIZE)
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32), template, method=cv2.LMEDS)
    if matrix is None:  # degenerate landmarks: fall back to the least-squares fit of the same model
        matrix, _ = cv2.estimateAffinePartial2D(
            np.asarray(landmarks, np.float32), template, method=cv2.RANSAC
        )
    if matrix is None:
        raise ValueError(f"cannot align face with landmarks {np.asarray(landmarks).tolist()}")
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


class FaceEmbedder:
    """Aligned 112x112 BGR faces -> L2-normalised embeddings with a configured ArcFace-style model."""

    def __init__(self, backend: InferenceBackend, config: FaceEmbedderConfig) -> None:
        self.backend = backend
        self.config = config

    def preprocess(self, faces: Sequence[np.ndarray]) -> np.ndarray:
        batch = np.stack(list(faces))
        if self.config.color == "rgb":
            batch = batch[..., ::-1]
        batch = (batch.astype(np.float32) - self.config.mean) / self.config.std
        if self.config.layout == "nchw":
            batch = batch.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(batch)

    def embed(self, faces: Sequence[np.ndarray]) -> np.ndarray:
        if not faces:
            return np.zeros((0, 0), np.float32)
        out = self.backend.run(self.preprocess(faces))[0]
        return l2_normalise(np.asarray(out, np.float32).reshape(len(faces), -1))


class FaceAnalyzer:
    def __init__(
        self,
        detector: InferenceBackend,
        config: FaceAnalyzerConfig | None = None,
        embedder: FaceEmbedder | None = None,
        gallery: FaceGallery | None = None,
    ) -> None:
        self.config = config or FaceAnalyzerConfig()
        self.detector_backend = detector
        self.embedder = embedder
        self.gallery = gallery
        self._decode = YunetDecoder(self.config.score_threshold, self.config.nms_iou, self.config.max_faces)

    @classmethod
    def from_config(
        cls,
        config: FaceAnalyzerConfig | None = None,
        backend: BackendSetting = None,
        locator: DataLocator | None = None,
    ) -> FaceAnalyzer:
        config = config or FaceAnalyzerConfig()
        locator = locator or DataLocator.from_env()
        embedder = None
        if config.embedder is not None:
            path = Path(config.embedder.file)
            path = path if path.is_absolute() else locator.resolve(config.embedder.file)
            embedder = FaceEmbedder(create_backend(backend, path), config.embedder)
        gallery = FaceGallery.load(config.gallery_file) if config.gallery_file else None
        if gallery is not None and embedder is None:
            raise ValueError("a watchlist gallery needs an embedder (FaceAnalyzerConfig.embedder)")
        return cls(create_backend(backend, locator.resolve(config.detector_file)), config, embedder, gallery)

    @property
    def backend_name(self) -> str:
        return self.detector_backend.name

    def detect(self, images: Sequence[np.ndarray]) -> list[Faces]:
        """Faces per BGR image, boxes and landmarks in that image's pixels; one YuNet call per batch."""
        if not images:
            return []
        tensor, scales = yunet_preprocess(list(images), self.config.max_upscale)
        return self._decode(
            self.detector_backend.run(tensor), scales, [(i.shape[1], i.shape[0]) for i in images]
        )

    def analyze(self, images: Sequence[np.ndarray]) -> list[list[FaceResult]]:
        """Faces per image with embeddings (if an embedder is configured) and watchlist matches."""
        found = self.detect(images)
        aligned, owners = [], []
        if self.embedder is not None:
            for index, (image, faces) in enumerate(zip(images, found, strict=True)):
                for k in range(len(faces)):
                    if faces.xyxy[k, 2] - faces.xyxy[k, 0] >= self.config.min_face_px:
                        aligned.append(align_face(image, faces.landmarks[k]))
                        owners.append((index, k))
        embeddings = self.embedder.embed(aligned) if aligned else np.zeros((0, 0), np.float32)
        matches: list[GalleryMatch | None] = (
            self.gallery.match(embeddings, self.config.match_threshold)
            if self.gallery is not None and aligned
            else [None] * len(aligned)
        )
        extra = {owner: (embeddings[i], matches[i]) for i, owner in enumerate(owners)}
        return [
            [
                FaceResult(
                    faces.xyxy[k],
                    float(faces.scores[k]),
                    faces.landmarks[k],
                    *extra.get((index, k), (None, None)),
                )
                for k in range(len(faces))
            ]
            for index, faces in enumerate(found)
        ]

    def enroll(self, identity_id: str, images: Sequence[np.ndarray], label: str | None = None) -> np.ndarray:
        """Add the largest face of each image, averaged, to the gallery as ``identity_id``; returns it."""
        if self.embedder is None:
            raise ValueError("enrolling needs an embedder (FaceAnalyzerConfig.embedder)")
        aligned = []
        for image, faces in zip(images, self.detect(images), strict=True):
            if len(faces) == 0:
                continue
            widest = int(np.argmax(faces.xyxy[:, 2] - faces.xyxy[:, 0]))
            aligned.append(align_face(image, faces.landmarks[widest]))
        if not aligned:
            raise ValueError(f"no face found in the {len(images)} enrollment image(s) of {identity_id!r}")
        vector = l2_normalise(self.embedder.embed(aligned).mean(axis=0))
        if self.gallery is None:
            self.gallery = FaceGallery(len(vector))
        self.gallery.add(identity_id, vector, label)
        return vector
