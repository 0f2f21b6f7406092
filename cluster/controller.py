"""The controller's logic: camera inventory, assignment to DecoderGroups, failover. Plain async Python.

It never calls Ray: groups are reached through a ``GroupBackend`` (cluster/ray_layer.py holds the Ray
implementation and the actor that hosts this class), so tests drive it directly.

State is level-triggered. The desired state (specs, assignment, groups) is written to the store first;
``_converge`` then makes the groups match it, and status polls observe what the groups actually run.
Two rules keep a camera from being decoded twice:

- a camera is added to its group only while no other group is known to run it: a move removes first
  and adds after the removal is confirmed;
- a group that stops answering is killed (fenced) before its cameras are placed elsewhere.

A group that dies or stops answering pings is replaced by moving its cameras into groups with room
(``cluster.assignment``), new groups being started only when needed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cluster.assignment import AssignmentPolicy, Plan, plan_assignment, plan_rebalance
from cluster.control_models import (
    CameraExists,
    CameraList,
    CameraNotFound,
    CameraView,
    ClusterStatus,
    FailoverRecord,
    GroupSummary,
    ImportResult,
    InvalidCamera,
    apply_patch,
    safe_errors,
)
from cluster.group_backend import GroupBackend, GroupDeadError, GroupError, GroupTimeoutError
from cluster.inventory import InventoryStore, SQLiteStoreConfig, StoreConfig
from cluster.status import CameraState, CameraStatus, GroupStatus
from decoders.config import CameraSpec

log = logging.getLogger(__name__)


class ControllerTimings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    health_interval_s: float = Field(1.0, gt=0, description="How often every ready group is pinged.")
    ping_timeout_s: float = Field(2.0, gt=0, description="A ping slower than this counts as missed.")
    unresponsive_after: int = Field(2, ge=1, description="Missed pings in a row before a group is fenced.")
    status_interval_s: float = Field(3.0, gt=0, description="How often group status (and costs) is polled.")
    rebalance_interval_s: float = Field(60.0, gt=0, description="How often the bounded rebalance pass runs.")
    call_timeout_s: float = Field(30.0, gt=0, description="Timeout of add/remove/status calls.")
    start_timeout_s: float = Field(
        600.0, gt=0, description="A new group may take this long to answer (the autoscaler may add a node)."
    )
    max_concurrent_calls: int = Field(256, ge=1, description="Camera add/remove calls in flight at once.")


class GroupOptions(BaseModel):
    """How the Ray layer creates DecoderGroup actors (the controller itself only uses group ids)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actor_prefix: str = Field("cctv-group-", description="Actor name = prefix + group id.")
    num_cpus: float = Field(0.25, ge=0, description="CPUs reserved per group actor.")
    resources: dict[str, float] = Field(
        default_factory=dict, description="Custom resources, e.g. {'decode': 1} to land on decode workers."
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="GroupConfig fields but group_id (redis_url, detector_app, ...)."
    )


class ControllerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    store: StoreConfig = Field(default_factory=SQLiteStoreConfig, description="Where the inventory persists.")
    policy: AssignmentPolicy = Field(default_factory=AssignmentPolicy, description="Assignment policy.")
    timings: ControllerTimings = Field(default_factory=ControllerTimings, description="Supervision timing.")
    groups: GroupOptions = Field(default_factory=GroupOptions, description="DecoderGroup actor options.")


@dataclass
class _Summary:
    by_state: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # cameras per group
    loads: dict[str, float] = field(default_factory=dict)  # summed cost per group
    enabled: int = 0
    simulated: int = 0


