"""Plate reading on real images: LPD-YuNet -> rectification -> cct_xs_v1_global, and the YOLOX chain."""

from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np
import pytest

from cluster.second_stage import (
    LocalSecondStageClient,
    SecondStage,
    SecondStageConfig,
    SecondStageItem,
    crop_boxes,
)
from decoders.config import CameraSpec
from decoders.frame import DecodedFrame
from models.detector import Detector
from models.lpd import lpd_priors
from models.plate import PlateReader, grow_quad, rectify_plate
from models.plate_ocr import ALPHABET, decode_plate_text
from streams.schema import PlateReadMessage


@pytest.fixture(scope="module")
def reader(model_path) -> PlateReader:
    model_path("license_plate_detection_lpd_yunet_2023mar.onnx")  # skips with the reason if data is absent
    return PlateReader.from_config()


@pytest.fixture(scope="module")
def detector(model_path) -> Detector:
    model_path("yolox_nano.onnx")
    return Detector.from_spec("yolox_nano")


def _image(media, name: str) -> np.ndarray:
    image = cv2.imread(str(media(name)))
    assert image is not None, name
    return image


def test_priors_match_the_model_output_rows():
    priors = lpd_priors()
    assert priors.shape == (4385, 4)  # 30*40*3 + 15*20*2 + 7*10*2 + 3*5*3
    np.testing.assert_allclose(priors[0], [4 / 320, 4 / 240, 10 / 320, 10 / 240])
    np.testing.assert_allclose(priors[-1], [(4.5 * 64) / 320, (2.5 * 64) / 240, 256 / 320, 256 / 240])


def _one_hot(text: str, slots: int = 9) -> np.ndarray:
    probs = np.full((slots, len(ALPHABET)), 0.001, np.float32)
    for slot, char in enumerate(text.ljust(slots, "_")):
        probs[slot, ALPHABET.index(char)] = 0.95
    return probs


@pytest.mark.parametrize(
    ("slots", "text", "n_conf"),
    [("AB123____", "AB123", 5), ("_________", "", 0), ("A_B______", "AB", 2), ("123456789", "123456789", 9)],
)
def test_decode_strips_padding(slots, text, n_conf):
    (read,) = decode_plate_text(_one_hot(slots)[None])
    assert read.text == text
    assert len(read.char_confidence) == n_conf
    assert read.confidence == (pytest.approx(0.95, abs=1e-3) if n_conf else 0.0)


def test_decode_rejects_wrong_alphabet_size():
    with pytest.raises(ValueError, match="37"):
        decode_plate_text(np.zeros((1, 9, 36), np.float32))


def test_rectify_upright_quad_is_a_resize():
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:60, 40:120] = 255
    out = rectify_plate(image, np.array([[40, 20], [120, 20], [120, 60], [40, 60]], np.float32))
    assert out.shape == (64, 128, 3)
    assert out[2:-2, 2:-2].min() == 255  # the quad fills the output
    grown = grow_quad(np.array([[0, 0], [10, 0], [10, 10], [0, 10]], np.float32), 0.2)
    np.testing.assert_allclose(grown, [[-1, -1], [11, -1], [11, 11], [-1, 11]])


@pytest.mark.parametrize(
    ("name", "text"), [("plate_crop_AD799KB.png", "AD799KB"), ("plate_crop_KRW301.png", "KRW301")]
)
def test_ocr_reads_plate_crops(reader, media, name, text):
    (read,) = reader.recognize([_image(media, name)])
    assert read.text == text
    assert read.confidence >= 0.9


def test_parking_still_detector_to_plate_chain(reader, detector, media):
    """YOLOX finds the car, its full-resolution crop goes through LPD, rectification and OCR."""
    image = _image(media, "plate_car_parking.png")
    (dets,) = detector.detect_images([image])
    vehicles = np.isin(dets.class_id, [2, 3, 5, 7])
    assert vehicles.any()
    best = int(np.argmax(np.where(vehicles, dets.confidence, -1)))
    (box,) = crop_boxes(dets.xyxy[best : best + 1], image.shape[1], image.shape[0], 0.05)
    (reads,) = reader.read([image[box[1] : box[3], box[0] : box[2]]])
    assert [r.text for r in reads] == ["5AU5341"]
    corners = reads[0].corners + box[:2]  # back to original pixels: SOURCES.md gives (307,192) ... (316,208)
    np.testing.assert_allclose(corners, [[307, 192], [381, 194], [390, 210], [316, 208]], atol=6)


