"""Faces on real images: YuNet detection, ArcFace alignment, an embedding model built here, the watchlist."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cluster.second_stage import LocalSecondStageClient, SecondStage, SecondStageConfig, SecondStageItem
from decoders.config import CameraSpec
from decoders.frame import DecodedFrame
from models.detections import Detections
from models.detector import Detector
from models.face import ARCFACE_TEMPLATE, FaceAnalyzer, FaceAnalyzerConfig, FaceEmbedderConfig, align_face
from models.face_gallery import FaceGallery
from streams.schema import FaceMatchMessage

EMBED_DIM = 64


def tiny_embedding_model(path: Path) -> Path:
    """An ArcFace-shaped ONNX model: [N,3,112,112] -> 14x14 average pool -> flatten -> fixed projection."""
    weights = np.random.default_rng(0).standard_normal((3 * 8 * 8, EMBED_DIM)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("AveragePool", ["input"], ["pooled"], kernel_shape=[14, 14], strides=[14, 14]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["embedding"]),
        ],
        "tiny_arcface",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", EMBED_DIM])],
        [numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def analyzer(model_path) -> FaceAnalyzer:
    model_path("face_detection_yunet_2023mar.onnx")
    return FaceAnalyzer.from_config()


@pytest.fixture(scope="module")
def embedding_model(tmp_path_factory) -> Path:
    return tiny_embedding_model(tmp_path_factory.mktemp("embedder") / "tiny_arcface.onnx")


@pytest.fixture
def recognizer(model_path, embedding_model) -> FaceAnalyzer:
    model_path("face_detection_yunet_2023mar.onnx")
    config = FaceAnalyzerConfig(embedder=FaceEmbedderConfig(file=str(embedding_model)), match_threshold=0.99)
    return FaceAnalyzer.from_config(config)


def _image(media, name: str) -> np.ndarray:
    image = cv2.imread(str(media(name)))
    assert image is not None, name
    return image


def _clip_frames(media) -> list[np.ndarray]:
    with av.open(str(media("intel_face-demographics-walking-and-pause_preview.mp4"))) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def test_two_people_gives_two_faces(analyzer, media):
    (faces,) = analyzer.detect([_image(media, "faces_two_people.jpg")])
    assert len(faces) == 2
    assert faces.scores.min() > 0.85
    for box, points in zip(faces.xyxy, faces.landmarks, strict=True):
        assert (points[:, 0] > box[0]).all() and (points[:, 0] < box[2]).all()
        assert points[0, 0] < points[1, 0]  # first eye is on the image's left: the template's order


def test_walking_clip_has_faces_across_frames(analyzer, media):
    frames = _clip_frames(media)
    assert len(frames) == 41
    counts = [len(f) for i in range(0, len(frames), 16) for f in analyzer.detect(frames[i : i + 16])]
    assert min(counts) >= 2
    assert sum(c == 3 for c in counts) >= 35  # SOURCES.md: frame 20 shows 3 faces
    assert counts[20] == 3


def test_batched_detection_matches_single_images(analyzer, media):
    images = [_image(media, "faces_two_people.jpg"), _image(media, "face_obama.jpg")]
    together = analyzer.detect(images)
    for image, faces in zip(images, together, strict=True):
        (alone,) = analyzer.detect([image])
        np.testing.assert_allclose(faces.xyxy, alone.xyxy, atol=0.05)
        np.testing.assert_allclose(faces.scores, alone.scores, atol=1e-4)


def test_alignment_puts_landmarks_on_the_arcface_template(analyzer, media):
    image = _image(media, "face_obama.jpg")
    (faces,) = analyzer.detect([image])
    aligned = align_face(image, faces.landmarks[0])
    assert aligned.shape == (112, 112, 3) and aligned.dtype == np.uint8
    matrix, _ = cv2.estimateAffinePartial2D(faces.landmarks[0], ARCFACE_TEMPLATE, method=cv2.LMEDS)
    moved = faces.landmarks[0] @ matrix[:, :2].T + matrix[:, 2]
    assert (
        np.abs(moved - ARCFACE_TEMPLATE).max() < 6
    )  # a similarity transform, 5 points: a few px of residual


def test_embeddings_and_watchlist_matches(recognizer, media):
    obama, biden = _image(media, "face_obama.jpg"), _image(media, "face_biden.jpg")
    recognizer.enroll("p-obama", [obama], label="Barack Obama")
    recognizer.enroll("p-biden", [biden], label="Joe Biden")
    results = recognizer.analyze([obama, biden])
    (face_o,), (face_b,) = results
    assert face_o.embedding.shape == (EMBED_DIM,)
    assert np.linalg.norm(face_o.embedding) == pytest.approx(1.0, abs=1e-5)
    assert (face_o.match.identity_id, face_o.match.label) == ("p-obama", "Barack Obama")
    assert face_o.match.similarity > 0.999
    assert face_b.match.identity_id == "p-biden"
    recognizer.gallery.remove("p-biden")
    (_, (face_b,)) = recognizer.analyze([obama, biden])
    assert face_b.match is None  # below the 0.99 threshold against the remaining identity


def test_gallery_round_trip(tmp_path):
    gallery = FaceGallery(3)
    gallery.add("a", np.array([1.0, 0, 0]))
    gallery.add("b", np.array([0, 2.0, 0]), label="Bee")
    gallery.save(tmp_path / "watchlist.npz")
    loaded = FaceGallery.load(tmp_path / "watchlist.npz")
    assert loaded.identity_ids == ["a", "b"]
    best, none = loaded.match(np.array([[0.1, 1.0, 0.0], [0.0, 0.0, 1.0]]), threshold=0.5)
    assert (best.identity_id, best.label) == ("b", "Bee") and none is None
    with pytest.raises(ValueError, match="shape"):
        gallery.add("c", np.ones(4))


def test_gallery_needs_an_embedder(tmp_path, model_path):
    model_path("face_detection_yunet_2023mar.onnx")
    FaceGallery(3).save(tmp_path / "g.npz")
    with pytest.raises(ValueError, match="embedder"):
        FaceAnalyzer.from_config(FaceAnalyzerConfig(gallery_file=str(tmp_path / "g.npz")))


def _frame(image: np.ndarray) -> DecodedFrame:
    height, width = image.shape[:2]
    return DecodedFrame(
        "cam-f", 20, 1.0, 1.0, np.zeros((416, 416, 3), np.uint8), 416 / width, width, height, full_frame=image
    )


def test_person_crops_find_the_same_faces_as_the_whole_frame(analyzer, media, model_path):
    """YOLOX persons -> full-resolution crops -> YuNet; face boxes come back in frame pixels."""
    model_path("yolox_nano.onnx")
    detector = Detector.from_spec("yolox_nano")
    image = _clip_frames(media)[20]
    (dets,) = detector.detect_images([image])
    spec = CameraSpec(camera_id="cam-f", url="file:///x.mp4", faces=True)
    stage = SecondStage(
        LocalSecondStageClient(faces=analyzer), detector.class_names, SecondStageConfig(face_messages="all")
    )
    messages = asyncio.run(stage.process([SecondStageItem(_frame(image), dets, spec, seq=9)]))
    assert messages and all(isinstance(m, FaceMatchMessage) for m in messages)
    assert all(m.identity_id is None and m.embedding is None and m.person_box is not None for m in messages)
    (whole,) = analyzer.detect([image])
    for message in messages:
        distance = np.abs(whole.xyxy - np.array(message.box)).max(axis=1)
        assert distance.min() < 8, (message.box, whole.xyxy.tolist())
    assert len({tuple(np.round(m.box, -1)) for m in messages}) >= 2


def test_face_messages_off_unless_enabled_and_embeddings_only_when_configured(recognizer, media):
    image = _image(media, "faces_two_people.jpg")
    recognizer.enroll("p-obama", [_image(media, "face_obama.jpg")])
    client = LocalSecondStageClient(faces=recognizer)
    off = CameraSpec(camera_id="cam-f", url="file:///x.mp4")
    on = CameraSpec(camera_id="cam-f", url="file:///x.mp4", faces=True)
    whole = SecondStageConfig(faces_in="frame", face_messages="all")
    stage = SecondStage(client, ["person"], whole)
    assert asyncio.run(stage.process([SecondStageItem(_frame(image), Detections.empty(), off, 0)])) == []
    messages = asyncio.run(stage.process([SecondStageItem(_frame(image), Detections.empty(), on, 0)]))
    assert len(messages) == 2 and all(m.embedding is None for m in messages)
    embedded = SecondStage(client, ["person"], whole.model_copy(update={"face_embeddings": True}))
    messages = asyncio.run(embedded.process([SecondStageItem(_frame(image), Detections.empty(), on, 0)]))
    assert all(len(m.embedding) == EMBED_DIM for m in messages)
    matches_only = SecondStage(client, ["person"], SecondStageConfig(faces_in="frame"))
    enrolled = _image(media, "face_obama.jpg")
    items = [SecondStageItem(_frame(enrolled), Detections.empty(), on, 1)]
    items.append(SecondStageItem(_frame(_image(media, "face_biden.jpg")), Detections.empty(), on, 2))
    messages = asyncio.run(matches_only.process(items))
    assert [(m.seq, m.identity_id) for m in messages] == [(1, "p-obama")]  # unmatched faces: no message
    assert messages[0].similarity > 0.99
