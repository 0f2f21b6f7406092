"""Backends: TensorRT cache-key/profile/build-once logic, automatic choice, and parity across backends."""

from __future__ import annotations

import importlib.util
import itertools
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from models.backends.auto import AutoConfig, Environment, choose_backends, create_auto_backend
from models.backends.onnxruntime import OnnxRuntimeBackend, OnnxRuntimeConfig
from models.backends.registry import BackendConfig, create_backend, parse_backend_config
from models.backends.tensorrt import (
    ProfileShapes,
    TensorRTConfig,
    engine_cache_key,
    exclusive_file_lock,
    get_or_build,
    gpu_slug,
    onnx_input,
    optimization_profile,
)
from models.backends.torch_cuda import TorchConfig, bucket_for
from models.detections import Detections
from models.detector import Detector
from models.spec import get_model_spec

HAS_TORCH = (
    importlib.util.find_spec("torch") is not None and importlib.util.find_spec("onnx2torch") is not None
)
needs_torch = pytest.mark.skipif(
    not HAS_TORCH, reason="torch/onnx2torch not installed (pip install '.[torch]')"
)
SHA = "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14"


# -- TensorRT: optimisation profile and engine cache key (pure) -----------------------------------------
@pytest.mark.parametrize(
    ("shape", "batches", "expected", "raises"),
    [
        (["batch", 3, 416, 416], (1, 8, 64), ((1, 3, 416, 416), (8, 3, 416, 416), (64, 3, 416, 416)), None),
        ([None, 64, 128, 3], (2, 2, 4), ((2, 64, 128, 3), (2, 64, 128, 3), (4, 64, 128, 3)), None),
        ([1, 3, 640, 640], (1, 8, 64), ((1, 3, 640, 640),) * 3, None),  # fixed batch: min = opt = max
        (["batch", 3, "h", "w"], (1, 8, 64), None, "dimension 2 is dynamic"),
        (["batch", 3, 416, 416], (1, 128, 64), None, "min <= opt <= max"),
        (["batch", 3, 416, 416], (0, 1, 1), None, "min <= opt <= max"),
        ([], (1, 1, 1), None, "no shape"),
    ],
)
def test_optimization_profile(shape, batches, expected, raises):
    if raises:
        with pytest.raises(ValueError, match=raises):
            optimization_profile("images", shape, *batches)
        return
    assert optimization_profile("images", shape, *batches) == ProfileShapes("images", *expected)


def test_profile_of_the_rewritten_yolox_graph(model_path):
    from models.onnx_batch import dynamic_batch_model_path

    name, dims = onnx_input(dynamic_batch_model_path(model_path("yolox_nano.onnx")))
    profile = optimization_profile(name, dims, 1, 16, 64)
    assert (profile.input_name, profile.min, profile.max) == ("images", (1, 3, 416, 416), (64, 3, 416, 416))


def test_engine_cache_key_names_model_gpu_version_and_settings():
    key = engine_cache_key(SHA, "NVIDIA H100 80GB HBM3", "10.3.0", {"fp16": True})
    assert key.startswith(f"{SHA}-nvidia-h100-80gb-hbm3-trt10.3.0-")
    assert key == engine_cache_key(SHA, "NVIDIA H100 80GB HBM3", "10.3.0", {"fp16": True})  # deterministic
    others = [
        engine_cache_key("0" * 64, "NVIDIA H100 80GB HBM3", "10.3.0", {"fp16": True}),
        engine_cache_key(SHA, "NVIDIA H200", "10.3.0", {"fp16": True}),
        engine_cache_key(SHA, "NVIDIA H100 80GB HBM3", "10.4.0", {"fp16": True}),
        engine_cache_key(SHA, "NVIDIA H100 80GB HBM3", "10.3.0", {"fp16": False}),
    ]
    assert len({key, *others}) == 5
    assert "/" not in engine_cache_key(SHA, "GPU / weird: name", "10.3.0+cuda12")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("abc", "H100", "10.3"), "64 lowercase hex"),
        ((SHA, "!!!", "10.3"), "empty"),
        ((SHA, "H100", "++"), "empty"),
    ],
)
def test_engine_cache_key_rejects_bad_parts(args, match):
    with pytest.raises(ValueError, match=match):
        engine_cache_key(*args)


def test_gpu_slug():
    assert gpu_slug("NVIDIA GeForce RTX 4090") == "nvidia-geforce-rtx-4090"


def test_tensorrt_config_validates_profile_order():
    with pytest.raises(ValueError, match="min_batch <= opt_batch <= max_batch"):
        TensorRTConfig(min_batch=4, opt_batch=2)
    assert parse_backend_config({"type": "tensorrt", "max_batch": 32}).max_batch == 32


