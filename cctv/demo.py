"""``cctv demo``: the whole system on one machine, with real clips played as live cameras.

Started the way a cluster runs: Ray, the detector on Serve, the controller (inventory in SQLite,
cost-aware assignment to DecoderGroups), the control API on Serve's HTTP proxy, and a Redis-compatible
server unless one is given. The demo imports its cameras through the controller, so cameras can be
added or removed while it runs with ``cctv cameras ... --api-url URL --token TOKEN`` (printed at start).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from pathlib import Path

import ray
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from rich.console import Console
from rich.live import Live

from cctv import runtime
from cctv.dashboard import camera_table
from cctv.redis_server import RedisServer, free_port
from cluster.assignment import AssignmentPolicy
from cluster.controller import ControllerConfig, GroupOptions
from cluster.inventory import SQLiteStoreConfig
from cluster.status import CameraStatus
from decoders.config import CameraSpec, SamplingMode
from models.data import DEMO_CLIPS, DataLocator
from streams.keys import StreamLayout


class DemoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cameras: int = Field(4, ge=1, le=512, description="Cameras to simulate from the demo clips.")
    fps: float = Field(2.0, gt=0, le=30, description="Analysis rate per camera.")
    sampling: SamplingMode = Field(SamplingMode.FPS, description="fps, keyframes or all.")
    duration_s: float | None = Field(None, gt=0, description="Stop after this long (None: until Ctrl-C).")
    redis_url: str | None = Field(None, description="Use this Redis; None starts an embedded server.")
    results_dir: Path = Field(Path("cctv-demo-results"), description="Where the embedded Redis dump goes.")
    summary_json: Path | None = Field(None, description="Write the final per-camera figures here.")
    cameras_per_group: int = Field(8, ge=1, description="Cameras per DecoderGroup actor.")
    max_replicas: int = Field(1, ge=1, description="Detector replicas the autoscaler may use.")
    data_dir: Path | None = Field(None, description="Data directory (else $CCTV_DATA_DIR, ../shared/data).")
    http_port: int = Field(default_factory=free_port, description="Serve HTTP port (control API).")


def demo_cameras(options: DemoOptions, locator: DataLocator) -> list[CameraSpec]:
    clips = [locator.resolve(path, fetch=True) for path in DEMO_CLIPS]
    return [
        CameraSpec(
            camera_id=f"cam-{i:03d}",
            url=str(clips[i % len(clips)]),
            sampling=options.sampling,
            fps=options.fps,
            loop=True,
            realtime=True,
            labels={"clip": clips[i % len(clips)].name},
        )
        for i in range(options.cameras)
    ]


def controller_status(controller) -> list[CameraStatus]:
    """Per-camera status as the controller last saw it (cameras not yet reported are left out)."""
    cameras: list[CameraStatus] = []
    offset = 0
    while True:
        page = ray.get(controller.list_cameras.remote(offset=offset, limit=500), timeout=30)
        cameras += [view.status for view in page.cameras if view.status is not None]
        offset += len(page.cameras)
        if not page.cameras or offset >= page.total:
            return cameras


def start_control_plane(options: DemoOptions, redis_url: str):
    """The controller (fresh inventory for this demo) and the control API; returns (handle, url, token)."""
    from cluster.ray_layer import start_controller
    from serve_apps.control_api import app_builder

    inventory = options.results_dir / "inventory.sqlite"
    inventory.parent.mkdir(parents=True, exist_ok=True)
    inventory.unlink(missing_ok=True)  # a demo starts from its own cameras, not the last run's
    config = ControllerConfig(
        store=SQLiteStoreConfig(path=inventory),
        policy=AssignmentPolicy(max_cameras_per_group=options.cameras_per_group),
        groups=GroupOptions(
            num_cpus=0.25, config={"redis_url": redis_url, "plates_app": None, "faces_app": None}
        ),
    )
    controller = start_controller(config)
    token = secrets.token_urlsafe(24)
    os.environ["CCTV_CONTROL_ADMIN_TOKENS"] = token  # read once by app_builder, in this process
    serve.run(app_builder({}), name="control", route_prefix="/control")
    return controller, f"http://127.0.0.1:{options.http_port}/control", token


def run_demo(options: DemoOptions, console: Console | None = None) -> list[CameraStatus]:
    console = console or Console(emoji=False)
    locator = DataLocator.from_env(options.data_dir)
    cameras = demo_cameras(options, locator)  # resolve data before starting anything
    final: list[CameraStatus] = []
    with contextlib.ExitStack() as stack:
        redis_url = options.redis_url
        dump_file = None
        if redis_url is None:
            dump_file = options.results_dir / "cctv-demo.rdb"
            server = stack.enter_context(RedisServer(dump_file=dump_file))
            redis_url = server.url
            console.print(f"embedded Redis-compatible server: {server.binary.name} at {redis_url}")
        console.print("starting Ray, the detector (Serve) and the controller...")
        runtime.start_local_ray()
        stack.callback(runtime.shutdown)
        runtime.deploy_detector({"max_replicas": options.max_replicas}, http_port=options.http_port)
        controller, api_url, token = start_control_plane(options, redis_url)
        from cluster.ray_layer import stop_controller

        stack.callback(stop_controller, stop_groups=True)
        ray.get(controller.import_cameras.remote(cameras, True), timeout=120)
        console.print(f"control API: {api_url}  (admin token: {token})")
        console.print(f"  e.g. cctv cameras list --api-url {api_url} --token {token}")
        started = time.monotonic()
        title = f"cctv demo at {options.fps} fps per camera, Redis {redis_url}"
        try:
            with Live(console=console, refresh_per_second=1, transient=False) as live:
                while options.duration_s is None or time.monotonic() - started < options.duration_s:
                    final = controller_status(controller)
                    elapsed = time.monotonic() - started
                    live.update(camera_table(final, f"{len(final)} cameras, {title} ({elapsed:.0f}s)"))
                    time.sleep(1.0)
        except KeyboardInterrupt:
            console.print("stopping (Ctrl-C)...")
        final = controller_status(controller)
        if options.summary_json:
            options.summary_json.parent.mkdir(parents=True, exist_ok=True)
            options.summary_json.write_text(
                json.dumps(
                    {
                        "cameras": [c.model_dump(mode="json") for c in final],
                        "options": options.model_dump(mode="json"),
                        "duration_s": round(time.monotonic() - started, 1),
                    },
                    indent=2,
                )
            )
    print_results(console, cameras, redis_url, dump_file, options)
    return final


def print_results(
    console: Console, cameras: list[CameraSpec], redis_url: str, dump_file: Path | None, options: DemoOptions
) -> None:
    layout = StreamLayout()
    console.print("\n[bold]Results[/bold]")
    shards = sorted({layout.shard_key_of(c.camera_id) for c in cameras})
    console.print(f"  detection streams (consumer groups read these): {', '.join(shards)}")
    console.print(f"  per-camera streams: {layout.camera_stream_key(cameras[0].camera_id)} ...")
    console.print(f"  per-camera state:   {layout.state_key(cameras[0].camera_id)} ...")
    if dump_file is not None:
        console.print(f"  the embedded server was stopped; its data was saved to {dump_file}")
        console.print(f"  read them with:  cctv tail --dump {dump_file} --no-follow")
    else:
        console.print(f"  Redis: {redis_url}")
        console.print(f"  read them with:  cctv tail --redis-url {redis_url}")
    if options.summary_json:
        console.print(f"  per-camera summary: {options.summary_json}")
