"""Control-plane scale benchmark: N SIMULATED cameras imported, assigned and running on this machine.

``python -m benchmarks.scale --cameras 10000 --out results/scale.json`` (also writes ``scale.md``).

What runs is the real control plane: Ray, the controller actor (SQLite store), real DecoderGroup
actors, Serve with the control API, Redis. What is simulated is said in the results:
- cameras are ``sim://`` sources (``decoders.simulated``): synthetic frames at ``--fps``, no decoding;
- the detector is a null Serve deployment (no model, no detections, 64x64 input) so that thousands of
  cameras do not turn this into a model benchmark; messages still go through the groups to Redis.

Measured: import through the HTTP API, the assignment computation, time until every camera reports
online, controller RSS (the actor's process) and CPU while supervising, group-process RSS, status
API latency (p50/p99, real HTTP through the Serve proxy) and, with ``--failover``, the time until the
cameras of a killed DecoderGroup are online again.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import ray
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from rich.console import Console

from benchmarks.report import write_results
from cctv.redis_server import RedisServer, free_port
from cluster.assignment import AssignmentPolicy
from cluster.controller import ControllerConfig, GroupOptions
from cluster.inventory import SQLiteStoreConfig
from cluster.ray_layer import NAMESPACE, start_controller, stop_controller

NULL_DETECTOR_APP = "scale-null-detector"
GROUP_PREFIX = "cctv-scale-"


class ScaleBenchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="JSON result file (a .md summary is written beside it).")
    cameras: int = Field(10_000, ge=1, description="Simulated cameras to import.")
    fps: float = Field(0.01, gt=0, le=60, description="Frames per second per simulated camera.")
    cameras_per_group: int = Field(1000, ge=1, description="Most cameras per DecoderGroup.")
    group_num_cpus: float = Field(0.01, ge=0, description="CPUs reserved per group (fractional here).")
    requests: int = Field(200, ge=10, description="Requests per latency measurement.")
    steady_s: float = Field(15.0, ge=1, description="Window for the controller's CPU while supervising.")
    failover: bool = Field(True, description="Also kill one DecoderGroup and time its cameras' return.")
    online_timeout_s: float = Field(600.0, gt=0, description="Give up waiting for cameras after this.")


@serve.deployment(name="Detector", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.05})
class NullDetector:
    """SIMULATED inference: answers like serve_apps.detector's Detector, with no model and no boxes."""

    def info(self) -> dict[str, Any]:
        return {
            "model": "none (scale benchmark: simulated inference)",
            "backend": "null",
            "input_width": 64,
            "input_height": 64,
            "color": "bgr",
            "class_names": [],
            "max_batch_frames": 256,
        }

    async def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        return [np.zeros((0, 6), np.float32) for _ in range(len(frames))]


def _percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "requests": len(ms),
    }


def _latency(client: httpx.Client, paths: list[str]) -> dict[str, float]:
    samples = []
    for path in paths:
        started = time.perf_counter()
        response = client.get(path)
        samples.append(time.perf_counter() - started)
        response.raise_for_status()
    return _percentiles(samples)


def _wait_online(client: httpx.Client, expected: int, timeout_s: float, console: Console) -> dict[str, float]:
    """Seconds until every group answered its first ping, and until every camera reported online."""
    started = time.monotonic()
    marks: dict[str, float] = {}
    last = -1
    while time.monotonic() - started < timeout_s:
        status = client.get("/status").json()
        elapsed = time.monotonic() - started
        if "groups_ready_s" not in marks and all(g["phase"] == "ready" for g in status["groups"]):
            marks["groups_ready_s"] = elapsed
        online = status["by_state"].get("online", 0)
        if online != last:
            console.print(f"  {online}/{expected} online after {elapsed:.1f}s")
            last = online
        if online >= expected:
            marks["online_s"] = elapsed
            return marks
        time.sleep(0.5)
    raise TimeoutError(f"only {last}/{expected} cameras online after {timeout_s}s")


def _group_processes() -> list[psutil.Process]:
    """This run's DecoderGroup processes (asked of the actors: the machine may run other Ray sessions)."""
    names = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(GROUP_PREFIX)
    ]
    handles = [ray.get_actor(n, namespace=NAMESPACE) for n in names]
    pids = ray.get([h.__ray_call__.remote(lambda _self: os.getpid()) for h in handles], timeout=60)
    return [psutil.Process(pid) for pid in pids]


