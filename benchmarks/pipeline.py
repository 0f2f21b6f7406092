"""Pipeline benchmark: what the whole system costs per analysed frame, against its parts.

Three measurements in one run, on the same clips and sampling:
- decode-only: ``CameraDecoder`` alone (demux, decode, sample by pts, letterbox), thread CPU time;
- model-only: the detector alone on batches of letterboxed frames, process CPU time;
- pipeline: Ray + Serve + DecoderGroups + Redis with cameras decoded as fast as possible
  (``realtime=False``: files block instead of dropping), CPU of every process of the local
  deployment (driver, Ray workers and daemons, Redis) over a steady window.

``ratio_to_limit`` = pipeline CPU per frame / (decode + model CPU per frame): 1.0 would mean the
distribution costs nothing; the excess is Ray, Serve, serialisation and stream writes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console

from benchmarks.report import write_results
from decoders.camera_decoder import CameraDecoder
from decoders.config import CameraSpec
from decoders.frame import DecodedFrame, ModelInput
from models.data import DEMO_CLIPS, DataLocator


class PipelineBenchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out: Path
    cameras: int = Field(4, ge=1)
    fps: float = Field(5.0, gt=0)
    duration_s: float = Field(30.0, gt=0)
    warmup_s: float = Field(10.0, ge=0)
    idle_s: float = Field(5.0, gt=0, description="Idle measurement before cameras are added.")
    model_batch: int = Field(16, ge=1)


def _spec(camera_id: str, clip: Path, fps: float, loop: bool) -> CameraSpec:
    return CameraSpec(camera_id=camera_id, url=str(clip), fps=fps, loop=loop, realtime=False)


def measure_decode(clip: Path, fps: float, model_input: ModelInput) -> dict:
    """Decode one pass of ``clip`` in this thread; CPU seconds per sampled frame."""
    frames: list[DecodedFrame] = []
    decoder = CameraDecoder(_spec("bench", clip, fps, loop=False), model_input)
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    decoder.run(lambda f: frames.append(f) if len(frames) < 64 else None, threading.Event())
    cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
    health = decoder.health()
    return {
        "clip": clip.name,
        "frames_decoded": health.frames_decoded,
        "frames_sampled": health.frames_sampled,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "cpu_s_per_sampled_frame": cpu / max(1, health.frames_sampled),
        "sample_images": np.stack([f.image for f in frames[:32]]),
    }


def measure_model(images: np.ndarray, batch: int, repeats: int = 8) -> dict:
    from models.detector import Detector
    from models.spec import get_model_spec

    detector = Detector.from_spec(get_model_spec("yolox_nano"))
    batch_images = np.resize(images, (batch, *images.shape[1:]))
    detector.detect(batch_images)  # warm-up
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(repeats):
        detector.detect(batch_images)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    frames = batch * repeats
    return {
        "backend": detector.backend_name,
        "batch": batch,
        "frames": frames,
        "images_per_s": frames / wall,
        "cpu_s_per_frame": cpu / frames,
    }


def _tree_cpu_seconds() -> float:
    """CPU seconds of this process and every descendant (Ray daemons/workers, Redis)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # exited between listing and reading
            total += sum(child.cpu_times()[:2])
    return total


