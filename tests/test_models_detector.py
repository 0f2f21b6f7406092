"""Detector core: NMS and YOLOX decode tables, specs and backends by name, the batch rewrite, and the
real YOLOX-nano model on real vtest frames."""

from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from pydantic import ValidationError

from models.backends.onnxruntime import OnnxRuntimeConfig, resolve_batch_mode
from models.backends.registry import UnknownBackendError, create_backend, parse_backend_config
from models.detector import Detector
from models.nms import batched_nms, box_iou
from models.onnx_batch import dynamic_batch_model_path, make_batch_dynamic
from models.spec import ModelSpec, UnknownModelError, get_model_spec
from models.yolox import YoloxDecoder

PERSON, CAR, TRUCK = 0, 2, 7
VEHICLES = (2, 3, 5, 7)
CELLS = 52 * 52 + 26 * 26 + 13 * 13  # 3549 for 416x416

# ---------------------------------------------------------------------------------------------- NMS


BOX, NEAR, FAR = [0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]
GROUP = {"vehicle": VEHICLES}


@pytest.mark.parametrize(
    ("boxes", "scores", "classes", "groups", "expected"),
    [
        pytest.param([], [], [], {}, [], id="empty"),
        pytest.param([BOX, NEAR], [0.5, 0.9], [0, 0], {}, [1], id="same-class-overlap"),
        pytest.param([BOX, FAR], [0.5, 0.9], [0, 0], {}, [1, 0], id="same-class-apart"),
        pytest.param([BOX, BOX], [0.9, 0.8], [PERSON, CAR], {}, [0, 1], id="other-class"),
        pytest.param([BOX, BOX], [0.6, 0.8], [CAR, TRUCK], {}, [1, 0], id="car-truck-per-class"),
        pytest.param([BOX, BOX], [0.6, 0.8], [CAR, TRUCK], GROUP, [1], id="vehicle-group"),
        pytest.param([BOX, BOX], [0.9, 0.8], [PERSON, CAR], GROUP, [0, 1], id="group-leaves-others-alone"),
        pytest.param([[0, 0, 2, 1], [1, 0, 3, 1]], [0.9, 0.8], [0, 0], {}, [0, 1], id="iou-third-kept"),
        pytest.param([BOX, BOX], [0.7, 0.7], [0, 0], {}, [0], id="tie-keeps-first"),
        pytest.param([[5, 5, 5, 5], [5, 5, 5, 5]], [0.7, 0.6], [0, 0], {}, [0, 1], id="zero-area"),
    ],
)
def test_batched_nms(boxes, scores, classes, groups, expected) -> None:
    kept = batched_nms(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.array(scores, np.float32),
        np.array(classes),
        0.45,
        groups,
    )
    assert kept.tolist() == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 1 / 3),
        ([0, 0, 10, 10], [10, 10, 20, 20], 0.0),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),
    ],
)
def test_box_iou(a, b, expected) -> None:
    assert box_iou(np.array([a]), np.array([b]))[0, 0] == pytest.approx(expected)


# ------------------------------------------------------------------------------------- YOLOX decode


def _raw(*cells: dict, batch: int = 1, classes: int = 80) -> np.ndarray:
    """A raw YOLOX output of zeros with the given cells set: dict(image, cell, d, log_wh, obj, cls, p)."""
    raw = np.zeros((batch, CELLS, 5 + classes), np.float32)
    for c in cells:
        row = raw[c.get("image", 0), c["cell"]]
        row[0:2], row[2:4], row[4] = c.get("d", (0.5, 0.5)), c.get("log_wh", (0.0, 0.0)), c["obj"]
        row[5 + c["cls"]] = c["p"]
    return raw


def _decoder(**overrides) -> YoloxDecoder:
    return YoloxDecoder.from_spec(get_model_spec("yolox_nano").model_copy(update=overrides))