# -- TensorRT: built once per node ----------------------------------------------------------------------
def test_get_or_build_builds_once_under_concurrency(tmp_path):
    calls: list[int] = []
    target = tmp_path / "engines" / "model.engine"

    def build() -> bytes:
        calls.append(1)
        time.sleep(0.2)  # long enough for every other caller to be waiting on the lock
        return b"serialized-engine"

    results: list[tuple[bytes, bool]] = []
    threads = [
        threading.Thread(target=lambda: results.append(get_or_build(target, build, 10))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert sorted(built for _, built in results) == [False, False, False, True]
    assert {data for data, _ in results} == {b"serialized-engine"}
    assert target.read_bytes() == b"serialized-engine"
    assert not list(target.parent.glob("*.tmp"))


def test_get_or_build_failure_leaves_no_engine_and_next_caller_retries(tmp_path):
    target = tmp_path / "model.engine"

    def broken() -> bytes:
        raise RuntimeError("TensorRT failed to build")

    with pytest.raises(RuntimeError, match="failed to build"):
        get_or_build(target, broken)
    assert not target.exists()
    assert get_or_build(target, lambda: b"ok") == (b"ok", True)


def test_lock_wait_times_out_with_a_clear_message(tmp_path):
    target = tmp_path / "model.engine"
    with (
        exclusive_file_lock(tmp_path / "model.engine.lock", 1),
        pytest.raises(TimeoutError, match="building"),
    ):
        get_or_build(target, lambda: b"never", lock_timeout_s=0.3)


# -- automatic choice -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            Environment(cuda_gpu=True, tensorrt=True, torch_cuda=True, onnx2torch=True),
            ["tensorrt", "torch", "onnxruntime"],
        ),
        (
            Environment(cuda_gpu=True, tensorrt=False, torch_cuda=True, onnx2torch=True),
            ["torch", "onnxruntime"],
        ),
        (
            Environment(cuda_gpu=True, tensorrt=True, torch_cuda=True, onnx2torch=False),
            ["tensorrt", "onnxruntime"],
        ),
        (Environment(cuda_gpu=False, tensorrt=False, torch_cuda=False, onnx2torch=True), ["onnxruntime"]),
    ],
)
def test_choose_backends(env, expected):
    assert [name for name, _ in choose_backends(env, ("tensorrt", "torch", "onnxruntime"))] == expected


def test_choose_backends_respects_order_and_ends_with_onnxruntime():
    env = Environment(cuda_gpu=True, tensorrt=True, torch_cuda=True, onnx2torch=True)
    assert [n for n, _ in choose_backends(env, ("torch",))] == ["torch", "onnxruntime"]
    with pytest.raises(ValueError, match="unknown backend"):
        choose_backends(env, ("openvino",))


def test_auto_on_this_machine_and_fallback_when_tensorrt_fails(model_path):
    path = model_path("face_detection_yunet_2023mar.onnx")
    assert create_backend("auto", path).name.startswith("onnxruntime")
    # An environment claiming TensorRT: its start fails here (no tensorrt/GPU), so auto falls back.
    claims = Environment(cuda_gpu=True, tensorrt=True, torch_cuda=True, onnx2torch=False)
    assert create_auto_backend(AutoConfig(), path, claims).name == "onnxruntime-cpu"


def test_explicit_tensorrt_never_falls_back(model_path):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here; this test checks the error where it is not")
    with pytest.raises(ImportError, match="tensorrt"):
        create_backend({"type": "tensorrt"}, model_path("yolox_nano.onnx"))


def test_backend_union_parses_every_member():
    from pydantic import TypeAdapter

    adapter = TypeAdapter(BackendConfig)
    for value, kind in [
        ({"type": "onnxruntime"}, OnnxRuntimeConfig),
        ({"type": "tensorrt"}, TensorRTConfig),
        ({"type": "torch", "precision": "fp32"}, TorchConfig),
        ({"type": "auto"}, AutoConfig),
    ]:
        assert isinstance(adapter.validate_python(value), kind)


@pytest.mark.parametrize(("n", "expected"), [(1, 1), (3, 4), (16, 16), (17, 32), (300, 300)])
def test_bucket_for(n, expected):
    assert bucket_for(n, (1, 2, 4, 8, 16, 32, 64, 128, 256)) == expected


# -- parity: every backend available here gives the same detections --------------------------------------
@pytest.fixture(scope="module")
def frames(media) -> list[np.ndarray]:
    with av.open(str(media("opencv_vtest_480x360.avi"))) as container:
        vtest = next(itertools.islice(container.decode(video=0), 240, None)).to_ndarray(format="bgr24")
    stills = [cv2.imread(str(media(name))) for name in ("plate_car_parking.png", "faces_two_people.jpg")]
    return [vtest, *stills]


