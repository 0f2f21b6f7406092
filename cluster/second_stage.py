"""Second stages: plate reads and faces from full-resolution crops of a frame's detections.

A DecoderGroup keeps ``DecodedFrame.full_frame`` only for cameras with ``plates`` or ``faces``. After
the detector answers, it hands this module the frames of its micro-batch with their detections in
original pixels; ``SecondStage.process`` cuts vehicle crops (plates) and person crops (faces) with a
small margin, sends **one request per micro-batch** to each second-stage deployment (both in parallel,
split only where a request would exceed the deployment's batch limit), and returns stream messages
with every coordinate mapped back to the original frame.

All Serve calls are in ``ServeSecondStageClient``; ``LocalSecondStageClient`` runs the same models in
process (tests, benchmarks, single-node demos).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from decoders.config import CameraSpec
from decoders.frame import DecodedFrame
from models.detections import Detections
from models.face import FaceAnalyzer, FaceResult
from models.plate import PlateRead, PlateReader
from streams.schema import FaceMatchMessage, PlateReadMessage, SecondStageMessage

log = logging.getLogger(__name__)


class SecondStageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    vehicle_labels: tuple[str, ...] = Field(
        ("car", "motorbike", "motorcycle", "bus", "truck"),
        description="Detector labels whose plates are read.",
    )
    person_labels: tuple[str, ...] = Field(("person",), description="Detector labels searched for faces.")
    vehicle_margin: float = Field(
        0.05, ge=0, le=1, description="Crop margin around a vehicle, fraction of its size."
    )
    person_margin: float = Field(
        0.1, ge=0, le=1, description="Crop margin around a person, fraction of its size."
    )
    min_vehicle_px: int = Field(64, ge=1, description="Narrower vehicles (original pixels) are not read.")
    min_person_px: int = Field(24, ge=1, description="Narrower persons are not searched for faces.")
    min_score: float = Field(0.3, ge=0, le=1, description="Detections below this score get no second stage.")
    max_crops_per_frame: int = Field(16, ge=1, description="Largest detections first; the rest are skipped.")
    faces_in: Literal["persons", "frame"] = Field(
        "persons", description="Search faces in person crops, or in the whole frame."
    )
    face_messages: Literal["matches", "all"] = Field(
        "matches", description="'matches': only watchlist matches produce messages; 'all': every face."
    )
    face_embeddings: bool = Field(
        False, description="Put embeddings into face messages (off: they never leave)."
    )


class SecondStageClient(Protocol):
    async def info(self) -> dict[str, dict[str, Any]]:
        """``{"plates": {...}, "faces": {...}}`` with each deployment's model, backend, max_request_crops."""
        ...

    async def read_plates(self, crops: list[np.ndarray]) -> list[list[PlateRead]]: ...

    async def analyze_faces(self, images: list[np.ndarray]) -> list[list[FaceResult]]: ...


