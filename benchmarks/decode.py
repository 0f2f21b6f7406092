"""Decode benchmark: what one camera costs in CPU, against FFmpeg's own CLI on the same clip.

    python -m benchmarks.decode --out results/decode.json     (also writes results/decode.md)

1. **Efficiency vs the limit.** For each clip, decoded frames per CPU-second of the decode stage
   (``CameraDecoder``: demux, decode, sample at 2 fps by pts, letterbox to 416x416; its thread CPU time)
   against ``ffmpeg -threads 1 -i CLIP -f null -`` (the child's CPU time from
   ``getrusage(RUSAGE_CHILDREN)``) in the same run. ``ratio_to_limit`` = ours / ffmpeg; target >= 0.9.
   Also a bare PyAV decode loop, to separate PyAV's cost from ours. Best of ``--repeats`` runs.
2. **Cameras per core, keyframes mode, 1080p, 2 s GOP** (generated with libx264 in a temp dir from a
   real clip scaled up, with a fixed fine texture so that keyframes have a camera-like size, ~300 KB):
   CPU seconds per second of video in keyframes mode -> cameras per core; the same for full decode at
   2 fps for comparison.

The system ``ffmpeg`` may be another FFmpeg version than the one inside PyAV's wheel; both are recorded.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from benchmarks.report import write_results
from decoders.camera_decoder import CameraDecoder
from decoders.config import CameraSpec
from decoders.frame import DecodedFrame, ModelInput
from models.data import DataFileMissing, DataLocator

CLIPS = (
    "media/opencv_vtest_480x360.avi",
    "media/intel_car-detection.mp4",
    "media/meva_school_G330_annotated.mp4",
)
TARGET_RATIO = 0.9


def ffmpeg_cpu(clip: Path) -> float:
    """CPU seconds (user + sys) of ``ffmpeg -threads 1 -i CLIP -f null -``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-threads", "1", "-i", str(clip)]
    subprocess.run([*cmd, "-an", "-f", "null", "-"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def ffmpeg_version() -> str | None:
    if shutil.which("ffmpeg") is None:
        return None
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else None


def pyav_decode_cpu(clip: Path) -> tuple[int, float]:
    """Bare PyAV: demux + decode every frame, one thread, no conversion."""
    start = time.thread_time()
    frames = 0
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for _ in container.decode(stream):
            frames += 1
    return frames, time.thread_time() - start


def camera_decoder_run(clip: Path, sampling: str, loops: int = 1, fps: float = 2.0) -> dict[str, Any]:
    """Run one CameraDecoder over ``clip`` (``loops`` passes), as fast as it goes, on this thread."""
    spec = CameraSpec(
        camera_id="bench", url=str(clip), sampling=sampling, fps=fps, realtime=False, loop=loops > 1
    )
    decoder = CameraDecoder(spec, ModelInput())
    stop = threading.Event()
    passes = {"n": 1, "last_index": -1}
    sampled = []

    def emit(frame: DecodedFrame) -> None:
        if frame.frame_index <= passes["last_index"]:
            passes["n"] += 1
            if passes["n"] > loops:
                stop.set()
                return
        passes["last_index"] = frame.frame_index
        sampled.append(frame.pts_s)

    process_start = time.process_time()
    decoder.run(emit, stop)
    health = decoder.health()
    return {
        "frames_decoded": health.frames_decoded,
        "frames_sampled": len(sampled),
        "cpu_s": health.cpu_seconds,
        "process_cpu_s": time.process_time() - process_start,
        "state": str(health.state),
        "decode_errors": health.decode_errors,
    }


def clip_info(clip: Path) -> dict[str, Any]:
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        keys = []
        total = 0
        count = 0
        for packet in container.demux(stream):
            if packet.size:
                count += 1
                total += packet.size
                if packet.is_keyframe:
                    keys.append(packet.size)
        duration = float(container.duration / 1e6) if container.duration else None
        return {
            "codec": stream.codec_context.name,
            "profile": stream.codec_context.profile,
            "width": stream.width,
            "height": stream.height,
            "packets": count,
            "duration_s": duration,
            "keyframes": len(keys),
            "mean_keyframe_kb": round(float(np.mean(keys)) / 1024, 1) if keys else None,
            "mean_packet_kb": round(total / max(1, count) / 1024, 1),
        }


def _source_images(source: Path | None, size: tuple[int, int]):
    """Endless BGR images at ``size``: a real clip scaled up (looped), or a moving gradient."""
    import cv2

    index = 0
    while True:
        if source is not None:
            with av.open(str(source)) as container:
                for frame in container.decode(video=0):
                    yield cv2.resize(frame.to_ndarray(format="bgr24"), size)
        else:
            x = np.arange(size[0], dtype=np.int32)
            row = ((x + 8 * index) % 256).astype(np.uint8)
            yield np.broadcast_to(row[None, :, None], (size[1], size[0], 3)).copy()
            index += 1


def make_1080p_gop2s(
    path: Path, source: Path | None, texture: int = 8, seconds: int = 12, fps: int = 25
) -> Path:
    """1920x1080 H.264 High, 25 fps, keyframe every 50 frames: a real clip scaled up plus a fixed fine
    texture of +/- ``texture`` levels (the fine detail of a real 1080p camera, which an upscaled clip
    lacks; it sets the keyframe size, and keyframe decode cost grows with it)."""
    texture_img = np.random.default_rng(0).integers(
        -texture, texture + 1, size=(1080, 1920, 3), dtype=np.int16
    )
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        stream.options = {
            "preset": "veryfast",
            "crf": "23",
            "g": "50",
            "keyint_min": "50",
            "sc_threshold": "0",
        }
        images = _source_images(source, (1920, 1080))
        for index in range(seconds * fps):
            image = np.clip(next(images).astype(np.int16) + texture_img, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def efficiency(clip: Path, repeats: int) -> dict[str, Any]:
    """Best of ``repeats`` for each contender, interleaved so that load from other processes hits all."""
    ours, decode_only, bare, ffmpeg = [], [], [], []
    has_ffmpeg = shutil.which("ffmpeg") is not None
    for _ in range(repeats):
        ours.append(camera_decoder_run(clip, "fps", fps=2.0))
        decode_only.append(camera_decoder_run(clip, "fps", fps=0.001))  # one frame letterboxed
        bare.append(pyav_decode_cpu(clip))
        if has_ffmpeg:
            ffmpeg.append(ffmpeg_cpu(clip))
    best = min(ours, key=lambda r: r["cpu_s"])
    frames = best["frames_decoded"]
    ours_rate = frames / best["cpu_s"]
    decode_rate = frames / min(r["cpu_s"] for r in decode_only)
    result: dict[str, Any] = {
        "clip": clip.name,
        **clip_info(clip),
        "frames": frames,
        "camera_decoder_fps_per_cpu_s": round(ours_rate, 1),  # sampled at 2 fps + letterbox
        "camera_decoder_decode_only_fps_per_cpu_s": round(decode_rate, 1),
        "camera_decoder_process_cpu_s": round(best["process_cpu_s"], 3),
        "camera_decoder_thread_cpu_s": round(best["cpu_s"], 3),
        "pyav_bare_fps_per_cpu_s": round(max(n / cpu for n, cpu in bare), 1),
    }
    if ffmpeg:
        ffmpeg_rate = frames / min(ffmpeg)
        result["ffmpeg_fps_per_cpu_s"] = round(ffmpeg_rate, 1)
        result["ratio_to_limit"] = round(ours_rate / ffmpeg_rate, 3)
        result["ratio_decode_only"] = round(decode_rate / ffmpeg_rate, 3)
    return result


def keyframes_capacity(clip: Path, loops: int, texture: int) -> dict[str, Any]:
    info = clip_info(clip)
    video_s = info["packets"] / 25.0 * loops
    key = camera_decoder_run(clip, "keyframes", loops=loops)
    full = camera_decoder_run(clip, "fps", loops=1)
    key_cpu_per_video_s = key["cpu_s"] / video_s
    full_cpu_per_video_s = full["cpu_s"] / (info["packets"] / 25.0)
    return {
        "clip": {**info, "texture": texture},
        "video_seconds_decoded": video_s,
        "keyframes": {
            **key,
            "cpu_ms_per_video_s": round(key_cpu_per_video_s * 1000, 2),
            "cpu_ms_per_keyframe": round(key["cpu_s"] / max(1, key["frames_decoded"]) * 1000, 2),
            "cameras_per_core": round(1 / key_cpu_per_video_s, 1),
        },
        "full_decode_2fps": {
            **full,
            "cpu_ms_per_video_s": round(full_cpu_per_video_s * 1000, 1),
            "cameras_per_core": round(1 / full_cpu_per_video_s, 2),
        },
        "keyframes_vs_full": round(full_cpu_per_video_s / key_cpu_per_video_s, 1),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Decode benchmark",
        "",
        f"PyAV {result['pyav']['version']} (FFmpeg libavcodec {result['pyav']['libavcodec']}); "
        f"system CLI: {result['ffmpeg_cli'] or 'not installed'}. CPU: {result['cpus']} cores, "
        f"load average at start {result['loadavg']}.",
        "",
        "## Decode stage vs `ffmpeg -threads 1 -f null` (frames per CPU-second, best of "
        f"{result['repeats']})",
        "",
        "| clip | size | frames | CameraDecoder (2 fps + letterbox) | CameraDecoder (decode only) "
        "| bare PyAV | ffmpeg CLI | ratio_to_limit | ratio (decode only) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["efficiency"]:
        ratio = row.get("ratio_to_limit")
        flag = "" if ratio is None else (" ok" if ratio >= TARGET_RATIO else " BELOW TARGET")
        lines.append(
            f"| {row['clip']} | {row['width']}x{row['height']} | {row['frames']} | "
            f"{row['camera_decoder_fps_per_cpu_s']} | {row['camera_decoder_decode_only_fps_per_cpu_s']} | "
            f"{row['pyav_bare_fps_per_cpu_s']} | {row.get('ffmpeg_fps_per_cpu_s', '-')} | "
            f"{ratio if ratio is not None else '-'}{flag} | {row.get('ratio_decode_only', '-')} |"
        )
    lines += [
        "",
        f"Target ratio_to_limit >= {TARGET_RATIO}; minimum over clips: {result['ratio_to_limit']}. "
        "ratio_to_limit counts the whole decode stage as deployed (2 fps sampling, letterbox to 416x416 "
        "for each sampled frame, ~0.6-1.2 ms each, work the ffmpeg null run does not do); 'decode only' "
        "letterboxes one frame and isolates demux + decode + the per-frame loop.",
        "",
        "## Cameras per core at 1080p, 2 s GOP",
        "",
        "Clips: 1920x1080 H.264 High, 25 fps, GOP 50, libx264 veryfast crf 23, a real clip scaled up; "
        "'camera-like' adds a fixed +/-8 texture so keyframes have the size of a real 1080p camera's.",
        "",
        "| clip | mean keyframe KB | keyframes: ms per keyframe | keyframes: CPU ms per video-s "
        "| keyframes: cameras/core | full decode @2 fps: CPU ms per video-s | full: cameras/core | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cap in result["keyframes_1080p"]:
        key, full = cap["keyframes"], cap["full_decode_2fps"]
        name = "camera-like" if cap["clip"]["texture"] else "smooth (upscaled)"
        lines.append(
            f"| {name} | {cap['clip']['mean_keyframe_kb']} | {key['cpu_ms_per_keyframe']} | "
            f"{key['cpu_ms_per_video_s']} | **{key['cameras_per_core']}** | {full['cpu_ms_per_video_s']} | "
            f"{full['cameras_per_core']} | {cap['keyframes_vs_full']}x |"
        )
    lines.append("")
    return "\n".join(lines)


def run(out: Path, repeats: int = 3, loops: int = 5) -> dict[str, Any]:
    locator = DataLocator.from_env()
    clips = []
    for relpath in CLIPS:
        try:
            clips.append(locator.resolve(relpath))
        except DataFileMissing as exc:
            print(f"skipping {relpath}: {exc}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="cctv-bench-decode-") as tmp:
        source = next((c for c in clips if c.name.startswith("intel_car")), clips[0] if clips else None)
        smooth = make_1080p_gop2s(Path(tmp) / "1080p_gop2s_smooth.mp4", source, texture=0)
        camera_like = make_1080p_gop2s(Path(tmp) / "1080p_gop2s.mp4", source, texture=8)
        rows = [efficiency(clip, repeats) for clip in [*clips, camera_like]]
        rows[-1]["clip"] = "generated 1080p_gop2s.mp4 (camera-like)"
        capacity = [keyframes_capacity(smooth, loops, 0), keyframes_capacity(camera_like, loops, 8)]
    ratios = [r["ratio_to_limit"] for r in rows if "ratio_to_limit" in r]
    result = {
        "benchmark": "decode",
        "pyav": {
            "version": av.__version__,
            "libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
        },
        "ffmpeg_cli": ffmpeg_version(),
        "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "repeats": repeats,
        "efficiency": rows,
        "ratio_to_limit": min(ratios) if ratios else None,
        "target_ratio": TARGET_RATIO,
        "keyframes_1080p": capacity,
    }
    write_results(out, result, markdown(result))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Decode CPU cost vs ffmpeg, and cameras per core.")
    parser.add_argument(
        "--out", type=Path, required=True, help="JSON result file (a .md summary goes beside it)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the best is kept")
    parser.add_argument("--loops", type=int, default=5, help="passes over the 1080p clip in keyframes mode")
    args = parser.parse_args(argv)
    result = run(args.out, args.repeats, args.loops)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
