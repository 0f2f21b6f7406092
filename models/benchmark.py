"""Backend throughput: images/s of a model at several batch sizes, batch modes and thread budgets.

    python -m models.benchmark --model yolox_nano --batches 1 4 8 16 --threads 1 2

Only ``backend.run`` is timed (the part ``batch_mode`` and threads change); inputs are letterboxed
real frames when the demo clip is available, random pixels otherwise. On a shared machine timings
drift, so configurations are interleaved round by round and both the best and the median round are
reported.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import av
import numpy as np

from models.backends.onnxruntime import OnnxRuntimeConfig
from models.data import DEMO_CLIPS, DataFileMissing, DataLocator
from models.detector import Detector
from models.preprocess import letterbox
from models.spec import get_model_spec


def _frames(detector: Detector, count: int) -> np.ndarray:
    spec = detector.spec
    try:
        clip = DataLocator.from_env().resolve(DEMO_CLIPS[0])
    except DataFileMissing:  # timing does not depend on the pixels
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (count, spec.input_height, spec.input_width, 3), np.uint8)
    with av.open(str(clip)) as container:
        images = [f.to_ndarray(format="bgr24") for f in itertools.islice(container.decode(video=0), count)]
    return np.stack([letterbox(im, spec.input_width, spec.input_height)[0] for im in images])


def measure(detector: Detector, tensor: np.ndarray, seconds: float) -> float:
    """Images/s of ``detector.backend.run`` on ``tensor`` for about ``seconds`` (after one warm-up)."""
    detector.backend.run(tensor)
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or calls < 2:
        detector.backend.run(tensor)
        calls += 1
    return calls * len(tensor) / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="yolox_nano")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--modes", nargs="+", default=["dynamic", "loop", "auto"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="timed seconds per configuration and round"
    )
    args = parser.parse_args(argv)

    spec = get_model_spec(args.model)
    detectors = {
        (mode, threads): Detector.from_spec(
            spec, backend_config=OnnxRuntimeConfig(batch_mode=mode, intra_op_threads=threads)
        )
        for mode in args.modes
        for threads in args.threads
    }
    frames = _frames(next(iter(detectors.values())), max(args.batches))
    results: dict[tuple[str, int, int], list[float]] = {}
    for _ in range(args.rounds):
        for (mode, threads), detector in detectors.items():
            for batch in args.batches:
                tensor = detector.preprocess(frames[np.arange(batch) % len(frames)])
                results.setdefault((mode, threads, batch), []).append(measure(detector, tensor, args.seconds))
    device = next(iter(detectors.values())).backend_name
    print(f"{spec.name} on {device}: images/s, best / median of {args.rounds}")
    print(f"{'mode':8} {'threads':>7} {'batch':>5} {'best':>7} {'median':>7}  resolved")
    for (mode, threads, batch), values in sorted(results.items()):
        backend = detectors[mode, threads].backend
        resolved = (
            f"{getattr(backend, 'batch_mode', '')} per call {getattr(backend, 'max_images_per_call', '')}"
        )
        best, median = max(values), statistics.median(values)
        print(f"{mode:8} {threads:7d} {batch:5d} {best:7.1f} {median:7.1f}  {resolved}")


if __name__ == "__main__":
    main()
