"""The interface between the controller and DecoderGroups; cluster/ray_layer.py implements it with Ray.

The controller only ever sees these methods and these two errors, so its failover logic runs in tests
against an in-process fake as well as against real actors.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class GroupError(RuntimeError):
    def __init__(self, group_id: str, message: str) -> None:
        super().__init__(f"group {group_id}: {message}")
        self.group_id = group_id


class GroupDeadError(GroupError):
    """The group's actor is gone (killed, crashed, or its node died)."""


class GroupTimeoutError(GroupError):
    """The call did not finish in time; the group may still be alive."""


class GroupBackend(Protocol):
    """How the controller reaches DecoderGroups. Methods raise only ``GroupError`` subclasses."""

    async def create(self, group_id: str) -> None: ...

    async def ping(self, group_id: str, timeout_s: float) -> None: ...

    async def add_camera(self, group_id: str, spec: dict[str, Any], timeout_s: float) -> None: ...

    async def remove_camera(self, group_id: str, camera_id: str, timeout_s: float) -> None: ...

    async def camera_ids(self, group_id: str, timeout_s: float) -> list[str]: ...

    async def status(self, group_id: str, timeout_s: float) -> dict[str, Any]: ...

    async def stop(self, group_id: str, timeout_s: float) -> None:
        """Stop gracefully, then make sure the actor is gone. Never raises."""
        ...

    async def kill(self, group_id: str) -> None:
        """Fence: terminate the actor now, wherever it is. Never raises."""
        ...

    async def discover(self) -> list[str]:
        """Group ids of the group actors that exist now (from a previous controller, say)."""
        ...


class InMemoryGroupBackend:
    """Groups as plain objects in this process: for tests and dry runs of the controller logic.

    Cameras "run" while they are in a group that has not been killed. ``violations`` records every
    add of a camera that already runs in another live group (a double decode). Fault injection:
    ``die(group_id)`` (the actor is gone), ``hang(group_id)`` (calls time out; its cameras keep
    running until it is killed), ``costs`` (the decode cost each camera reports in status), and
    ``slow_start`` (an Event: while it is clear, new groups do not answer their first ping, like an
    actor waiting for the autoscaler to add a node).
    """

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, dict[str, Any]]] = {}  # live groups: group -> camera -> spec
        self.hung: set[str] = set()
        self.killed: list[str] = []
        self.costs: dict[str, float] = {}
        self.calls: list[tuple[str, str, str | None]] = []  # (method, group, camera)
        self.violations: list[str] = []
        self.slow_start: asyncio.Event | None = None
        self._unstarted: set[str] = set()

    # fault injection
    def die(self, group_id: str) -> None:
        self.groups.pop(group_id, None)
        self.hung.discard(group_id)

    def hang(self, group_id: str) -> None:
        self.hung.add(group_id)

    def running(self) -> dict[str, set[str]]:
        """group -> cameras it runs now (hung groups included: they still decode)."""
        return {g: set(cams) for g, cams in self.groups.items()}

    def _get(self, group_id: str) -> dict[str, dict[str, Any]]:
        if group_id not in self.groups:
            raise GroupDeadError(group_id, "no such actor")
        if group_id in self.hung:
            raise GroupTimeoutError(group_id, "hung")
        return self.groups[group_id]

    # GroupBackend
    async def create(self, group_id: str) -> None:
        self.groups[group_id] = {}
        self.calls.append(("create", group_id, None))
        if self.slow_start is not None:
            self._unstarted.add(group_id)

    async def ping(self, group_id: str, timeout_s: float) -> None:
        if group_id in self._unstarted and self.slow_start is not None:
            await self.slow_start.wait()
            self._unstarted.discard(group_id)
        self._get(group_id)

    async def add_camera(self, group_id: str, spec: dict[str, Any], timeout_s: float) -> None:
        cameras = self._get(group_id)
        camera_id = spec["camera_id"]
        elsewhere = [g for g, cams in self.groups.items() if g != group_id and camera_id in cams]
        if elsewhere:
            self.violations.append(f"{camera_id} added to {group_id} while running in {elsewhere}")
        cameras[camera_id] = spec
        self.calls.append(("add", group_id, camera_id))

    async def remove_camera(self, group_id: str, camera_id: str, timeout_s: float) -> None:
        self._get(group_id).pop(camera_id, None)
        self.calls.append(("remove", group_id, camera_id))

    async def camera_ids(self, group_id: str, timeout_s: float) -> list[str]:
        return list(self._get(group_id))

    async def status(self, group_id: str, timeout_s: float) -> dict[str, Any]:
        from cluster.status import CameraState, CameraStatus, GroupStatus

        cameras = [
            CameraStatus(
                camera_id=c,
                url="sim://redacted",
                group_id=group_id,
                state=CameraState.ONLINE,
                decode_cpu_s_per_s=self.costs.get(c, 0.0),
            )
            for c in self._get(group_id)
        ]
        return GroupStatus(group_id=group_id, node_id="in-memory", cameras=cameras).model_dump(mode="json")

    async def stop(self, group_id: str, timeout_s: float) -> None:
        self.calls.append(("stop", group_id, None))
        await self.kill(group_id)

    async def kill(self, group_id: str) -> None:
        if group_id in self.groups:
            self.killed.append(group_id)
        self.die(group_id)

    async def discover(self) -> list[str]:
        return sorted(self.groups)