def test_second_stage_emits_plate_messages_in_frame_pixels(reader, detector, media):
    image = _image(media, "plate_car_parking.png")
    (dets,) = detector.detect_images([image])
    frame = DecodedFrame(
        "cam-1", 7, 0.5, time.time(), np.zeros((416, 416, 3), np.uint8), 416 / 518, 518, 331, full_frame=image
    )
    stage = SecondStage(LocalSecondStageClient(plates=reader), detector.class_names)
    items = [
        SecondStageItem(frame, dets, CameraSpec(camera_id="cam-1", url="file:///x.mp4", plates=True), seq=3),
        SecondStageItem(frame, dets, CameraSpec(camera_id="cam-2", url="file:///x.mp4"), seq=4),  # plates off
    ]
    messages = asyncio.run(stage.process(items))
    assert [m.text for m in messages] == ["5AU5341"]
    message = messages[0]
    assert isinstance(message, PlateReadMessage)
    assert (message.kind, message.camera_id, message.seq, message.frame_index) == (
        "plate_read",
        "cam-1",
        3,
        7,
    )
    assert message.backend == "onnxruntime-cpu"
    np.testing.assert_allclose(message.plate_corners[0], [307, 192], atol=6)
    assert PlateReadMessage.model_validate_json(message.model_dump_json()) == message


def test_second_stage_config_skips_small_vehicles(reader, detector, media):
    image = _image(media, "plate_car_parking.png")
    (dets,) = detector.detect_images([image])
    frame = DecodedFrame(
        "cam-1", 0, 0.0, 0.0, np.zeros((416, 416, 3), np.uint8), 1.0, 518, 331, full_frame=image
    )
    stage = SecondStage(
        LocalSecondStageClient(plates=reader), detector.class_names, SecondStageConfig(min_vehicle_px=1000)
    )
    spec = CameraSpec(camera_id="cam-1", url="file:///x.mp4", plates=True)
    assert asyncio.run(stage.process([SecondStageItem(frame, dets, spec, 0)])) == []


def test_batched_read_matches_single_reads(reader, media):
    images = [_image(media, "plate_car_parking.png"), _image(media, "plate_crop_KRW301.png")]
    together = reader.read(images)
    alone = [reader.read([image])[0] for image in images]
    assert [[r.text for r in rs] for rs in together] == [[r.text for r in rs] for rs in alone]
    assert together[0][0].text == "5AU5341"


@pytest.fixture(scope="module")
def plates_app(model_path, ray_serve):
    """The ``plates`` Serve application on the session's Ray cluster."""
    model_path("cct_xs_v1_global.onnx")
    from ray import serve

    args = {"backend": {"type": "onnxruntime"}, "max_batch_crops": 4, "num_cpus": 0.25, "max_replicas": 1}
    ray_serve.deploy_plate_reader(args)
    yield
    serve.delete("plates")


@pytest.mark.slow
def test_serve_plate_reader_through_second_stage(plates_app, detector, media):
    """Serve deployment: 6 vehicle crops, split into requests of at most 4 crops, merged by @serve.batch."""
    from cluster.second_stage import ServeSecondStageClient

    image = _image(media, "plate_car_parking.png")
    (dets,) = detector.detect_images([image])
    frame = DecodedFrame(
        "cam-1", 1, 0.1, 0.0, np.zeros((416, 416, 3), np.uint8), 1.0, 518, 331, full_frame=image
    )
    spec = CameraSpec(camera_id="cam-1", url="file:///x.mp4", plates=True)
    client = ServeSecondStageClient(plates_app="plates", faces_app=None)
    stage = SecondStage(client, detector.class_names)
    items = [SecondStageItem(frame, dets, spec, seq) for seq in range(2)]  # 2 frames x 4 vehicles

    async def run():
        info = await client.info()
        return info, await stage.process(items)

    info, messages = asyncio.run(run())
    assert info["plates"]["max_request_crops"] == 4 and info["plates"]["backend"] == "onnxruntime-cpu"
    assert [(m.seq, m.text) for m in messages] == [(0, "5AU5341"), (1, "5AU5341")]


