"""Every Ray call of the control plane is made here (like Serve's ActorReplicaWrapper).

- ``RayGroupBackend``: the controller's ``GroupBackend`` over DecoderGroup actors. Groups are
  *detached* named actors, so they outlive a controller restart (a non-detached actor dies with its
  owner); the controller adopts them again by name. Ray errors become ``GroupDeadError`` /
  ``GroupTimeoutError``, nothing else leaks out.
- ``ControllerActor``: hosts ``cluster.controller.Controller`` as the named, restartable
  (``max_restarts=-1``) actor ``cctv-controller`` in namespace ``cctv``. A restart re-runs ``__init__``,
  which re-reads the store and adopts the running groups: nothing is lost.
- ``start_controller`` / ``RayControllerClient``: how the CLI, the demo and the Serve ingress reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

from cluster.control_models import (
    CameraExists,
    CameraList,
    CameraNotFound,
    CameraView,
    ClusterStatus,
    ImportResult,
    InvalidCamera,
)
from cluster.controller import Controller, ControllerConfig, GroupOptions
from cluster.group_backend import GroupDeadError, GroupError, GroupTimeoutError
from cluster.inventory import build_store
from decoders.config import CameraSpec

log = logging.getLogger(__name__)

CONTROLLER_NAME = "cctv-controller"
NAMESPACE = "cctv"
HEAD_NODE_RESOURCE = "node:__internal_head__"  # present only on the head node


class RayGroupBackend:
    """DecoderGroup actors by name. ``actor_cls``/``config_cls`` default to cluster.decoder_group's."""

    def __init__(
        self,
        options: GroupOptions,
        namespace: str = NAMESPACE,
        actor_cls: Any | None = None,
        config_cls: Any | None = None,
    ) -> None:
        if actor_cls is None or config_cls is None:
            from cluster.decoder_group import DecoderGroup, GroupConfig

            actor_cls, config_cls = actor_cls or DecoderGroup, config_cls or GroupConfig
        self._options = options
        self._namespace = namespace
        self._actor_cls = actor_cls
        self._config_cls = config_cls
        self._handles: dict[str, ActorHandle] = {}

    def _name(self, group_id: str) -> str:
        return f"{self._options.actor_prefix}{group_id}"

    async def create(self, group_id: str) -> None:
        config = self._config_cls(group_id=group_id, **self._options.config).model_dump(mode="json")
        self._handles[group_id] = self._actor_cls.options(
            name=self._name(group_id),
            namespace=self._namespace,
            num_cpus=self._options.num_cpus,
            resources=dict(self._options.resources),
            max_restarts=0,  # the controller re-places a dead group's cameras; faster than a restart
            lifetime="detached",  # survives a controller restart
        ).remote(config)

    def _handle(self, group_id: str) -> ActorHandle:
        handle = self._handles.get(group_id)
        if handle is None:
            try:
                handle = ray.get_actor(self._name(group_id), namespace=self._namespace)
            except ValueError:
                raise GroupDeadError(group_id, "no such actor") from None
            self._handles[group_id] = handle
        return handle

    async def _call(self, group_id: str, method: str, *args: Any, timeout_s: float) -> Any:
        ref = getattr(self._handle(group_id), method).remote(*args)
        try:
            return await asyncio.wait_for(_awaitable(ref), timeout_s)
        except TimeoutError:
            raise GroupTimeoutError(group_id, f"{method} took over {timeout_s}s") from None
        except ActorUnavailableError as exc:  # transient (e.g. network): the pings decide
            raise GroupTimeoutError(group_id, f"{method}: unavailable: {exc}") from None
        except (ActorDiedError, RayActorError) as exc:
            self._handles.pop(group_id, None)
            raise GroupDeadError(group_id, f"{method}: {type(exc).__name__}") from None
        except RayTaskError as exc:  # the method itself raised; the group is alive
            raise GroupError(group_id, f"{method} failed: {type(exc.cause).__name__}: {exc.cause}") from None

    async def ping(self, group_id: str, timeout_s: float) -> None:
        await self._call(group_id, "ping", timeout_s=timeout_s)

    async def add_camera(self, group_id: str, spec: dict[str, Any], timeout_s: float) -> None:
        await self._call(group_id, "add_camera", spec, timeout_s=timeout_s)

    async def remove_camera(self, group_id: str, camera_id: str, timeout_s: float) -> None:
        await self._call(group_id, "remove_camera", camera_id, timeout_s=timeout_s)

    async def camera_ids(self, group_id: str, timeout_s: float) -> list[str]:
        return list(await self._call(group_id, "camera_ids", timeout_s=timeout_s))

    async def status(self, group_id: str, timeout_s: float) -> dict[str, Any]:
        return await self._call(group_id, "status", timeout_s=timeout_s)

    async def stop(self, group_id: str, timeout_s: float) -> None:
        try:
            await self._call(group_id, "stop", timeout_s=timeout_s)
        except GroupError as exc:
            log.info("group %s did not stop cleanly (%s); killing it", group_id, exc)
        await self.kill(group_id)

    async def kill(self, group_id: str) -> None:
        with contextlib.suppress(GroupDeadError, ValueError):  # already gone
            ray.kill(self._handle(group_id), no_restart=True)
        self._handles.pop(group_id, None)

    async def discover(self) -> list[str]:
        prefix = self._options.actor_prefix
        return sorted(
            a["name"][len(prefix) :]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == self._namespace and a["name"].startswith(prefix)
        )


