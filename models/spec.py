"""What a detection model is: its file, input geometry, colour order, output decoder and NMS policy.

A ``ModelSpec`` is plain configuration (no I/O); ``load_class_names`` reads the classes file once a
``DataLocator`` has resolved it. Built-in specs live in ``BUILTIN_MODELS``; deployments may also pass
their own spec (for example from YAML) as long as its decoder is one we implement.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, field_validator


class UnknownModelError(KeyError):
    """A model name that is not in the registry; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Registry name of the model, shown in status and results.")
    file: str = Field(description="Data-relative path of the ONNX file, e.g. 'models/yolox_nano.onnx'.")
    input_width: int = Field(gt=0, description="Model input width in pixels (frames are letterboxed to it).")
    input_height: int = Field(gt=0, description="Model input height in pixels.")
    color: Literal["bgr", "rgb"] = Field(description="Channel order the model expects.")
    decoder: Literal["yolox"] = Field(
        description="Name of the output decoder that turns raw outputs into boxes."
    )
    classes_file: str = Field(description="Data-relative path of the class-names file, one name per line.")
    score_threshold: float = Field(
        default=0.35, ge=0.0, le=1.0, description="Minimum detection score (objectness x class score)."
    )
    nms_iou: float = Field(default=0.45, gt=0.0, le=1.0, description="IoU above which NMS suppresses a box.")
    max_detections: int = Field(
        default=300, gt=0, description="At most this many boxes per image, best first."
    )
    agnostic_groups: dict[str, tuple[NonNegativeInt, ...]] = Field(
        # One physical vehicle often scores as both car and truck (the van in vtest frame 240):
        # suppressing across these classes keeps one box, with the higher-scoring class.
        default_factory=lambda: {"vehicle": (2, 3, 5, 7)},
        description="Named groups of class ids that NMS treats as one class; other classes are per-class.",
    )

    @field_validator("agnostic_groups")
    @classmethod
    def _groups_disjoint(cls, groups: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        owner: dict[int, str] = {}
        for group, ids in groups.items():
            for class_id in ids:
                if class_id in owner and owner[class_id] != group:
                    raise ValueError(f"class {class_id} is in both groups {owner[class_id]!r} and {group!r}")
                owner[class_id] = group
        return groups


BUILTIN_MODELS: dict[str, ModelSpec] = {
    "yolox_nano": ModelSpec(
        name="yolox_nano",
        file="models/yolox_nano.onnx",
        input_width=416,
        input_height=416,
        color="bgr",
        decoder="yolox",
        classes_file="models/coco_classes.txt",
    ),
}


def get_model_spec(name: str) -> ModelSpec:
    """The built-in spec ``name``; an unknown name raises ``UnknownModelError`` listing the valid ones."""
    try:
        return BUILTIN_MODELS[name]
    except KeyError:
        valid = ", ".join(sorted(BUILTIN_MODELS))
        raise UnknownModelError(f"unknown model {name!r}; valid models: {valid}") from None


def load_class_names(path: Path) -> tuple[str, ...]:
    """Class names from a text file, one per line; the line index is the class id."""
    # Only trailing blank lines are dropped: skipping one in the middle would shift every later id.
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").rstrip().splitlines())
    if not names:
        raise ValueError(f"classes file {path} has no class names")
    return names
