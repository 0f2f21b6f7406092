"""Message schema v1: models, the published JSON Schema files, and the docs that describe them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import redis
from pydantic import BaseModel, ValidationError

from cluster.status import CameraState, CameraStatus, DropReason
from decoders.config import CameraSpec
from decoders.frame import DecodedFrame
from models.detections import Detections
from streams import CameraStateMessage, Detection, DetectionMessage, StreamLayout, StreamWriter
from streams.export_schema import SCHEMA_DIR, main, schemas, stale_files
from streams.samples import synthetic_batch, synthetic_message
from streams.schema import CAMERA_ID_PATTERN, STREAM_MESSAGE, CameraCounters, CameraRates

DOCS = Path(__file__).parents[1] / "docs" / "streams.md"


def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_from_detections_labels_clips_and_rounds():
    frame = DecodedFrame(
        camera_id="gate-3",
        frame_index=120,
        pts_s=4.8,
        capture_ts=1_700_000_000.25,
        image=np.zeros((416, 416, 3), np.uint8),
        scale=416 / 1920,
        width=1920,
        height=1080,
    )
    found = Detections(
        np.array([[10.123456, 20.5, 110.0, 220.0], [-5.0, 1000.0, 1930.0, 1100.0]], np.float32),
        np.array([0.912345678, 0.5], np.float32),
        np.array([2, 99], np.int32),
    )
    message = DetectionMessage.from_detections(
        found, ["person", "bicycle", "car"], frame, seq=7, model="yolox_nano", backend="onnxruntime-cpu"
    )
    assert (message.v, message.kind, message.camera_id, message.seq) == (1, "detections", "gate-3", 7)
    assert (message.frame_index, message.pts_s, message.frame_width, message.frame_height) == (
        120,
        4.8,
        1920,
        1080,
    )
    assert message.written_ts is None and message.simulated is False
    assert message.detections == [
        Detection(label="car", class_id=2, score=0.9123, box=[10.12, 20.5, 110.0, 220.0]),
        Detection(label="class_99", class_id=99, score=0.5, box=[0.0, 1000.0, 1920.0, 1080.0]),
    ]


def test_from_detections_empty():
    message = synthetic_message("cam-1", 0, detections=0)
    assert message.detections == []
    assert '"detections":[]' in message.model_dump_json()


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"v": 2}, "literal_error"),
        ({"kind": "plates"}, "literal_error"),
        ({"camera_id": "cam 1"}, "string_pattern_mismatch"),
        ({"camera_id": "{cam}"}, "string_pattern_mismatch"),
        ({"seq": -1}, "greater_than_equal"),
        ({"unknown": 1}, "extra_forbidden"),
        ({"capture_ts": float("nan")}, "finite_number"),
        (
            {"detections": [{"label": "car", "class_id": 2, "score": 1.5, "box": [0, 0, 1, 1]}]},
            "less_than_equal",
        ),
        ({"detections": [{"label": "car", "class_id": 2, "score": 0.5, "box": [0, 0, 1]}]}, "too_short"),
    ],
)
def test_invalid_messages_are_rejected(change, error):
    data = synthetic_message("cam-1", 3).model_dump() | change
    with pytest.raises(ValidationError) as excinfo:
        DetectionMessage.model_validate(data)
    assert error in {e["type"] for e in excinfo.value.errors()}


def test_round_trip_through_the_union():
    message = synthetic_message("cam-1", 3)
    assert STREAM_MESSAGE.validate_json(message.model_dump_json()) == message
    state = CameraStateMessage.from_status(CameraStatus(camera_id="cam-1", url="rtsp://host/x"))
    assert STREAM_MESSAGE.validate_json(state.model_dump_json()) == state


def test_state_message_from_status_carries_counters_and_redacts():
    status = CameraStatus(
        camera_id="cam-1",
        url="rtsp://admin:hunter2@10.0.0.5/live?token=abc",
        group_id="g1",
        state=CameraState.BACKOFF,
        last_error="open rtsp://admin:hunter2@10.0.0.5/live failed",
        frames_decoded=100,
        frames_sampled=10,
        frames_analysed=9,
        reconnects=2,
        dropped={DropReason.SINK_ERROR: 1},
        detections_by_class={"car": 4},
        last_seq=8,
    )
    message = CameraStateMessage.from_status(status)
    assert message.url == "rtsp://***@10.0.0.5/live?token=***"
    assert message.last_error == "open rtsp://***@10.0.0.5/live failed"
    assert message.counters.dropped == {DropReason.SINK_ERROR: 1}
    assert (message.counters.last_seq, message.state, message.group_id) == (8, CameraState.BACKOFF, "g1")
    assert "hunter2" not in message.model_dump_json()


def test_camera_id_rule_matches_the_camera_config():
    assert CameraSpec.model_fields["camera_id"].metadata[0].pattern == CAMERA_ID_PATTERN


def test_schema_files_are_up_to_date(tmp_path):
    assert stale_files() == [], "run: python -m streams.export_schema"
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.json")) == sorted(schemas())
    assert main(["--out", str(tmp_path)]) == 0
    assert main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "detections.v1.json").write_text("{}")
    assert main(["--check", "--out", str(tmp_path)]) == 1


def test_written_messages_validate_against_the_json_schema(redis_url):
    writer = StreamWriter.from_url(redis_url)
    writer.write(synthetic_batch(cameras=3, per_camera=4) + [synthetic_message("cam-empty", 0, detections=0)])
    writer.write_states([CameraStatus(camera_id="cam-0000", url="rtsp://u:p@h/x", last_error="boom")])
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    layout = StreamLayout()
    payloads = [fields["json"] for key in layout.shard_keys() for _, fields in client.xrange(key)]
    assert len(payloads) == 13
    union, detections, state = (
        _validator("stream_message.v1.json"),
        _validator("detections.v1.json"),
        _validator("camera_state.v1.json"),
    )
    for payload in payloads:
        document = json.loads(payload)
        union.validate(document)
        detections.validate(document)
        assert document["written_ts"] is not None
    state_document = json.loads(client.hget(layout.state_key("cam-0000"), "json"))
    union.validate(state_document)
    state.validate(state_document)
    # The schema is strict where the models are: a wrong version or a stray field fails validation.
    bad = json.loads(payloads[0])
    for mutation in ({"v": 2}, {"extra": 1}, {"seq": "7"}):
        assert not union.is_valid(bad | mutation)


def _field_names(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def test_docs_describe_every_field():
    text = DOCS.read_text()
    for model in (DetectionMessage, Detection, CameraStateMessage, CameraCounters, CameraRates):
        missing = {name for name in _field_names(model) if not re.search(rf"`{name}`", text)}
        assert not missing, f"docs/streams.md does not describe {model.__name__} fields {sorted(missing)}"