async def _awaitable(ref: ray.ObjectRef) -> Any:
    return await ref


class ControllerActor:
    """The Ray actor around ``Controller``: build, start, supervise; every method waits for start-up."""

    def __init__(self, config: dict[str, Any]) -> None:
        parsed = ControllerConfig.model_validate(config)
        namespace = ray.get_runtime_context().namespace
        groups = RayGroupBackend(parsed.groups, namespace)
        self._controller = Controller(build_store(parsed.store), groups, parsed)
        # Ray runs an async actor's __init__ on its event loop, so start-up (and, after a restart,
        # re-adoption of the groups) begins at once, not at the first API call.
        self._started = asyncio.get_running_loop().create_task(self._start())
        self._supervisor: asyncio.Task | None = None

    async def _start(self) -> None:
        await self._controller.start()
        self._supervisor = asyncio.create_task(self._controller.run())

    async def _ready(self) -> Controller:
        await asyncio.shield(self._started)
        return self._controller

    async def ready(self) -> bool:
        await self._ready()
        return True

    async def list_cameras(self, **kwargs: Any) -> CameraList:
        return await (await self._ready()).list_cameras(**kwargs)

    async def get_camera(self, camera_id: str) -> CameraView:
        return await (await self._ready()).get_camera(camera_id)

    async def create_camera(self, spec: CameraSpec) -> CameraView:
        return await (await self._ready()).create_camera(spec)

    async def put_camera(self, spec: CameraSpec) -> CameraView:
        return await (await self._ready()).put_camera(spec)

    async def patch_camera(self, camera_id: str, changes: dict[str, Any]) -> CameraView:
        return await (await self._ready()).patch_camera(camera_id, changes)

    async def delete_camera(self, camera_id: str) -> None:
        await (await self._ready()).delete_camera(camera_id)

    async def import_cameras(self, specs: list[CameraSpec], prune: bool = False) -> ImportResult:
        return await (await self._ready()).import_cameras(specs, prune)

    async def cluster_status(self) -> ClusterStatus:
        return await (await self._ready()).cluster_status()

    async def assignment(self) -> dict[str, str]:
        return (await self._ready()).assignment()

    async def shutdown(self, stop_groups: bool = False) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
        await (await self._ready()).shutdown(stop_groups)


def _controller_handle(
    config: ControllerConfig, name: str, namespace: str, num_cpus: float, pin_to_head: bool
) -> ActorHandle:
    options: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "lifetime": "detached",
        "max_restarts": -1,
        "num_cpus": num_cpus,
        "get_if_exists": True,
    }
    if pin_to_head:
        options["resources"] = {HEAD_NODE_RESOURCE: 0.001}
    return ray.remote(ControllerActor).options(**options).remote(config.model_dump(mode="json"))


