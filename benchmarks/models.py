"""Model throughput per backend and batch size, and Serve-batched detector throughput against its limit.

    python -m benchmarks.models --out results/models.json            # full: batches 1..64
    python -m benchmarks.models --out /tmp/m.json --batches 1 8 32 --seconds 0.3 --serve-seconds 4

Part 1 (``models``): images/s of ``backend.run`` alone for each model (YOLOX-nano, YuNet, LPD-YuNet,
plate OCR), each backend available on this machine (ONNX Runtime batch-dynamic and image loop;
PyTorch when installed; TensorRT on GPU nodes with it; ``auto``'s choice is listed) and each batch size.
Inputs are real images pre-processed exactly as in production.

Part 2 (``serve``): the detector behind Ray Serve (``serve_apps.detector``, one replica, the same
backend and thread budget) fed micro-batches by concurrent callers, against ``Detector.detect`` called
in-process on model-size batches: ``ratio_to_limit = serve images/s / in-process images/s`` (target
>= 0.9: Serve's batching should cost under 10%). A tiny local Ray is started for this part only.

Timings on a shared machine drift: each configuration runs ``--rounds`` times interleaved, the best
round is reported (and the median, for honesty).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.report import write_results
from models.backends.auto import choose_backends, probe_environment
from models.backends.base import InferenceBackend
from models.backends.registry import create_backend
from models.data import DataLocator
from models.lpd import lpd_preprocess
from models.plate_ocr import ocr_preprocess
from models.preprocess import letterbox
from models.yunet import yunet_preprocess


def _read(locator: DataLocator, name: str) -> np.ndarray:
    image = cv2.imread(str(locator.resolve(f"media/{name}")))
    if image is None:
        raise FileNotFoundError(name)
    return image


def _yolox_inputs(locator: DataLocator) -> np.ndarray:
    images = [_read(locator, n) for n in ("plate_car_parking.png", "faces_two_people.jpg")]
    return np.stack([letterbox(i, 416, 416)[0] for i in images]).transpose(0, 3, 1, 2).astype(np.float32)


MODELS: dict[str, tuple[str, Callable[[DataLocator], np.ndarray]]] = {
    "yolox_nano": ("models/yolox_nano.onnx", _yolox_inputs),
    "yunet": (
        "models/face_detection_yunet_2023mar.onnx",
        lambda loc: yunet_preprocess([_read(loc, "faces_two_people.jpg"), _read(loc, "face_obama.jpg")])[0],
    ),
    "lpd_yunet": (
        "models/license_plate_detection_lpd_yunet_2023mar.onnx",
        lambda loc: lpd_preprocess([_read(loc, "plate_car_parking.png")]),
    ),
    "plate_ocr": (
        "models/cct_xs_v1_global.onnx",
        lambda loc: ocr_preprocess(
            [_read(loc, "plate_crop_AD799KB.png"), _read(loc, "plate_crop_KRW301.png")]
        ),
    ),
}


def available_backends(threads: int) -> dict[str, dict[str, Any]]:
    """Backend configs worth measuring here (the GPU ones only where they can start)."""
    env = probe_environment()
    configs: dict[str, dict[str, Any]] = {
        "onnxruntime-dynamic": {"type": "onnxruntime", "batch_mode": "dynamic", "intra_op_threads": threads},
        "onnxruntime-loop": {"type": "onnxruntime", "batch_mode": "loop", "intra_op_threads": threads},
    }
    if env.onnx2torch:
        device = "cuda" if env.torch_cuda else "cpu"
        configs[f"torch-{device}"] = {"type": "torch", "device": device, "cpu_threads": threads}
    if env.tensorrt and env.cuda_gpu:
        configs["tensorrt"] = {"type": "tensorrt"}
    return configs


def measure(run: Callable[[np.ndarray], Any], batch: np.ndarray, seconds: float) -> float:
    """Images/s of ``run(batch)`` for about ``seconds`` after one warm-up call (at least 2 timed calls)."""
    run(batch)
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 2:
        run(batch)
        calls += 1
    return calls * len(batch) / elapsed


def bench_models(args: argparse.Namespace, locator: DataLocator) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for model in args.models:
        file, make_inputs = MODELS[model]
        path = locator.resolve(file)
        inputs = make_inputs(locator)
        backends: dict[str, InferenceBackend] = {}
        for label, config in available_backends(args.threads).items():
            if label in args.skip_backends:
                continue
            try:
                backends[label] = create_backend(config, path)
            except Exception as exc:  # a backend that cannot start here is reported, not fatal
                rows.append({"model": model, "backend": label, "error": f"{type(exc).__name__}: {exc}"[:300]})
        samples: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.rounds):
            for label, backend in backends.items():
                for size in args.batches:
                    if label == "torch-cpu" and size > args.torch_cpu_max_batch:
                        continue  # a parity path on CPUs, not a production one: keep the run short
                    batch = np.ascontiguousarray(inputs[np.arange(size) % len(inputs)])
                    samples.setdefault((label, size), []).append(measure(backend.run, batch, args.seconds))
        for (label, size), values in samples.items():
            rows.append(
                {
                    "model": model,
                    "backend": label,
                    "backend_name": backends[label].name,
                    "batch": size,
                    "images_per_s": round(max(values), 1),
                    "images_per_s_median": round(statistics.median(values), 1),
                }
            )
    return rows


async def _drive(handle: Any, frames: np.ndarray, micro: int, inflight: int, seconds: float) -> float:
    """Keep ``inflight`` micro-batches of ``micro`` frames outstanding for ``seconds``; frames/s."""
    done = 0
    stop = time.perf_counter() + seconds

    async def caller(offset: int) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            index = (np.arange(micro) + offset) % len(frames)
            await handle.detect.remote(frames[index])
            done += micro

    start = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(inflight)))
    return done / (time.perf_counter() - start)


def bench_serve(args: argparse.Namespace, locator: DataLocator) -> dict[str, Any]:
    from ray import serve

    from cctv import runtime
    from models.detector import Detector

    backend = {"type": "onnxruntime", "batch_mode": "dynamic", "intra_op_threads": args.threads}
    detector = Detector.from_spec("yolox_nano", backend_config=backend)
    images = [_read(locator, n) for n in ("plate_car_parking.png", "faces_two_people.jpg")]
    frames = np.stack([letterbox(i, 416, 416)[0] for i in images])
    model_batch = args.serve_batch
    full = np.ascontiguousarray(frames[np.arange(model_batch) % len(frames)])
    # in-process limit: what one replica does per batch (uint8 -> float, model, decode)
    raw = [measure(detector.detect, full, args.serve_seconds / 2) for _ in range(args.rounds)]

    runtime.start_local_ray(num_cpus=2)
    try:
        runtime.deploy_detector(
            {
                "backend": backend,
                "max_batch_frames": model_batch,
                "batch_wait_timeout_s": 0.02,
                "num_cpus": 0.5,
                "min_replicas": 1,
                "max_replicas": 1,
                "max_ongoing_requests": 64,
            }
        )
        handle = serve.get_deployment_handle("Detector", app_name=runtime.DETECTOR_APP)
        inflight = 2 * max(
            1, model_batch // args.micro_batch
        )  # one model batch queued behind the running one
        asyncio.run(_drive(handle, frames, args.micro_batch, inflight, 1.0))  # warm-up
        served = [
            asyncio.run(_drive(handle, frames, args.micro_batch, inflight, args.serve_seconds))
            for _ in range(args.rounds)
        ]
        info = handle.info.remote().result()
    finally:
        runtime.shutdown()
    limit, best = max(raw), max(served)
    return {
        "model": "yolox_nano",
        "backend": info["backend"],
        "model_batch": model_batch,
        "micro_batch": args.micro_batch,
        "inflight_requests": inflight,
        "raw_images_per_s": round(limit, 1),
        "serve_images_per_s": round(best, 1),
        "serve_images_per_s_median": round(statistics.median(served), 1),
        "ratio_to_limit": round(best / limit, 3),
        "target_ratio": 0.9,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Model throughput", "", "images/s of `backend.run` (best of rounds; median in the JSON).", ""]
    rows = [r for r in result["models"] if "error" not in r]
    batches = sorted({r["batch"] for r in rows})
    lines.append("| model | backend | " + " | ".join(f"b={b}" for b in batches) + " |")
    lines.append("|---|---|" + "---|" * len(batches))
    for model, label in dict.fromkeys((r["model"], r["backend"]) for r in rows):
        cells = {r["batch"]: r["images_per_s"] for r in rows if (r["model"], r["backend"]) == (model, label)}
        lines.append(f"| {model} | {label} | " + " | ".join(str(cells.get(b, "")) for b in batches) + " |")
    for r in result["models"]:
        if "error" in r:
            lines.append(f"\n{r['model']} on {r['backend']}: not available ({r['error']})")
    sr = result.get("serve")
    if sr:
        lines += [
            "",
            "## Serve-batched detector vs its in-process limit",
            "",
            f"YOLOX-nano on {sr['backend']}, model batch {sr['model_batch']}, "
            f"micro-batches of {sr['micro_batch']} frames, {sr['inflight_requests']} in flight:",
            f"in-process {sr['raw_images_per_s']} images/s, through Serve "
            f"{sr['serve_images_per_s']} images/s, **ratio_to_limit {sr['ratio_to_limit']}** "
            f"(target >= {sr['target_ratio']}).",
        ]
    lines += ["", f"auto would choose: {result['auto_choice']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="JSON file; a .md summary is written beside it"
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument(
        "--skip-backends", nargs="*", default=[], help="labels to leave out, e.g. onnxruntime-loop"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads per backend (the replica's budget)"
    )
    parser.add_argument(
        "--seconds", type=float, default=0.5, help="timed seconds per configuration and round"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--torch-cpu-max-batch", type=int, default=8, help="largest batch timed on torch-cpu")
    parser.add_argument("--serve-seconds", type=float, default=6.0, help="0 skips the Serve comparison")
    parser.add_argument("--serve-batch", type=int, default=16, help="detector model batch (max_batch_frames)")
    parser.add_argument(
        "--micro-batch", type=int, default=8, help="frames per request, as a DecoderGroup sends"
    )
    args = parser.parse_args(argv)

    locator = DataLocator.from_env()
    env = probe_environment()
    auto = choose_backends(env, ("tensorrt", "torch", "onnxruntime"))[0][0]
    result: dict[str, Any] = {
        "auto_choice": auto,
        "environment": env.__dict__,
        "models": bench_models(args, locator),
    }
    if args.serve_seconds > 0:
        result["serve"] = bench_serve(args, locator)
    md = write_results(args.out, result, markdown(result))
    print(md.read_text())


if __name__ == "__main__":
    main()
