"""Plate OCR with fast-plate-ocr's ``cct_xs_v1_global``: pre-processing and slot decoding.

Input ``uint8 [N, 64, 128, 3]`` NHWC **RGB**, resized without keeping the aspect ratio (bilinear), not
rescaled (the graph divides by 255). Output ``[N, 9, 37]`` softmax over ``0-9 A-Z _`` per slot; ``_``
pads short plates. Text = argmax per slot with the trailing padding stripped; each character keeps its
slot probability as its confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

OCR_WIDTH = 128
OCR_HEIGHT = 64
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
PAD = "_"


def ocr_preprocess(plates_bgr: list[np.ndarray]) -> np.ndarray:
    """BGR plate images of any size -> ``uint8 [N, 64, 128, 3]`` RGB."""
    resized = [
        cv2.resize(p, (OCR_WIDTH, OCR_HEIGHT), interpolation=cv2.INTER_LINEAR)
        if p.shape[:2] != (OCR_HEIGHT, OCR_WIDTH)
        else p
        for p in plates_bgr
    ]
    return np.ascontiguousarray(np.stack(resized)[..., ::-1])


@dataclass(frozen=True)
class PlateText:
    text: str  # without padding, e.g. "5AU5341"
    char_confidence: tuple[float, ...]  # one per character of ``text``

    @property
    def confidence(self) -> float:
        """The weakest character's probability (0 for an empty read)."""
        return min(self.char_confidence, default=0.0)


def decode_plate_text(probabilities: np.ndarray, alphabet: str = ALPHABET) -> list[PlateText]:
    """``[N, slots, len(alphabet)]`` probabilities -> one ``PlateText`` per plate."""
    if probabilities.ndim != 3 or probabilities.shape[2] != len(alphabet):
        raise ValueError(f"OCR output must be (N, slots, {len(alphabet)}), got {probabilities.shape}")
    best = probabilities.argmax(axis=2)
    confidence = probabilities.max(axis=2)
    out = []
    for indices, probs in zip(best, confidence, strict=True):
        chars = [alphabet[i] for i in indices]
        end = len(chars)
        while end and chars[end - 1] == PAD:
            end -= 1
        # Padding inside the text (rare misreads) is dropped with its confidence.
        kept = [(c, float(p)) for c, p in zip(chars[:end], probs[:end], strict=True) if c != PAD]
        out.append(PlateText("".join(c for c, _ in kept), tuple(round(p, 4) for _, p in kept)))
    return out