def start_controller(
    config: ControllerConfig,
    name: str = CONTROLLER_NAME,
    namespace: str = NAMESPACE,
    num_cpus: float = 0.1,
    pin_to_head: bool = True,
    timeout_s: float = 120.0,
) -> ActorHandle:
    """Get the running controller, or start it (detached, restartable) and wait until it is ready.

    An existing controller keeps its own config: stop it (``stop_controller``) to change it. Pinned
    to the head node by default so that a restart finds the same SQLite file.
    """
    handle = _controller_handle(config, name, namespace, num_cpus, pin_to_head)
    ray.get(handle.ready.remote(), timeout=timeout_s)
    return handle


async def ensure_controller(
    config: ControllerConfig, name: str = CONTROLLER_NAME, namespace: str = NAMESPACE, num_cpus: float = 0.1
) -> ActorHandle:
    """``start_controller`` for async callers (the Serve ingress starting the control plane)."""
    handle = _controller_handle(config, name, namespace, num_cpus, pin_to_head=True)
    await _awaitable(handle.ready.remote())
    return handle


def get_controller(name: str = CONTROLLER_NAME, namespace: str = NAMESPACE) -> ActorHandle:
    return ray.get_actor(name, namespace=namespace)


def stop_controller(
    name: str = CONTROLLER_NAME, namespace: str = NAMESPACE, stop_groups: bool = True, timeout_s: float = 60.0
) -> None:
    """Stop the controller (and, by default, its groups); the inventory stays in the store."""
    try:
        handle = get_controller(name, namespace)
    except ValueError:
        return
    try:
        ray.get(handle.shutdown.remote(stop_groups), timeout=timeout_s)
    finally:
        ray.kill(handle, no_restart=True)


class ControllerUnavailable(ConnectionError):
    """The controller actor is missing or restarting; retry shortly."""


_API_ERRORS = (CameraNotFound, CameraExists, InvalidCamera)


class RayControllerClient:
    """The Serve ingress's view of the controller: same async methods, Ray errors translated."""

    def __init__(self, name: str = CONTROLLER_NAME, namespace: str = NAMESPACE) -> None:
        self._name = name
        self._namespace = namespace
        self._handle: ActorHandle | None = None

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            if self._handle is None:
                self._handle = get_controller(self._name, self._namespace)
            return await _awaitable(getattr(self._handle, method).remote(*args, **kwargs))
        except ValueError as exc:
            raise ControllerUnavailable(f"no controller {self._name!r} in {self._namespace!r}") from exc
        except RayActorError as exc:
            self._handle = None  # look it up again: it may have been re-created
            raise ControllerUnavailable(f"controller unavailable: {type(exc).__name__}") from None
        except RayTaskError as exc:
            if isinstance(exc.cause, _API_ERRORS):
                raise exc.cause from None
            raise

    def list_cameras(self, **kwargs: Any) -> Awaitable[CameraList]:
        return self._call("list_cameras", **kwargs)

    def get_camera(self, camera_id: str) -> Awaitable[CameraView]:
        return self._call("get_camera", camera_id)

    def create_camera(self, spec: CameraSpec) -> Awaitable[CameraView]:
        return self._call("create_camera", spec)

    def put_camera(self, spec: CameraSpec) -> Awaitable[CameraView]:
        return self._call("put_camera", spec)

    def patch_camera(self, camera_id: str, changes: dict[str, Any]) -> Awaitable[CameraView]:
        return self._call("patch_camera", camera_id, changes)

    def delete_camera(self, camera_id: str) -> Awaitable[None]:
        return self._call("delete_camera", camera_id)

    def import_cameras(self, specs: list[CameraSpec], prune: bool = False) -> Awaitable[ImportResult]:
        return self._call("import_cameras", specs, prune)

    def cluster_status(self) -> Awaitable[ClusterStatus]:
        return self._call("cluster_status")