LN2, LN4 = math.log(2), math.log(4)
# Two neighbouring cells predict the same box [0, 0, 8, 8], one as car 0.6, one as truck 0.8.
VAN_CELLS = (
    {"cell": 0, "obj": 1.0, "cls": CAR, "p": 0.6},
    {"cell": 1, "obj": 1.0, "cls": TRUCK, "p": 0.8, "d": (-0.5, 0.5)},
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(np.zeros((0, CELLS, 85), np.float32), [], id="empty-batch"),
        pytest.param(_raw(), [[]], id="no-objects"),
        pytest.param(_raw({"cell": 0, "obj": 0.9, "cls": PERSON, "p": 0.3}), [[]], id="score-below"),
        pytest.param(_raw({"cell": 0, "obj": 0.3, "cls": PERSON, "p": 1.0}), [[]], id="objectness-below"),
        pytest.param(
            _raw({"cell": 0, "obj": 0.5, "cls": PERSON, "p": 0.8, "log_wh": (LN2, LN4)}),
            [[(-4, -12, 12, 20, 0.4, PERSON)]], id="stride8-first-cell",
        ),
        pytest.param(
            _raw({"cell": 2704 + 26 * 1 + 2, "obj": 1.0, "cls": CAR, "p": 0.9, "d": (0, 0)}),
            [[(24, 8, 40, 24, 0.9, CAR)]], id="stride16-gx2-gy1",
        ),
        pytest.param(
            _raw({"cell": CELLS - 1, "obj": 1.0, "cls": TRUCK, "p": 0.5}),
            [[(384, 384, 416, 416, 0.5, TRUCK)]], id="stride32-last-cell",
        ),
        pytest.param(
            _raw({"cell": 52 + 48, "obj": 1.0, "cls": CAR, "p": 0.6},
                 {"image": 1, "cell": 1, "obj": 1.0, "cls": PERSON, "p": 0.7}, batch=2),
            [[(384, 8, 392, 16, 0.6, CAR)], [(8, 0, 16, 8, 0.7, PERSON)]], id="batch-of-two",
        ),
        pytest.param(
            _raw(*VAN_CELLS), [[(0, 0, 8, 8, 0.8, TRUCK)]], id="van-once",
        ),
    ],
)  # fmt: skip
def test_yolox_decode(raw: np.ndarray, expected: list[list[tuple]]) -> None:
    result = _decoder()(raw)
    assert [d.to_array().tolist() for d in result] == [
        [pytest.approx(list(row), abs=1e-5) for row in image] for image in expected
    ]


def test_yolox_decode_without_groups_keeps_car_and_truck() -> None:
    (dets,) = _decoder(agnostic_groups={})(_raw(*VAN_CELLS))
    assert dets.class_id.tolist() == [TRUCK, CAR]
    assert box_iou(dets.xyxy[:1], dets.xyxy[1:])[0, 0] == pytest.approx(1.0)


def test_yolox_decode_caps_detections() -> None:
    cells = [{"cell": i * 60, "obj": 1.0, "cls": PERSON, "p": 0.5 + i / 100} for i in range(10)]
    (dets,) = _decoder(max_detections=3)(_raw(*cells))
    assert dets.confidence.tolist() == pytest.approx([0.59, 0.58, 0.57])


@pytest.mark.parametrize("shape", [(1, 3549), (1, 3548, 85), (1, 3549, 5), (3549, 85)])
def test_yolox_decode_rejects_wrong_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(N, 3549, 5 \+ classes\).*got"):
        _decoder()(np.zeros(shape, np.float32))


# ------------------------------------------------------------------------------ specs and registry


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(UnknownModelError, match="unknown model 'yolov99'; valid models: yolox_nano"):
        get_model_spec("yolov99")


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"bogus": 1}, "Extra inputs are not permitted"),
        ({"decoder": "ssd"}, "'yolox'"),
        ({"color": "gray"}, "'bgr' or 'rgb'"),
        ({"agnostic_groups": {"a": [2, 3], "b": [3]}}, "class 3 is in both groups"),
    ],
)
def test_model_spec_validation(update: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelSpec.model_validate(get_model_spec("yolox_nano").model_dump() | update)


@pytest.mark.parametrize("config", ["openvino", {"type": "openvino"}, {"type": None}, {}])
def test_unknown_backend_lists_valid_names(config) -> None:
    with pytest.raises(UnknownBackendError, match="valid backends: auto, onnxruntime, tensorrt, torch"):
        create_backend(config, "unused.onnx")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, OnnxRuntimeConfig()),
        ("onnxruntime", OnnxRuntimeConfig()),
        ({"type": "onnxruntime", "intra_op_threads": 2}, OnnxRuntimeConfig(intra_op_threads=2)),
        (OnnxRuntimeConfig(batch_mode="loop"), OnnxRuntimeConfig(batch_mode="loop")),
    ],
)
def test_parse_backend_config(value, expected) -> None:
    assert parse_backend_config(value) == expected


def test_backend_config_rejects_unknown_field() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        parse_backend_config({"type": "onnxruntime", "threads": 2})


@pytest.mark.parametrize(
    ("config", "on_cuda", "expected"),
    [
        (OnnxRuntimeConfig(), False, ("loop", None)),
        (OnnxRuntimeConfig(intra_op_threads=2), False, ("dynamic", 8)),
        (OnnxRuntimeConfig(intra_op_threads=2, max_images_per_call=4), False, ("dynamic", 4)),
        (OnnxRuntimeConfig(), True, ("dynamic", None)),
        (OnnxRuntimeConfig(batch_mode="dynamic"), False, ("dynamic", None)),
        (OnnxRuntimeConfig(batch_mode="loop", intra_op_threads=2), True, ("loop", None)),
    ],
)
def test_resolve_batch_mode(config: OnnxRuntimeConfig, on_cuda: bool, expected: tuple) -> None:
    assert resolve_batch_mode(config, on_cuda) == expected


# --------------------------------------------------------------------------------- batch rewrite


