"""Watchlist gallery: enrolled identities as L2-normalised embeddings, matched by cosine similarity.

The gallery is the only face data this project keeps on disk, and only because an operator enrolled
it: a ``.npz`` file with ``ids`` (str), ``labels`` (str) and ``embeddings`` (float32 ``[M, D]``). Faces
seen by cameras are matched in memory and never added to it. Deleting an identity and saving again is
how an operator honours a removal request (``remove`` + ``save``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class GalleryMatch:
    identity_id: str
    label: str
    similarity: float  # cosine similarity, -1..1


class FaceGallery:
    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self._ids: list[str] = []
        self._labels: list[str] = []
        self._embeddings = np.zeros((0, dimension), np.float32)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def identity_ids(self) -> list[str]:
        return list(self._ids)

    def add(self, identity_id: str, embedding: np.ndarray, label: str | None = None) -> None:
        """Enroll (or replace) one identity with one embedding; several images: average them first."""
        vector = l2_normalise(np.asarray(embedding, np.float32).reshape(-1))
        if vector.shape != (self.dimension,):
            raise ValueError(
                f"embedding of {identity_id!r} has shape {vector.shape}, gallery needs ({self.dimension},)"
            )
        self.remove(identity_id)
        self._ids.append(identity_id)
        self._labels.append(label or identity_id)
        self._embeddings = np.concatenate([self._embeddings, vector[None]])

    def remove(self, identity_id: str) -> bool:
        if identity_id not in self._ids:
            return False
        index = self._ids.index(identity_id)
        del self._ids[index], self._labels[index]
        self._embeddings = np.delete(self._embeddings, index, axis=0)
        return True

    def match(self, embeddings: np.ndarray, threshold: float) -> list[GalleryMatch | None]:
        """Best identity per embedding when its cosine similarity reaches ``threshold``, else None."""
        embeddings = l2_normalise(np.asarray(embeddings, np.float32).reshape(-1, self.dimension))
        if len(self) == 0 or len(embeddings) == 0:
            return [None] * len(embeddings)
        similarity = embeddings @ self._embeddings.T
        best = similarity.argmax(axis=1)
        return [
            GalleryMatch(self._ids[b], self._labels[b], round(float(similarity[i, b]), 4))
            if similarity[i, b] >= threshold
            else None
            for i, b in enumerate(best)
        ]

    def save(self, path: str | Path) -> None:
        np.savez(
            Path(path), ids=np.array(self._ids), labels=np.array(self._labels), embeddings=self._embeddings
        )

    @classmethod
    def load(cls, path: str | Path) -> FaceGallery:
        with np.load(Path(path), allow_pickle=False) as data:
            embeddings = np.asarray(data["embeddings"], np.float32)
            gallery = cls(embeddings.shape[1])
            for identity, label, vector in zip(data["ids"], data["labels"], embeddings, strict=True):
                gallery.add(str(identity), vector, str(label))
        return gallery
