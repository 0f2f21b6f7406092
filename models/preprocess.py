"""Letterboxing: the one place that knows how a frame maps onto a model input.

YOLOX-style letterbox: scale by ``r = min(W/w, H/h)``, resize to ``(round(w*r), round(h*r))``, paste
at the top-left of a ``W x H`` canvas filled with ``fill``. Boxes go back with a plain ``/ r``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class LetterboxGeometry:
    scale: float  # model pixels per source pixel
    resized_width: int
    resized_height: int
    input_width: int
    input_height: int


def letterbox_geometry(
    src_width: int, src_height: int, input_width: int, input_height: int
) -> LetterboxGeometry:
    scale = min(input_width / src_width, input_height / src_height)
    return LetterboxGeometry(
        scale=scale,
        resized_width=max(1, min(input_width, round(src_width * scale))),
        resized_height=max(1, min(input_height, round(src_height * scale))),
        input_width=input_width,
        input_height=input_height,
    )


def paste_top_left(resized: np.ndarray, geometry: LetterboxGeometry, fill: int = 114) -> np.ndarray:
    """Place an already-resized ``(h, w, 3)`` image on a filled model-size canvas."""
    canvas = np.full((geometry.input_height, geometry.input_width, 3), fill, np.uint8)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    return canvas


def letterbox(
    image: np.ndarray, input_width: int, input_height: int, fill: int = 114
) -> tuple[np.ndarray, float]:
    """Letterbox an ``(H, W, 3)`` uint8 image; returns the canvas and the scale."""
    height, width = image.shape[:2]
    geometry = letterbox_geometry(width, height, input_width, input_height)
    resized = cv2.resize(
        image, (geometry.resized_width, geometry.resized_height), interpolation=cv2.INTER_LINEAR
    )
    return paste_top_left(resized, geometry, fill), geometry.scale