def _chunks(items: list[np.ndarray], size: int) -> list[list[np.ndarray]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


class ServeSecondStageClient:
    """Deployment handles of the ``plates`` and ``faces`` applications (None: not deployed).

    Handles are taken on first use, so a group whose cameras never enable faces never needs the
    ``faces`` application to exist.
    """

    _DEPLOYMENTS = {"plates": ("PlateReader", "read"), "faces": ("FaceAnalyzer", "analyze")}

    def __init__(self, plates_app: str | None = "plates", faces_app: str | None = "faces") -> None:
        self._apps = {"plates": plates_app, "faces": faces_app}
        self._handles: dict[str, Any] = {}
        self._info: dict[str, dict[str, Any]] = {}

    def _handle(self, key: str) -> Any:
        if key not in self._handles:
            app = self._apps[key]
            if app is None:
                raise RuntimeError(f"the {key} second stage is not deployed (no application configured)")
            from ray import serve

            self._handles[key] = serve.get_deployment_handle(self._DEPLOYMENTS[key][0], app_name=app)
        return self._handles[key]

    async def _info_of(self, key: str) -> dict[str, Any]:
        if key not in self._info:
            self._info[key] = await self._handle(key).info.remote()
        return self._info[key]

    async def info(self) -> dict[str, dict[str, Any]]:
        return {key: await self._info_of(key) for key, app in self._apps.items() if app is not None}

    async def _call(self, key: str, items: list[np.ndarray]) -> list[list[Any]]:
        handle = self._handle(key)
        limit = int((await self._info_of(key))["max_request_crops"])
        method = getattr(handle, self._DEPLOYMENTS[key][1])
        parts = await asyncio.gather(*(method.remote(chunk) for chunk in _chunks(items, limit)))
        return [result for part in parts for result in part]

    async def read_plates(self, crops: list[np.ndarray]) -> list[list[PlateRead]]:
        return await self._call("plates", crops) if crops else []

    async def analyze_faces(self, images: list[np.ndarray]) -> list[list[FaceResult]]:
        return await self._call("faces", images) if images else []


class LocalSecondStageClient:
    """The same models in this process, off the event loop."""

    def __init__(self, plates: PlateReader | None = None, faces: FaceAnalyzer | None = None) -> None:
        self._plates = plates
        self._faces = faces

    async def info(self) -> dict[str, dict[str, Any]]:
        info: dict[str, dict[str, Any]] = {}
        if self._plates is not None:
            info["plates"] = {
                "model": "lpd_yunet_2023mar+cct_xs_v1_global",
                "backend": self._plates.backend_name,
            }
        if self._faces is not None:
            model = "yunet_2023mar" + ("+embedder" if self._faces.embedder is not None else "")
            info["faces"] = {"model": model, "backend": self._faces.backend_name}
        return info

    async def read_plates(self, crops: list[np.ndarray]) -> list[list[PlateRead]]:
        if self._plates is None:
            raise RuntimeError("no PlateReader in this LocalSecondStageClient")
        return await asyncio.to_thread(self._plates.read, crops) if crops else []

    async def analyze_faces(self, images: list[np.ndarray]) -> list[list[FaceResult]]:
        if self._faces is None:
            raise RuntimeError("no FaceAnalyzer in this LocalSecondStageClient")
        return await asyncio.to_thread(self._faces.analyze, images) if images else []


@dataclass(frozen=True)
class SecondStageItem:
    """One analysed frame: detections in original pixels and the seq of its detections message."""

    frame: DecodedFrame
    detections: Detections
    spec: CameraSpec
    seq: int


def crop_boxes(xyxy: np.ndarray, width: int, height: int, margin: float) -> np.ndarray:
    """Integer crop rectangles ``(N, 4)``: boxes grown by ``margin`` of their size, clipped to the frame."""
    xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
    grow = np.concatenate([-(xyxy[:, 2:] - xyxy[:, :2]), xyxy[:, 2:] - xyxy[:, :2]], axis=1) * margin
    grown = np.round(xyxy + grow)
    return np.clip(grown, 0, [width, height, width, height]).astype(np.int32)


def _select(
    dets: Detections, labels: Sequence[str], class_names: Sequence[str], cfg: SecondStageConfig, min_px: int
) -> np.ndarray:
    wanted = [i for i, name in enumerate(class_names) if name in labels]
    width = dets.xyxy[:, 2] - dets.xyxy[:, 0]
    mask = np.isin(dets.class_id, wanted) & (dets.confidence >= cfg.min_score) & (width >= min_px)
    index = np.flatnonzero(mask)
    area = width[index] * (dets.xyxy[index, 3] - dets.xyxy[index, 1])
    return index[np.argsort(-area, kind="stable")][: cfg.max_crops_per_frame]


class SecondStage:
    def __init__(
        self, client: SecondStageClient, class_names: Sequence[str], config: SecondStageConfig | None = None
    ):
        self.client = client
        self.class_names = tuple(class_names)
        self.config = config or SecondStageConfig()
        self.failures: dict[str, int] = {}  # failed requests per stage, for the group's status

    async def process(self, items: Sequence[SecondStageItem]) -> list[SecondStageMessage]:
        """Messages for one micro-batch of frames; frames without ``full_frame`` are skipped."""
        plate_jobs: list[tuple[SecondStageItem, int, np.ndarray]] = []  # item, detection index, crop box
        face_jobs: list[tuple[SecondStageItem, int | None, np.ndarray]] = []
        plate_crops: list[np.ndarray] = []
        face_crops: list[np.ndarray] = []
        cfg = self.config
        for item in items:
            image = item.frame.full_frame
            if image is None:
                continue
            height, width = image.shape[:2]
            if item.spec.plates:
                for det, box in self._crops(item, cfg.vehicle_labels, cfg.min_vehicle_px, cfg.vehicle_margin):
                    plate_jobs.append((item, det, box))
                    plate_crops.append(image[box[1] : box[3], box[0] : box[2]])
            if item.spec.faces:
                if cfg.faces_in == "frame":
                    face_jobs.append((item, None, np.array([0, 0, width, height], np.int32)))
                    face_crops.append(image)
                    continue
                for det, box in self._crops(item, cfg.person_labels, cfg.min_person_px, cfg.person_margin):
                    face_jobs.append((item, det, box))
                    face_crops.append(image[box[1] : box[3], box[0] : box[2]])
        if not plate_crops and not face_crops:
            return []
        info = await self.client.info()  # only the deployed stages; a missing one fails when used
        plates, faces = await asyncio.gather(
            self.client.read_plates(plate_crops) if plate_crops else _nothing(),
            self.client.analyze_faces(face_crops) if face_crops else _nothing(),
            return_exceptions=True,
        )
        # One stage failing must not cost the other its results: log, count, carry on.
        if isinstance(plates, BaseException):
            self._failed("plates", plates, len(plate_crops))
            plate_jobs, plates = [], []
        if isinstance(faces, BaseException):
            self._failed("faces", faces, len(face_crops))
            face_jobs, faces = [], []
        messages: list[SecondStageMessage] = []
        for (item, det, box), reads in zip(plate_jobs, plates, strict=True):
            messages.extend(self._plate_message(item, det, box, read, info["plates"]) for read in reads)
        for (item, det, box), found in zip(face_jobs, faces, strict=True):
            for face in found:
                if cfg.face_messages == "matches" and face.match is None:
                    continue
                messages.append(self._face_message(item, det, box, face, info["faces"]))
        return messages

    def _crops(
        self, item: SecondStageItem, labels: Sequence[str], min_px: int, margin: float
    ) -> list[tuple[int, np.ndarray]]:
        """(detection index, crop rectangle) for the detections of ``labels``, largest first."""
        height, width = item.frame.full_frame.shape[:2]
        index = _select(item.detections, labels, self.class_names, self.config, min_px)
        boxes = crop_boxes(item.detections.xyxy[index], width, height, margin)
        return [
            (int(det), box)
            for det, box in zip(index, boxes, strict=True)
            if box[2] > box[0] and box[3] > box[1]
        ]

    def _failed(self, stage: str, error: BaseException, crops: int) -> None:
        self.failures[stage] = self.failures.get(stage, 0) + 1
        log.warning("second stage %s failed on %d crops: %s: %s", stage, crops, type(error).__name__, error)

    def _frame_fields(self, item: SecondStageItem, info: dict[str, Any]) -> dict[str, Any]:
        frame = item.frame
        return {
            "camera_id": item.spec.camera_id,
            "seq": item.seq,
            "frame_index": frame.frame_index,
            "pts_s": frame.pts_s,
            "capture_ts": frame.capture_ts,
            "frame_width": frame.width,
            "frame_height": frame.height,
            "model": info["model"],
            "backend": info["backend"],
        }

    def _plate_message(
        self, item: SecondStageItem, det: int, box: np.ndarray, read: PlateRead, info: dict[str, Any]
    ) -> PlateReadMessage:
        dets = item.detections
        corners = read.corners + box[:2].astype(np.float32)
        class_id = int(dets.class_id[det])
        return PlateReadMessage(
            **self._frame_fields(item, info),
            vehicle_box=np.round(dets.xyxy[det], 2).tolist(),
            vehicle_label=self.class_names[class_id]
            if class_id < len(self.class_names)
            else f"class_{class_id}",
            vehicle_score=round(float(dets.confidence[det]), 4),
            plate_corners=np.round(corners, 2).tolist(),
            plate_score=round(min(1.0, read.detection_score), 4),
            text=read.text,
            char_confidence=list(read.char_confidence),
            confidence=round(read.confidence, 4),
        )

    def _face_message(
        self, item: SecondStageItem, det: int | None, box: np.ndarray, face: FaceResult, info: dict[str, Any]
    ) -> FaceMatchMessage:
        offset = box[:2].astype(np.float32)
        embed = self.config.face_embeddings and face.embedding is not None
        return FaceMatchMessage(
            **self._frame_fields(item, info),
            box=np.round(face.xyxy + np.tile(offset, 2), 2).tolist(),
            score=round(min(1.0, face.score), 4),
            landmarks=np.round(face.landmarks + offset, 2).tolist(),
            person_box=None if det is None else np.round(item.detections.xyxy[det], 2).tolist(),
            identity_id=face.match.identity_id if face.match else None,
            label=face.match.label if face.match else None,
            similarity=face.match.similarity if face.match else None,
            embedding=np.round(face.embedding, 5).tolist() if embed else None,
        )


async def _nothing() -> list[Any]:
    return []