def test_make_batch_dynamic_rewrites_yolox_reshapes(model_path) -> None:
    model = make_batch_dynamic(onnx.load(str(model_path("yolox_nano.onnx"))))
    initializers = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    shapes = [initializers[n.input[1]].tolist() for n in model.graph.node if n.op_type == "Reshape"]
    assert shapes == [[-1, 85, 2704], [-1, 85, 676], [-1, 85, 169]]
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.slow
def test_dynamic_batch_model_is_cached_by_hash(model_path, tmp_path: Path) -> None:
    source = model_path("yolox_nano.onnx")
    first = dynamic_batch_model_path(source, tmp_path)
    assert first.name == "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14-dynbatch-v1.onnx"
    stamp = first.stat().st_mtime_ns
    assert dynamic_batch_model_path(source, tmp_path) == first
    assert first.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary files left
    assert ort.InferenceSession(str(first)).get_inputs()[0].shape == ["batch", 3, 416, 416]


# --------------------------------------------------------------------------- real model, real frames


@pytest.fixture(scope="module")
def vtest_frames(media) -> dict[int, np.ndarray]:
    """BGR frames 0, 80, 160, 240 (0-based decode order) of the vtest clip."""
    wanted = (0, 80, 160, 240)
    frames = {}
    with av.open(str(media("opencv_vtest_480x360.avi"))) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                frames[index] = frame.to_ndarray(format="bgr24")
            if index >= max(wanted):
                break
    return frames


@pytest.fixture(scope="module")
def detectors(model_path, tmp_path_factory) -> dict[str, Detector]:
    model_path("yolox_nano.onnx")  # skip early if the data is absent
    cache = tmp_path_factory.mktemp("onnx-cache")
    return {
        mode: Detector.from_spec(
            "yolox_nano", backend_config=OnnxRuntimeConfig(batch_mode=mode, onnx_cache_dir=cache)
        )
        for mode in ("loop", "dynamic")
    }


@pytest.mark.slow
def test_frame_240_people_and_one_box_per_vehicle(detectors, vtest_frames) -> None:
    detector = detectors["loop"]
    (dets,) = detector.detect_images([vtest_frames[240]])
    assert detector.backend_name == "onnxruntime-cpu"
    assert detector.class_names[PERSON] == "person" and len(detector.class_names) == 80
    assert (dets.class_id == PERSON).sum() >= 6
    vehicles = dets[np.isin(dets.class_id, VEHICLES)]
    assert len(vehicles) >= 2
    assert (
        (dets.xyxy >= 0).all() and (dets.xyxy[:, [0, 2]] <= 480).all() and (dets.xyxy[:, [1, 3]] <= 360).all()
    )
    overlap = box_iou(vehicles.xyxy, vehicles.xyxy)[np.triu_indices(len(vehicles), k=1)]
    assert (overlap <= 0.7).all(), f"the van is reported more than once: IoU {overlap.max():.2f}"


@pytest.mark.slow
def test_dynamic_batch_equals_loop_at_batch_4(detectors, vtest_frames) -> None:
    loop, dynamic = detectors["loop"], detectors["dynamic"]
    batch = np.stack([loop.preprocess(_letterboxed(loop, f)[None])[0] for f in vtest_frames.values()])
    assert len(batch) == 4
    raw_loop, raw_dynamic = loop.backend.run(batch)[0], dynamic.backend.run(batch)[0]
    assert raw_dynamic.shape == raw_loop.shape == (4, CELLS, 85)
    np.testing.assert_allclose(raw_dynamic, raw_loop, atol=1e-3)
    images = list(vtest_frames.values())
    for a, b in zip(loop.detect_images(images), dynamic.detect_images(images), strict=True):
        np.testing.assert_allclose(a.to_array(), b.to_array(), atol=1e-3)


def _letterboxed(detector: Detector, image: np.ndarray) -> np.ndarray:
    from models.preprocess import letterbox

    return letterbox(image, detector.spec.input_width, detector.spec.input_height)[0]


@pytest.mark.slow
def test_detect_returns_model_input_pixels(detectors, vtest_frames) -> None:
    detector = detectors["loop"]
    image = vtest_frames[240]
    (in_model,) = detector.detect(_letterboxed(detector, image)[None])
    (in_image,) = detector.detect_images([image])
    scale = 416 / 480
    np.testing.assert_allclose(in_model.xyxy, in_image.xyxy * scale, atol=1e-3)
    assert in_model.xyxy[:, [1, 3]].max() <= 360 * scale + 1e-3  # nothing in the letterbox padding


@pytest.mark.slow
@pytest.mark.parametrize(
    "batch",
    [
        np.zeros((1, 416, 416, 3), np.float32),
        np.zeros((1, 360, 480, 3), np.uint8),
        np.zeros((416, 416, 3), np.uint8),
    ],
    ids=["float", "not-letterboxed", "no-batch-dim"],
)
def test_detect_rejects_wrong_input(detectors, batch: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"expects a uint8 batch of shape \(N, 416, 416, 3\), got"):
        detectors["loop"].detect(batch)


@pytest.mark.slow
def test_empty_batches_give_no_results(detectors) -> None:
    assert detectors["loop"].detect(np.zeros((0, 416, 416, 3), np.uint8)) == []
    assert detectors["loop"].detect_images([]) == []