def _backends(path: Path) -> dict[str, object]:
    backends = {
        "ort-dynamic": OnnxRuntimeBackend.from_config(OnnxRuntimeConfig(batch_mode="dynamic"), path),
        "ort-loop": OnnxRuntimeBackend.from_config(OnnxRuntimeConfig(batch_mode="loop"), path),
    }
    if HAS_TORCH:
        backends["torch-cpu-fp32"] = create_backend({"type": "torch", "device": "cpu"}, path)
    return backends


def _assert_same(
    reference: Detections, other: Detections, box_px: float, score: float, label: str = ""
) -> None:
    assert len(other) == len(reference), label
    for box, conf, cls in zip(reference.xyxy, reference.confidence, reference.class_id, strict=True):
        nearest = int(np.abs(other.xyxy - box).max(axis=1).argmin())
        assert np.abs(other.xyxy[nearest] - box).max() <= box_px, (label, box, other.xyxy[nearest])
        assert abs(other.confidence[nearest] - conf) <= score and other.class_id[nearest] == cls, label


def test_detector_parity_across_backends(model_path, frames):
    spec = get_model_spec("yolox_nano")
    reference = Detector.from_spec(spec, backend_config={"type": "onnxruntime", "batch_mode": "loop"})
    expected = reference.detect_images(frames)
    assert sum(d.class_id.tolist().count(0) for d in expected[:1]) == 9  # SOURCES.md: 9 persons in vtest 240
    for name, backend in _backends(model_path("yolox_nano.onnx")).items():
        got = Detector(spec, backend, reference.class_names).detect_images(frames)
        for ref, other in zip(expected, got, strict=True):
            _assert_same(ref, other, box_px=0.05, score=1e-3, label=name)


@pytest.mark.parametrize(
    ("model", "shape", "dtype"),
    [
        ("face_detection_yunet_2023mar.onnx", (3, 3, 640, 640), np.float32),
        ("license_plate_detection_lpd_yunet_2023mar.onnx", (3, 3, 240, 320), np.float32),
        ("cct_xs_v1_global.onnx", (3, 64, 128, 3), np.uint8),
    ],
)
def test_second_stage_models_parity(model_path, model, shape, dtype):
    batch = np.random.default_rng(1).integers(0, 256, shape).astype(dtype)
    outputs = {name: b.run(batch) for name, b in _backends(model_path(model)).items()}
    reference = outputs.pop("ort-loop")
    for name, got in outputs.items():
        assert [o.shape for o in got] == [o.shape for o in reference], name
        for a, b in zip(got, reference, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-3 * max(1.0, float(np.abs(b).max())), err_msg=name)


@needs_torch
def test_frozen_constants_give_one_graph_without_breaks(model_path):
    """onnx2torch reads Reshape/Slice/Resize constants on every call; frozen, dynamo traces one graph."""
    import onnx
    import torch

    from models.backends.torch_cuda import freeze_shape_constants, import_onnx2torch
    from models.onnx_batch import dynamic_batch_model_path

    source = dynamic_batch_model_path(model_path("face_detection_yunet_2023mar.onnx"))
    module = import_onnx2torch().convert(onnx.load(str(source))).eval()
    assert freeze_shape_constants(module) > 0
    torch._dynamo.reset()
    explained = torch._dynamo.explain(module)(torch.zeros(2, 3, 640, 640))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)


# -- GPU paths (skipped without a GPU) ----------------------------------------------------------------
def _cuda() -> bool:
    if not HAS_TORCH:
        return False
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="no CUDA GPU visible to torch (GPU nodes run this)")
def test_torch_cuda_fp16_parity(model_path, frames):
    spec = get_model_spec("yolox_nano")
    reference = Detector.from_spec(spec, backend_config="onnxruntime")
    gpu = Detector.from_spec(spec, backend_config={"type": "torch", "device": "cuda"})
    assert gpu.backend_name.startswith("torch-cuda-fp16")
    for ref, got in zip(reference.detect_images(frames), gpu.detect_images(frames), strict=True):
        _assert_same(ref, got, box_px=1.0, score=0.01)


@pytest.mark.gpu
@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None or not _cuda(),
    reason="needs tensorrt (NVIDIA's index, not installable here) and a CUDA GPU",
)
def test_tensorrt_builds_once_and_matches_onnxruntime(model_path, frames, tmp_path):
    spec = get_model_spec("yolox_nano")
    config = {"type": "tensorrt", "engine_cache_dir": str(tmp_path), "max_batch": 8, "opt_batch": 4}
    first = Detector.from_spec(spec, backend_config=config)
    assert len(list(tmp_path.glob("*.engine"))) == 1
    second = Detector.from_spec(spec, backend_config=config)  # loads the cached engine
    assert len(list(tmp_path.glob("*.engine"))) == 1
    reference = Detector.from_spec(spec, backend_config="onnxruntime")
    for ref, a, b in zip(*(d.detect_images(frames) for d in (reference, first, second)), strict=True):
        _assert_same(ref, a, box_px=1.0, score=0.01)
        _assert_same(ref, b, box_px=1.0, score=0.01)