def _controller_process(client: httpx.Client) -> psutil.Process:
    return psutil.Process(client.get("/status").json()["controller_pid"])


def run(options: ScaleBenchOptions, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    token = secrets.token_urlsafe(24)
    os.environ["CCTV_CONTROL_ADMIN_TOKENS"] = token  # the API's entry point reads it (in this process)
    with tempfile.TemporaryDirectory(prefix="cctv-scale-") as tmp, RedisServer() as redis_server:
        ray.init(namespace=NAMESPACE, include_dashboard=False, num_cpus=4, log_to_driver=False)
        try:
            return _run(options, console, Path(tmp), redis_server.url, token)
        finally:
            stop_controller(stop_groups=True)
            serve.shutdown()
            ray.shutdown()


def _run(
    options: ScaleBenchOptions, console: Console, tmp: Path, redis_url: str, token: str
) -> dict[str, Any]:
    from serve_apps.control_api import app_builder

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(NullDetector.bind(), name=NULL_DETECTOR_APP, route_prefix=None)
    serve.run(app_builder({"num_cpus": 0.05}), name="control", route_prefix="/control")
    config = ControllerConfig(
        store=SQLiteStoreConfig(path=tmp / "inventory.sqlite"),
        policy=AssignmentPolicy(max_cameras_per_group=options.cameras_per_group),
        groups=GroupOptions(
            actor_prefix=GROUP_PREFIX,
            num_cpus=options.group_num_cpus,
            config={
                "redis_url": redis_url,
                "detector_app": NULL_DETECTOR_APP,
                "batch_wait_s": 0.5,  # fewer, larger micro-batches: the load here is RPC, not a model
                "max_batch_frames": 256,
                "status_interval_s": 10.0,
            },
        ),
    )
    start_controller(config, num_cpus=0.05)
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}/control", headers={"Authorization": f"Bearer {token}"}, timeout=600
    )
    controller = _controller_process(client)
    rss_empty = controller.memory_info().rss

    cameras = [
        {"camera_id": f"sim-{i:05d}", "url": f"sim://sim-{i:05d}", "fps": options.fps}
        for i in range(options.cameras)
    ]
    console.print(f"importing {options.cameras} simulated cameras at {options.fps} fps through the API...")
    started = time.perf_counter()
    response = client.post("/cameras/_import", json={"cameras": cameras})
    import_s = time.perf_counter() - started
    response.raise_for_status()
    imported = response.json()
    marks = _wait_online(client, options.cameras, options.online_timeout_s, console)
    status = client.get("/status").json()

    console.print(f"steady state: controller CPU over {options.steady_s:.0f}s...")
    cpu0 = controller.cpu_times()
    time.sleep(options.steady_s)
    cpu1 = controller.cpu_times()
    controller_cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / options.steady_s
    rss_full = controller.memory_info().rss
    groups = _group_processes()
    group_rss = [p.memory_info().rss for p in groups]

    console.print(f"latency: {options.requests} requests per endpoint through the Serve proxy...")
    rng = random.Random(0)
    ids = [c["camera_id"] for c in cameras]
    latency = {
        "GET /status": _latency(client, ["/status"] * options.requests),
        "GET /cameras/{id}": _latency(
            client, [f"/cameras/{rng.choice(ids)}" for _ in range(options.requests)]
        ),
        "GET /cameras?limit=100": _latency(client, ["/cameras?limit=100"] * max(10, options.requests // 4)),
    }
    failover = _failover(client, console, options) if options.failover else None
    assignment_ms = imported["plan_ms"]
    result = {
        "simulated": {
            "cameras": "sim:// sources (decoders.simulated): synthetic frames, no decoding",
            "inference": "null Serve deployment: no model, no detections",
        },
        "options": options.model_dump(mode="json"),
        "cameras": options.cameras,
        "groups": len(status["groups"]),
        "assignment_ms": assignment_ms,
        "import_http_s": round(import_s, 3),
        "groups_ready_s": round(import_s + marks.get("groups_ready_s", float("nan")), 2),
        "all_online_s": round(import_s + marks["online_s"], 2),
        "controller_rss_mib": {"empty": round(rss_empty / 2**20, 1), "loaded": round(rss_full / 2**20, 1)},
        "controller_cpu_fraction": round(controller_cpu, 4),
        "group_processes": len(groups),
        "group_rss_mib_mean": round(float(np.mean(group_rss)) / 2**20, 1) if group_rss else None,
        "latency": latency,
        "failover": failover,
        "machine_cpus": psutil.cpu_count(),
    }
    write_results(options.out, result, _markdown(result))
    console.print(_markdown(result))
    return result


def _failover(client: httpx.Client, console: Console, options: ScaleBenchOptions) -> dict[str, Any]:
    page = client.get("/cameras", params={"limit": 1}).json()
    victim = page["cameras"][0]["group_id"]
    lost = client.get("/cameras", params={"group_id": victim, "limit": 1}).json()["total"]
    console.print(f"failover: killing DecoderGroup {victim} ({lost} cameras)...")
    ray.kill(ray.get_actor(GROUP_PREFIX + victim, namespace=NAMESPACE), no_restart=True)
    killed = time.monotonic()
    back = _wait_online_after(client, victim, killed, options.cameras, options.online_timeout_s)
    record = next(f for f in client.get("/status").json()["failovers"] if f["group_id"] == victim)
    return {
        "group": victim,
        "cameras": lost,
        "online_again_s": round(back, 2),
        "reassigned_s": record["reassigned_s"],
    }


def _wait_online_after(
    client: httpx.Client, victim: str, killed: float, expected: int, timeout_s: float
) -> float:
    while time.monotonic() - killed < timeout_s:
        status = client.get("/status").json()
        # Until the death is detected the victim's cameras still show their last (online) status;
        # after it, re-placed cameras count only once their new group reports them online.
        gone = all(g["group_id"] != victim for g in status["groups"])
        if gone and status["by_state"].get("online", 0) >= expected:
            return time.monotonic() - killed
        time.sleep(0.2)
    raise TimeoutError(f"cameras of {victim} not online again after {timeout_s}s")


def _markdown(r: dict[str, Any]) -> str:
    lat, rss = r["latency"], r["controller_rss_mib"]
    lines = [
        f"# Control-plane scale: {r['cameras']} simulated cameras",
        "",
        "SIMULATED: sim:// cameras (no decoding) and a null detector; the control plane, DecoderGroups,",
        "Serve, the HTTP API and Redis are real.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| DecoderGroups | {r['groups']} |",
        f"| assignment computation | {r['assignment_ms']:.1f} ms |",
        f"| import through the API (HTTP round trip) | {r['import_http_s']:.2f} s |",
        f"| every DecoderGroup started (from the import) | {r['groups_ready_s']:.1f} s |",
        f"| every camera online (from the import) | {r['all_online_s']:.1f} s |",
        f"| controller RSS empty / loaded | {rss['empty']} / {rss['loaded']} MiB |",
        f"| controller CPU while supervising | {r['controller_cpu_fraction'] * 100:.1f} % of a core |",
        f"| DecoderGroup process RSS (mean) | {r['group_rss_mib_mean']} MiB |",
    ]
    for name, m in lat.items():
        lines.append(f"| {name} latency p50 / p99 | {m['p50_ms']} / {m['p99_ms']} ms |")
    if r["failover"]:
        f = r["failover"]
        lines.append(
            f"| failover: {f['cameras']} cameras of a killed group online again | {f['online_again_s']} s |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON result file (.md beside it)")
    parser.add_argument("--cameras", type=int, default=10_000)
    parser.add_argument("--fps", type=float, default=0.01)
    parser.add_argument("--cameras-per-group", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--steady-s", type=float, default=15.0)
    parser.add_argument("--no-failover", action="store_true")
    args = parser.parse_args(argv)
    run(
        ScaleBenchOptions(
            out=args.out,
            cameras=args.cameras,
            fps=args.fps,
            cameras_per_group=args.cameras_per_group,
            requests=args.requests,
            steady_s=args.steady_s,
            failover=not args.no_failover,
        )
    )


if __name__ == "__main__":
    main()