def measure_pipeline(options: PipelineBenchOptions, clips: list[Path], console: Console) -> dict:
    import ray

    from cctv import runtime
    from cctv.redis_server import RedisServer

    cameras = [
        _spec(f"bench-{i:03d}", clips[i % len(clips)], options.fps, loop=True) for i in range(options.cameras)
    ]
    with RedisServer() as server:
        runtime.start_local_ray()
        try:
            runtime.deploy_detector({"max_replicas": 1})
            # The fixed cost of the deployment with no camera (Ray daemons, Serve controller and proxy,
            # the idle replica, Redis): what a cluster pays whatever its load.
            idle_cpu0, idle_wall0 = _tree_cpu_seconds(), time.perf_counter()
            time.sleep(options.idle_s)
            idle_rate = (_tree_cpu_seconds() - idle_cpu0) / (time.perf_counter() - idle_wall0)
            groups = runtime.start_groups(cameras, server.url, cameras_per_group=8)
            console.print(
                f"pipeline: warm-up {options.warmup_s:.0f}s, then {options.duration_s:.0f}s measured"
            )
            time.sleep(options.warmup_s)
            frames0 = sum(c.frames_analysed for c in runtime.collect_status(groups))
            cpu0, wall0 = _tree_cpu_seconds(), time.perf_counter()
            time.sleep(options.duration_s)
            statuses = runtime.collect_status(groups)
            cpu, wall = _tree_cpu_seconds() - cpu0, time.perf_counter() - wall0
            frames = sum(c.frames_analysed for c in statuses) - frames0
            dropped: dict[str, int] = {}
            for cam in statuses:
                for reason, n in cam.dropped.items():
                    dropped[str(reason)] = dropped.get(str(reason), 0) + n
            status = ray.get(groups[0].status.remote())
            runtime.stop_groups(groups)
        finally:
            runtime.shutdown()
    return {
        "cameras": options.cameras,
        "frames_analysed": frames,
        "wall_s": round(wall, 2),
        "analysed_frames_per_s": frames / wall,
        "cpu_s": round(cpu, 2),
        "cpu_s_per_frame": cpu / max(1, frames),
        "idle_cpu_s_per_s": idle_rate,
        "cpu_s_per_frame_above_idle": (cpu - idle_rate * wall) / max(1, frames),
        "mean_batch_frames": status["mean_batch_frames"],
        "dropped": dropped,
    }


def run(options: PipelineBenchOptions, console: Console | None = None) -> dict:
    console = console or Console(emoji=False)
    locator = DataLocator.from_env()
    clips = [locator.resolve(p, fetch=True) for p in DEMO_CLIPS]
    used = [clips[i % len(clips)] for i in range(options.cameras)]
    model_input = ModelInput()
    console.print("decode-only...")
    decode = {clip.name: measure_decode(clip, options.fps, model_input) for clip in dict.fromkeys(used)}
    images = np.concatenate([d.pop("sample_images") for d in decode.values()])
    decode_cpu = float(np.mean([decode[c.name]["cpu_s_per_sampled_frame"] for c in used]))
    console.print("model-only...")
    model = measure_model(images, options.model_batch)
    console.print("pipeline...")
    pipeline = measure_pipeline(options, clips, console)
    limit = decode_cpu + model["cpu_s_per_frame"]
    result = {
        "benchmark": "pipeline",
        "options": options.model_dump(mode="json"),
        "decode_only": {"per_clip": decode, "cpu_s_per_frame": decode_cpu},
        "model_only": model,
        "pipeline": pipeline,
        "limit_cpu_s_per_frame": limit,
        "ratio_to_limit": pipeline["cpu_s_per_frame"] / limit,
    }
    md = (
        f"# Pipeline benchmark\n\n"
        f"{options.cameras} cameras, sampled at {options.fps} fps by presentation time, decoded as fast as "
        f"possible; {pipeline['wall_s']} s measured after {options.warmup_s:.0f} s warm-up.\n\n"
        f"| stage | CPU ms per analysed frame |\n|---|---|\n"
        f"| decode only (CameraDecoder) | {decode_cpu * 1e3:.2f} |\n"
        f"| model only ({model['backend']}, batch {model['batch']}) "
        f"| {model['cpu_s_per_frame'] * 1e3:.2f} |\n"
        f"| limit = decode + model | {limit * 1e3:.2f} |\n"
        f"| **pipeline** (Ray + Serve + Redis, all processes) "
        f"| **{pipeline['cpu_s_per_frame'] * 1e3:.2f}** |\n\n"
        f"- of which the deployment's idle cost: {pipeline['idle_cpu_s_per_s']:.3f} CPU-s/s; above idle, "
        f"**{pipeline['cpu_s_per_frame_above_idle'] * 1e3:.2f} ms** per frame "
        f"(ratio {pipeline['cpu_s_per_frame_above_idle'] / limit:.2f})\n"
        f"- analysed frames/s: **{pipeline['analysed_frames_per_s']:.1f}** "
        f"(mean micro-batch {pipeline['mean_batch_frames']} frames)\n"
        f"- ratio_to_limit (pipeline CPU per frame / limit): **{result['ratio_to_limit']:.2f}**\n"
        f"- dropped: {pipeline['dropped'] or 'none'}\n"
    )
    md_path = write_results(options.out, result, md)
    console.print(md)
    console.print(f"wrote {options.out} and {md_path}")
    return result
