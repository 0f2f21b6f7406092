"""Starting the pieces of a local deployment: Ray, Serve and the detector application.

All Ray/Serve start-up calls live here so that the demo, the benchmarks and the tests start the
system the same way. On a real cluster, ``ray start`` + ``serve deploy serve_apps/serve_config.yaml``
do the same job (docs/deployment.md).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import ray
from ray import serve

from cctv.redis_server import free_port
from cluster.decoder_group import DecoderGroup, GroupConfig
from cluster.status import CameraStatus, GroupStatus
from decoders.config import CameraSpec
from serve_apps.detector import DetectorAppArgs, build_app

NAMESPACE = "cctv"
DETECTOR_APP = "detector"


def start_local_ray(num_cpus: int | None = None) -> None:
    """One local Ray instance without the dashboard (it doubles start-up cost and memory)."""
    if ray.is_initialized():
        return
    ray.init(
        namespace=NAMESPACE,
        include_dashboard=False,
        num_cpus=num_cpus,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )


def deploy_detector(
    args: DetectorAppArgs | dict[str, Any] | None = None, http_port: int | None = None
) -> None:
    """Start Serve (loopback HTTP) and run the detector application; returns when it is healthy."""
    parsed = args if isinstance(args, DetectorAppArgs) else DetectorAppArgs.model_validate(args or {})
    serve.start(http_options={"host": "127.0.0.1", "port": http_port or free_port()})
    serve.run(build_app(parsed.model_dump(mode="json")), name=DETECTOR_APP, route_prefix=None)


def deploy_plate_reader(args: dict[str, Any] | None = None, app_name: str = "plates") -> None:
    """Run the plate-reader second stage (cameras with ``plates: true`` send it vehicle crops)."""
    from serve_apps.plate_reader import build_app as build_plate_app

    serve.run(build_plate_app(args or {}), name=app_name, route_prefix=None)


def start_groups(
    cameras: list[CameraSpec],
    redis_url: str,
    cameras_per_group: int,
    group_num_cpus: float = 0.25,
    **group_options: Any,
) -> list[ray.actor.ActorHandle]:
    """Create DecoderGroups, split cameras between them evenly, and add every camera.

    This is the static placement used by the demo and the benchmarks; the controller
    (cluster/controller.py) does the same dynamically, by measured cost.
    """
    n_groups = max(1, math.ceil(len(cameras) / cameras_per_group))
    groups = [
        DecoderGroup.options(name=f"group-{i}", namespace=NAMESPACE, num_cpus=group_num_cpus).remote(
            GroupConfig(group_id=f"group-{i}", redis_url=redis_url, **group_options).model_dump(mode="json")
        )
        for i in range(n_groups)
    ]
    ray.get([g.ping.remote() for g in groups])
    ray.get([groups[i % n_groups].add_camera.remote(spec.secret_dict()) for i, spec in enumerate(cameras)])
    return groups


def collect_status(groups: list[ray.actor.ActorHandle]) -> list[CameraStatus]:
    """Per-camera status straight from the DecoderGroups placed by ``start_groups``."""
    statuses = ray.get([g.status.remote() for g in groups], timeout=30)
    return [cam for s in statuses for cam in GroupStatus.model_validate(s).cameras]


def stop_groups(groups: list[ray.actor.ActorHandle]) -> None:
    ray.get([g.stop.remote() for g in groups], timeout=30)
    for group in groups:
        ray.kill(group)


def shutdown() -> None:
    if ray.is_initialized():
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