class Controller:
    def __init__(
        self,
        store: InventoryStore,
        groups: GroupBackend,
        config: ControllerConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or ControllerConfig()
        self._store = store
        self._groups = groups
        self._clock = clock
        self._policy = self.config.policy
        self._t = self.config.timings
        self._cameras: dict[str, CameraSpec] = {}
        self._measured: dict[str, float] = {}
        self._estimates: dict[str, float] = {}  # CostModel estimate per camera, computed once per spec
        self._assignment: dict[str, str] = {}
        self._seq = 0
        self._ready: set[str] = set()
        self._starting: dict[str, asyncio.Task] = {}
        self._retiring: set[str] = set()
        # What each group runs, as far as we know: camera -> the spec it was given (None: unknown spec).
        self._placed: dict[str, dict[str, CameraSpec | None]] = {}
        self._missed: dict[str, int] = {}
        self._epoch: dict[str, int] = {}  # bumped per converge that calls a group: stale reports are ignored
        self._status: dict[str, CameraStatus] = {}
        self._group_seen: dict[str, tuple[float, str | None, int]] = {}  # time, node_id, batches_sent
        self._failovers: deque[FailoverRecord] = deque(maxlen=20)
        self._open_failovers: dict[str, tuple[float, set[str]]] = {}  # dead group -> (start, its cameras)
        self._last_plan_ms = 0.0
        self._last_poll: float | None = None
        self._version = 0  # bumped by every change that the status summary depends on
        self._summary_cache: tuple[int, _Summary] | None = None
        self._lock = asyncio.Lock()
        self._sem = asyncio.Semaphore(self._t.max_concurrent_calls)

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the inventory, adopt the groups that survived, fence strays, converge."""
        async with self._lock:
            snap = self._store.load()
            self._cameras, self._measured = dict(snap.cameras), dict(snap.costs)
            self._estimates = {c: self._policy.costs.estimate(s) for c, s in self._cameras.items()}
            self._assignment, self._seq = dict(snap.assignment), snap.next_group_seq
            running = set(await self._groups.discover())
            for stray in running - snap.groups:  # created, but the plan naming it was never stored
                await self._groups.kill(stray)
            survivors = sorted(running & snap.groups)
            found = await asyncio.gather(*(self._adopt(g) for g in survivors))
            dead = (snap.groups - running) | {g for g, ok in zip(survivors, found, strict=True) if not ok}
            for g in dead & running:
                await self._groups.kill(g)
            log.info("controller: %d cameras, %d groups found alive", len(self._cameras), len(self._ready))
            await self._replan(dead=dead)  # converges too: finishes a move that a crash cut short
        await self.poll_status()

    async def _adopt(self, group_id: str) -> bool:
        wait = self._t.ping_timeout_s * self._t.unresponsive_after
        try:
            await self._groups.ping(group_id, wait)
            running = await self._groups.camera_ids(group_id, self._t.call_timeout_s)
        except GroupError as exc:
            log.warning("controller: cannot adopt %s: %s", group_id, exc)
            return False
        self._ready.add(group_id)
        self._placed[group_id] = dict.fromkeys(running)
        return True

    async def run(self) -> None:
        """Health checks, status polls and rebalancing, forever (cancel the task to stop)."""
        t = self._t
        next_status = self._clock() + t.status_interval_s
        next_rebalance = self._clock() + t.rebalance_interval_s
        while True:
            await asyncio.sleep(t.health_interval_s)
            try:
                await self.check_groups()
                if self._clock() >= next_status:
                    next_status = self._clock() + t.status_interval_s
                    await self.poll_status()
                if self._clock() >= next_rebalance:
                    next_rebalance = self._clock() + t.rebalance_interval_s
                    await self.rebalance()
            except Exception:  # the loop is the boundary: log and keep supervising
                log.exception("controller: supervision pass failed")

    async def shutdown(self, stop_groups: bool = False) -> None:
        for task in self._starting.values():
            task.cancel()
        if stop_groups:
            groups = set(self._ready) | set(self._starting) | self._retiring
            await asyncio.gather(*(self._groups.stop(g, self._t.call_timeout_s) for g in groups))
        self._store.close()

    # -- inventory API ---------------------------------------------------------------------------
    async def list_cameras(
        self, offset: int = 0, limit: int = 100, state: str | None = None, group_id: str | None = None
    ) -> CameraList:
        ids = sorted(self._cameras)
        if group_id is not None:
            ids = [c for c in ids if self._assignment.get(c) == group_id]
        if state is not None:
            ids = [c for c in ids if self._state_of(c) == state]
        page = [self._view(c) for c in ids[offset : offset + limit]]
        return CameraList(total=len(ids), offset=offset, cameras=page)

    async def get_camera(self, camera_id: str) -> CameraView:
        if camera_id not in self._cameras:
            raise CameraNotFound(camera_id)
        return self._view(camera_id)

    async def create_camera(self, spec: CameraSpec) -> CameraView:
        async with self._lock:
            if spec.camera_id in self._cameras:
                raise CameraExists(spec.camera_id)
            self._put([spec])
            await self._replan()
        return self._view(spec.camera_id)

    async def put_camera(self, spec: CameraSpec) -> CameraView:
        async with self._lock:
            if self._put([spec]).unchanged == 0:
                await self._replan()
        return self._view(spec.camera_id)

    async def patch_camera(self, camera_id: str, changes: dict[str, Any]) -> CameraView:
        async with self._lock:
            if camera_id not in self._cameras:
                raise CameraNotFound(camera_id)
            try:
                spec = apply_patch(self._cameras[camera_id], changes)
            except ValidationError as exc:
                raise InvalidCamera(safe_errors(exc)) from None
            if self._put([spec]).unchanged == 0:
                await self._replan()
        return self._view(camera_id)

    async def delete_camera(self, camera_id: str) -> None:
        async with self._lock:
            if camera_id not in self._cameras:
                raise CameraNotFound(camera_id)
            self._remove([camera_id])
            await self._replan()

    async def import_cameras(self, specs: list[CameraSpec], prune: bool = False) -> ImportResult:
        async with self._lock:
            wanted = {s.camera_id for s in specs}
            removed = sorted(set(self._cameras) - wanted) if prune else []
            self._remove(removed)
            result = self._put(specs)
            if removed or result.created or result.updated:
                await self._replan()
        return result.model_copy(update={"removed": removed, "plan_ms": round(self._last_plan_ms, 2)})

    async def cluster_status(self) -> ClusterStatus:
        now = self._clock()
        summary = self._summary()
        groups = []
        for group_id in sorted(self._ready | set(self._starting)):
            seen_at, node_id, batches = self._group_seen.get(group_id, (None, None, 0))
            groups.append(
                GroupSummary(
                    group_id=group_id,
                    phase="ready" if group_id in self._ready else "starting",
                    cameras=summary.counts.get(group_id, 0),
                    load=round(summary.loads.get(group_id, 0.0), 4),
                    node_id=node_id,
                    batches_sent=batches,
                    status_age_s=None if seen_at is None else round(now - seen_at, 2),
                )
            )
        return ClusterStatus(
            cameras=len(self._cameras),
            enabled=summary.enabled,
            assigned=len(self._assignment),
            simulated=summary.simulated,
            by_state=summary.by_state,
            groups=groups,
            failovers=list(self._failovers),
            last_plan_ms=round(self._last_plan_ms, 2),
            last_status_poll_age_s=None if self._last_poll is None else round(now - self._last_poll, 2),
            controller_pid=os.getpid(),
            controller_rss_bytes=psutil.Process().memory_info().rss,
        )

    def assignment(self) -> dict[str, str]:
        """camera_id -> group_id, the desired state (for tests and tools)."""
        return dict(self._assignment)

    def _summary(self) -> _Summary:
        """The O(cameras) part of the cluster status, recomputed only after something changed."""
        if self._summary_cache is not None and self._summary_cache[0] == self._version:
            return self._summary_cache[1]
        summary = _Summary()
        costs = self._costs()
        for camera_id, group_id in self._assignment.items():
            summary.loads[group_id] = summary.loads.get(group_id, 0.0) + costs.get(camera_id, 0.0)
            summary.counts[group_id] = summary.counts.get(group_id, 0) + 1
        for camera_id, spec in self._cameras.items():
            state = self._state_of(camera_id)
            summary.by_state[state] = summary.by_state.get(state, 0) + 1
            summary.enabled += spec.enabled
            summary.simulated += spec.is_simulated
        summary.by_state = dict(sorted(summary.by_state.items()))
        self._summary_cache = (self._version, summary)
        return summary

    # -- supervision -----------------------------------------------------------------------------
    async def check_groups(self) -> None:
        """Ping every ready group; fence and replace the dead and the unresponsive."""
        groups = sorted(self._ready)
        results = await asyncio.gather(
            *(self._groups.ping(g, self._t.ping_timeout_s) for g in groups), return_exceptions=True
        )
        dead: dict[str, str] = {}
        for group_id, result in zip(groups, results, strict=True):
            if isinstance(result, GroupDeadError):
                dead[group_id] = "died"
            elif isinstance(result, Exception):
                self._missed[group_id] = self._missed.get(group_id, 0) + 1
                if self._missed[group_id] >= self._t.unresponsive_after:
                    dead[group_id] = f"unresponsive ({self._missed[group_id]} pings missed)"
            else:
                self._missed.pop(group_id, None)
        if dead:
            async with self._lock:
                await self._fail_over(dead)

    async def poll_status(self) -> None:
        """Collect camera status and measured costs; correct our view of what each group runs."""
        groups = sorted(self._ready)
        epochs = {g: self._epoch.get(g, 0) for g in groups}
        results = await asyncio.gather(
            *(self._groups.status(g, self._t.call_timeout_s) for g in groups), return_exceptions=True
        )
        reports: dict[str, GroupStatus | BaseException] = {}
        for group_id, result in zip(groups, results, strict=True):
            failed = isinstance(result, BaseException)
            reports[group_id] = result if failed else GroupStatus.model_validate(result)
            await asyncio.sleep(0)  # validating 10k camera statuses takes a while: let API reads in between
        async with self._lock:
            now = self._clock()
            dead: dict[str, str] = {}
            drift = False
            for group_id, report in reports.items():
                if group_id not in self._ready:
                    continue  # failed over while we waited
                if isinstance(report, GroupDeadError):
                    dead[group_id] = "died"
                    continue
                if isinstance(report, BaseException):
                    log.warning("controller: status of %s failed: %s", group_id, report)
                    continue
                fresh = self._epoch.get(group_id, 0) == epochs[group_id]  # no add/remove raced this report
                drift |= self._observe(report, now, fresh)
            self._last_poll = now
            if dead:
                await self._fail_over(dead)
            elif drift:
                await self._converge()

    async def rebalance(self) -> None:
        """Persist measured costs; shed hard/soft overload and drain an idle group (bounded moves)."""
        async with self._lock:
            self._store.save_costs(self._measured)
            if not await self._replan():
                costs = self._costs()
                current = {c: g for c, g in self._assignment.items() if c in costs}
                plan = plan_rebalance(costs, current, self._policy, self._seq)
                if plan.changed:
                    await self._apply(plan)

    # -- internals -------------------------------------------------------------------------------
    def _put(self, specs: list[CameraSpec]) -> ImportResult:
        """Store new and changed specs (the caller re-plans); a changed spec's measured cost is dropped."""
        result = ImportResult()
        changed = []
        for spec in specs:
            old = self._cameras.get(spec.camera_id)
            if old == spec:
                result.unchanged += 1
                continue
            (result.created if old is None else result.updated).append(spec.camera_id)
            changed.append(spec)
        if changed:
            self._store.put_cameras(changed)
            self._version += 1
            for spec in changed:
                self._cameras[spec.camera_id] = spec
                self._estimates[spec.camera_id] = self._policy.costs.estimate(spec)
                self._measured.pop(spec.camera_id, None)
        return result

    def _remove(self, camera_ids: list[str]) -> None:
        """Drop cameras from the store and from memory (the caller re-plans, which stops them)."""
        if camera_ids:
            self._store.delete_cameras(camera_ids)
            self._version += 1
        for camera_id in camera_ids:
            for table in (self._cameras, self._estimates, self._measured, self._status):
                table.pop(camera_id, None)

    def _costs(self) -> dict[str, float]:
        measured, estimated = self._measured, self._estimates
        return {c: measured.get(c) or estimated[c] for c, spec in self._cameras.items() if spec.enabled}

    async def _replan(self, dead: Iterable[str] = ()) -> bool:
        """Plan from the current inventory and live groups, persist, converge. True if anything moved."""
        live = self._ready | set(self._starting)
        started = time.perf_counter()
        plan = plan_assignment(self._costs(), self._assignment, live, self._policy, self._seq)
        self._last_plan_ms = (time.perf_counter() - started) * 1000.0
        dead = set(dead)
        if plan.changed or dead:
            await self._apply(plan, dead)
        else:
            await self._converge()  # e.g. a changed spec: same group, restarted there
        return plan.changed

    async def _apply(self, plan: Plan, dead: set[str] | None = None) -> None:
        self._store.save_plan(plan, dead_groups=dead or ())  # desired state is durable before we act
        self._assignment, self._seq = dict(plan.assignment), plan.next_group_seq
        for group_id in plan.create:
            await self._groups.create(group_id)
            self._placed[group_id] = {}
            self._starting[group_id] = asyncio.create_task(self._await_ready(group_id))
        self._retiring.update(plan.retire)
        await self._converge()

    async def _await_ready(self, group_id: str) -> None:
        try:
            await self._groups.ping(group_id, self._t.start_timeout_s)
        except GroupError as exc:
            async with self._lock:
                self._starting.pop(group_id, None)
                await self._fail_over({group_id: f"did not start: {exc}"})
            return
        async with self._lock:
            if self._starting.pop(group_id, None) is not None:
                self._ready.add(group_id)
                await self._converge()

    async def _converge(self) -> None:
        """Make the ready groups run exactly their assigned cameras: stop/remove first, then add."""
        self._version += 1
        dead: dict[str, str] = {}
        retiring, self._retiring = sorted(self._retiring), set()
        for group_id in retiring:
            task = self._starting.pop(group_id, None)
            if task is not None:
                task.cancel()
        await asyncio.gather(*(self._groups.stop(g, self._t.call_timeout_s) for g in retiring))
        for group_id in retiring:
            self._drop_group(group_id)
        desired = self._assignment
        # A camera moving to a group that is still starting keeps running where it is until then.
        removals = [
            (g, c)
            for g in sorted(self._ready)
            for c in self._placed[g]
            if desired.get(c) != g and desired.get(c) not in self._starting
        ]
        timeout = self._t.call_timeout_s
        self._bump(g for g, _ in removals)
        errors = await self._bounded(self._groups.remove_camera(g, c, timeout) for g, c in removals)
        for (group_id, camera_id), error in zip(removals, errors, strict=True):
            if error is None:
                self._placed[group_id].pop(camera_id, None)
            elif isinstance(error, GroupDeadError):
                dead[group_id] = "died"
            # on timeout the camera stays "placed" there, which blocks adding it elsewhere: retried later
        where = {c: g for g, cams in self._placed.items() for c in cams}
        adds = []
        for camera_id, group_id in self._assignment.items():
            if group_id not in self._ready or group_id in dead:
                continue
            spec = self._cameras[camera_id]
            running_in = where.get(camera_id)
            if running_in is None:
                adds.append((group_id, spec))
            elif running_in == group_id and self._placed[group_id][camera_id] not in (None, spec):
                adds.append((group_id, spec))  # spec changed: the group restarts the camera
        self._bump(g for g, _ in adds)
        errors = await self._bounded(self._groups.add_camera(g, s.secret_dict(), timeout) for g, s in adds)
        for (group_id, spec), error in zip(adds, errors, strict=True):
            if isinstance(error, GroupDeadError):
                dead[group_id] = "died"
            elif error is None or isinstance(error, GroupTimeoutError):
                self._placed[group_id][spec.camera_id] = spec  # a timed-out add may still land: assume it did
            else:
                log.warning("controller: add %s to %s failed: %s", spec.camera_id, group_id, error)
        self._bump({g for g, _ in removals} | {g for g, _ in adds})  # reports sent meanwhile are stale
        self._close_failovers()
        if dead:
            await self._fail_over(dead)

    def _bump(self, groups: Iterable[str]) -> None:
        for group_id in set(groups):
            self._epoch[group_id] = self._epoch.get(group_id, 0) + 1

    async def _bounded(self, calls: Iterable[Awaitable[Any]]) -> list[BaseException | None]:
        async def one(call: Awaitable[Any]) -> BaseException | None:
            async with self._sem:
                try:
                    await call
                except GroupError as exc:
                    return exc
                return None

        return list(await asyncio.gather(*(one(c) for c in calls)))

    async def _fail_over(self, dead: dict[str, str]) -> None:
        """Fence the dead (kill), forget what they ran, and re-place their cameras."""
        dead = {g: r for g, r in dead.items() if g in self._ready or g in self._starting or g in self._placed}
        if not dead:
            return
        now = self._clock()
        for group_id, reason in dead.items():
            await self._groups.kill(group_id)
            cameras = {c for c, g in self._assignment.items() if g == group_id}
            log.warning("controller: group %s %s; re-placing %d cameras", group_id, reason, len(cameras))
            record = FailoverRecord(
                group_id=group_id, cameras=len(cameras), reason=reason, detected_at=time.time()
            )
            self._failovers.append(record)
            self._open_failovers[group_id] = (now, cameras)
            task = self._starting.pop(group_id, None)
            if task is not None and task is not asyncio.current_task():
                task.cancel()
            self._drop_group(group_id)
        await self._replan(dead=set(dead))

    def _drop_group(self, group_id: str) -> None:
        self._version += 1
        self._ready.discard(group_id)
        self._epoch.pop(group_id, None)
        self._missed.pop(group_id, None)
        self._group_seen.pop(group_id, None)
        self._placed.pop(group_id, None)

    def _close_failovers(self) -> None:
        if not self._open_failovers:
            return
        where = {c for g in self._ready for c in self._placed.get(g, {})}
        for i, record in enumerate(self._failovers):
            start, cameras = self._open_failovers.get(record.group_id, (0.0, None))
            if cameras is not None and all(c in where for c in cameras if c in self._assignment):
                del self._open_failovers[record.group_id]
                took = round(self._clock() - start, 3)
                self._failovers[i] = record.model_copy(update={"reassigned_s": took})

    def _observe(self, status: GroupStatus, now: float, fresh: bool) -> bool:
        """Record one group's report; if ``fresh``, correct what we think it runs (True if that changed)."""
        group_id = status.group_id
        self._version += 1
        self._group_seen[group_id] = (now, status.node_id, status.batches_sent)
        for cam in status.cameras:
            if self._assignment.get(cam.camera_id) == group_id:
                self._status[cam.camera_id] = cam
                if cam.state is CameraState.ONLINE and cam.decode_cpu_s_per_s > 0:
                    self._measured[cam.camera_id] = cam.decode_cpu_s_per_s
        if not fresh:
            return False
        placed = self._placed.setdefault(group_id, {})
        observed = {cam.camera_id: placed.get(cam.camera_id) for cam in status.cameras}
        self._placed[group_id] = observed
        return set(observed) != set(placed) or any(self._assignment.get(c) != group_id for c in observed)

    def _state_of(self, camera_id: str) -> str:
        spec = self._cameras[camera_id]
        if not spec.enabled:
            return CameraState.DISABLED.value
        group_id = self._assignment.get(camera_id)
        if group_id is None:
            return "unassigned"
        status = self._status.get(camera_id)
        if status is None or status.group_id != group_id:
            return "unreported"
        return status.state.value

    def _view(self, camera_id: str) -> CameraView:
        spec = self._cameras[camera_id]
        group_id = self._assignment.get(camera_id) if spec.enabled else None
        status = self._status.get(camera_id)
        if status is not None and status.group_id != group_id:
            status = None
        measured = self._measured.get(camera_id)
        return CameraView(
            camera=spec.public_dict(),
            phase="disabled" if not spec.enabled else "assigned" if group_id else "unassigned",
            group_id=group_id,
            cost=measured or self._estimates[camera_id],
            cost_measured=measured is not None,
            status=status,
        )
