"""The interface between the controller and DecoderGroups; cluster/ray_layer.py implements it with Ray.

The controller only ever sees these methods and these two errors, so its failover logic runs in tests
against an in-process fake as well as against real actors.
"""

from __future__ import annotations

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