def test_plate_and_face_messages_go_to_their_own_stream_families(redis_url):
    from streams.keys import Retention, StreamLayout
    from streams.reader import StreamReader
    from streams.schema import FaceMatchMessage
    from streams.writer import StreamWriter

    frame = {
        "camera_id": "cam-1",
        "seq": 5,
        "frame_index": 5,
        "pts_s": 0.4,
        "capture_ts": 1.0,
        "frame_width": 518,
        "frame_height": 331,
        "model": "m",
        "backend": "onnxruntime-cpu",
    }
    plate = PlateReadMessage(
        **frame,
        vehicle_box=[35, 43, 448, 272],
        vehicle_label="truck",
        vehicle_score=0.87,
        plate_corners=[[307, 192], [381, 194], [390, 210], [316, 208]],
        plate_score=0.75,
        text="5AU5341",
        char_confidence=[1.0] * 7,
        confidence=1.0,
    )
    face = FaceMatchMessage(
        **frame,
        box=[1, 2, 30, 40],
        score=0.9,
        landmarks=[[5, 10]] * 5,
        person_box=None,
        identity_id="p-1",
        label="P",
        similarity=0.8,
    )
    layout = StreamLayout(shards=2)
    readers = {
        f: StreamReader(redis_url, layout, group="g", family=f, start_id="0")
        for f in ("plate_reads", "face_matches")
    }
    with StreamWriter.from_url(
        redis_url, layout, Retention(family_shard_maxlen={"face_matches": 100})
    ) as writer:
        assert writer.write([plate, face]) == 2
    (got_plate,) = readers["plate_reads"].read(count=10)
    (got_face,) = readers["face_matches"].read(count=10)
    assert got_plate.unwrap().text == "5AU5341" and got_face.unwrap().identity_id == "p-1"
    assert [m.message.kind for m in readers["face_matches"].latest("cam-1")] == ["face_match"]


def test_second_stage_apps_in_the_serve_config_parse():
    from pathlib import Path

    import yaml
    from ray.serve.schema import ServeDeploySchema

    from serve_apps.face_analyzer import FaceAnalyzerAppArgs
    from serve_apps.plate_reader import PlateReaderAppArgs

    config = yaml.safe_load((Path(__file__).parent.parent / "serve_apps" / "serve_config.yaml").read_text())
    ServeDeploySchema.model_validate(config)
    apps = {app["name"]: app for app in config["applications"]}
    plates = PlateReaderAppArgs.model_validate(apps["plates"]["args"])
    faces = FaceAnalyzerAppArgs.model_validate(apps["faces"]["args"])
    assert plates.backend.type == faces.backend.type == "auto"
    assert plates.max_ongoing_requests >= 2 and faces.max_ongoing_requests >= 2
    assert 0 < plates.num_cpus < 1 and 0 < faces.num_cpus < 1


def test_a_failing_stage_does_not_cost_the_other_its_results(reader, detector, media):
    image = _image(media, "plate_car_parking.png")
    (dets,) = detector.detect_images([image])
    frame = DecodedFrame(
        "cam-1", 0, 0.0, 0.0, np.zeros((416, 416, 3), np.uint8), 1.0, 518, 331, full_frame=image
    )
    spec = CameraSpec(camera_id="cam-1", url="file:///x.mp4", plates=True, faces=True)
    client = LocalSecondStageClient(plates=reader)  # no FaceAnalyzer: every face request fails
    stage = SecondStage(client, detector.class_names, SecondStageConfig(faces_in="frame"))
    messages = asyncio.run(stage.process([SecondStageItem(frame, dets, spec, 0)]))
    assert [m.text for m in messages] == ["5AU5341"]
    assert stage.failures == {"faces": 1}
