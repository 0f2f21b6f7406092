"""Camera -> DecoderGroup assignment as pure functions: ``(costs, current, groups, policy) -> Plan``.

No Ray, no I/O, no clock: the controller passes everything in and applies the returned plan, so every
rule here is tested with plain dicts (tests/test_control_assignment.py).

Rules, in the order ``plan_assignment`` applies them:

1. A camera stays where it is while its group is alive and not over its hard limits. Moving a camera
   costs a reconnect (seconds of missing frames), so nothing moves just to even out load.
2. A group over its hard capacity (measured decode cost grew) sheds its most expensive cameras
   first: the fewest moves that bring it back under the limit. A group with one camera keeps it.
3. Cameras without a live group (new, re-enabled, or their group died) are placed largest cost first
   into the least-loaded group that has room under ``target_fill``; a new group is created only when
   none has room. The headroom above ``target_fill`` absorbs measurement drift without moves.
4. Groups left without cameras are retired.

``plan_rebalance`` is the periodic, bounded pass: it relieves groups above ``target_fill`` and drains
one nearly-empty group into the others when they can take all of its cameras, so the group count
follows the load down. Both cap their moves, and both prefer staying put on ties.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from decoders.config import CameraSpec, SamplingMode


class CostModel(BaseModel):
    """Decode cost estimates (CPU seconds per wall second) used until a camera has been measured.

    From DESIGN.md: software decode is ~200 frames/s per core at 1080p, so a 25 fps camera costs
    ~0.125 core whatever the analysis rate (every P-frame is decoded); keyframe-only decode is ~8 ms
    per keyframe, i.e. ~0.004 core at one keyframe per 2 s, plus demux.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    full_decode: float = Field(0.15, gt=0, description="Estimate when every frame is decoded ('fps', 'all').")
    keyframes: float = Field(0.01, gt=0, description="Estimate for sampling 'keyframes'.")
    simulated: float = Field(0.0005, gt=0, description="Estimate for sim:// cameras (nothing is decoded).")
    floor: float = Field(0.0001, gt=0, description="Lower bound on any cost, measured or estimated.")

    def estimate(self, spec: CameraSpec) -> float:
        if spec.url.get_secret_value().startswith("sim://"):
            return self.simulated
        return self.keyframes if spec.sampling is SamplingMode.KEYFRAMES else self.full_decode


class AssignmentPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    group_capacity: float = Field(
        1.0, gt=0, description="Hard limit on a group's summed decode cost (CPU s/s, i.e. cores it may use)."
    )
    target_fill: float = Field(
        0.8, gt=0, le=1, description="Fraction of capacity that placement fills; the rest is headroom."
    )
    max_cameras_per_group: int = Field(
        256, ge=1, description="Hard limit on cameras per group (one thread each; bounds status size)."
    )
    merge_below: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="Rebalance drains a group whose load and camera count are below this "
        "fraction of their limits, when the other groups can take all of its cameras.",
    )
    max_moves: int = Field(200, ge=1, description="Most camera moves one rebalance pass may make.")
    costs: CostModel = Field(default_factory=CostModel, description="Estimates before a camera is measured.")
    group_prefix: str = Field(
        "g", pattern=r"^[a-z][a-z0-9-]{0,15}$", description="New groups are named '<prefix><sequence>'."
    )


_EPS = 1e-9  # loads are float sums: 400 x 0.002 must still fit under 0.8


@dataclass(frozen=True)
class Move:
    camera_id: str
    source: str | None  # None: the camera had no live group (new, re-enabled, or its group died)
    target: str | None  # None: the camera was removed or disabled


@dataclass(frozen=True)
class Plan:
    assignment: dict[str, str]  # camera_id -> group_id: the complete desired state
    moves: tuple[Move, ...] = ()
    create: tuple[str, ...] = ()  # groups to start before cameras are added to them
    retire: tuple[str, ...] = ()  # groups to stop after their cameras are removed
    next_group_seq: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.moves or self.create or self.retire)


@dataclass
class _Bin:
    group_id: str
    cameras: set[str] = field(default_factory=set)
    load: float = 0.0

    def add(self, camera_id: str, cost: float) -> None:
        self.cameras.add(camera_id)
        self.load += cost

    def remove(self, camera_id: str, cost: float) -> None:
        self.cameras.discard(camera_id)
        self.load -= cost


def group_name(policy: AssignmentPolicy, seq: int) -> str:
    return f"{policy.group_prefix}{seq:04d}"


def group_loads(costs: Mapping[str, float], assignment: Mapping[str, str]) -> dict[str, float]:
    loads: dict[str, float] = {}
    for camera_id, group_id in assignment.items():
        loads[group_id] = loads.get(group_id, 0.0) + costs.get(camera_id, 0.0)
    return loads


def plan_assignment(
    costs: Mapping[str, float],
    current: Mapping[str, str],
    live_groups: Collection[str],
    policy: AssignmentPolicy,
    next_group_seq: int = 0,
) -> Plan:
    """Desired assignment for the cameras in ``costs`` (the enabled inventory, cost per camera).

    ``current`` is the last assignment (may name dead groups or removed cameras); ``live_groups`` are
    the groups known to be running, possibly empty ones.
    """
    cost = _costs_with_floor(costs, policy)
    bins = {g: _Bin(g) for g in live_groups}
    moves: list[Move] = []
    unplaced: list[str] = []
    for camera_id, group_id in current.items():
        if camera_id not in cost:
            if group_id in bins:  # removed or disabled: stop it where it runs
                moves.append(Move(camera_id, group_id, None))
        elif group_id in bins:
            bins[group_id].add(camera_id, cost[camera_id])
        else:
            unplaced.append(camera_id)  # its group died
    source: dict[str, str | None] = dict.fromkeys(unplaced)
    for camera_id in cost:
        if camera_id not in current:
            unplaced.append(camera_id)
            source[camera_id] = None
    for b in bins.values():
        for camera_id in _shed(b, cost, policy):
            unplaced.append(camera_id)
            source[camera_id] = b.group_id
    create, seq = _place(unplaced, cost, bins, policy, next_group_seq)
    for camera_id in unplaced:
        target = next(b.group_id for b in bins.values() if camera_id in b.cameras)
        if target != source[camera_id]:
            moves.append(Move(camera_id, source[camera_id], target))
    retire = tuple(sorted(g for g, b in bins.items() if not b.cameras and g not in create))
    for g in retire:
        del bins[g]
    return Plan(_assignment_of(bins), tuple(moves), tuple(create), retire, seq)


def plan_rebalance(
    costs: Mapping[str, float],
    current: Mapping[str, str],
    policy: AssignmentPolicy,
    next_group_seq: int = 0,
) -> Plan:
    """A bounded pass over a complete, live assignment: relieve soft overload, drain one idle group."""
    cost = _costs_with_floor(costs, policy)
    bins: dict[str, _Bin] = {}
    for camera_id, group_id in current.items():
        bins.setdefault(group_id, _Bin(group_id)).add(camera_id, cost[camera_id])
    soft = policy.group_capacity * policy.target_fill
    moves: list[Move] = []
    create: list[str] = []
    seq = next_group_seq
    # 1. Soft overload: move the smallest cameras that bring the group under target_fill (small ones
    #    fit elsewhere without opening a new group); never empty a group this way.
    for b in sorted(bins.values(), key=lambda b: (-b.load, b.group_id)):
        while b.load > soft + _EPS and len(b.cameras) > 1 and len(moves) < policy.max_moves:
            camera_id = _cheapest_relief(b, cost, b.load - soft)
            target = _least_loaded_with_room(bins, cost[camera_id], policy, exclude=b.group_id)
            if target is None:
                target = _Bin(group_name(policy, seq))
                seq += 1
                bins[target.group_id] = target
                create.append(target.group_id)
            b.remove(camera_id, cost[camera_id])
            target.add(camera_id, cost[camera_id])
            moves.append(Move(camera_id, b.group_id, target.group_id))
    # 2. Consolidation: drain the emptiest group if everything in it fits into the others.
    retire: list[str] = []
    if len(bins) > 1 and len(moves) < policy.max_moves:
        idle = min(bins.values(), key=lambda b: (b.load, len(b.cameras), b.group_id))
        small = (
            idle.load < policy.merge_below * policy.group_capacity
            and len(idle.cameras) < policy.merge_below * policy.max_cameras_per_group
            and len(idle.cameras) <= policy.max_moves - len(moves)
        )
        if small:
            drained = _try_drain(idle, bins, cost, policy)
            if drained is not None:
                moves.extend(drained)
                retire.append(idle.group_id)
                del bins[idle.group_id]
    return Plan(_assignment_of(bins), tuple(moves), tuple(create), tuple(retire), seq)


def _costs_with_floor(costs: Mapping[str, float], policy: AssignmentPolicy) -> dict[str, float]:
    floor = policy.costs.floor
    return {c: max(floor, float(v)) for c, v in costs.items()}


def _shed(b: _Bin, cost: Mapping[str, float], policy: AssignmentPolicy) -> list[str]:
    """Cameras to take out of an over-limit group: largest first, so the fewest cameras move."""
    shed: list[str] = []
    ordered = sorted(b.cameras, key=lambda c: (-cost[c], c))
    for camera_id in ordered:
        over = b.load > policy.group_capacity + _EPS or len(b.cameras) > policy.max_cameras_per_group
        if not over or len(b.cameras) <= 1:
            break
        b.remove(camera_id, cost[camera_id])
        shed.append(camera_id)
    return shed


def _cheapest_relief(b: _Bin, cost: Mapping[str, float], excess: float) -> str:
    """The smallest camera that removes ``excess`` alone, else the largest (fewest moves either way)."""
    enough = [c for c in b.cameras if cost[c] >= excess - _EPS]
    if enough:
        return min(enough, key=lambda c: (cost[c], c))
    return min(b.cameras, key=lambda c: (-cost[c], c))


def _has_room(b: _Bin, camera_cost: float, policy: AssignmentPolicy) -> bool:
    limit = policy.group_capacity * policy.target_fill
    # An empty group accepts any one camera, even one that alone exceeds the limit.
    fits = not b.cameras or b.load + camera_cost <= limit + _EPS
    return fits and len(b.cameras) < policy.max_cameras_per_group


def _least_loaded_with_room(
    bins: Mapping[str, _Bin], camera_cost: float, policy: AssignmentPolicy, exclude: str | None = None
) -> _Bin | None:
    candidates = [b for b in bins.values() if b.group_id != exclude and _has_room(b, camera_cost, policy)]
    return min(candidates, key=lambda b: (b.load, len(b.cameras), b.group_id), default=None)


def _place(
    unplaced: list[str], cost: Mapping[str, float], bins: dict[str, _Bin], policy: AssignmentPolicy, seq: int
) -> tuple[list[str], int]:
    """Largest cost first into the least-loaded group with room; open groups only when none has room."""
    create: list[str] = []
    for camera_id in sorted(unplaced, key=lambda c: (-cost[c], c)):
        target = _least_loaded_with_room(bins, cost[camera_id], policy)
        if target is None:
            target = _Bin(group_name(policy, seq))
            seq += 1
            bins[target.group_id] = target
            create.append(target.group_id)
        target.add(camera_id, cost[camera_id])
    return create, seq


def _try_drain(
    idle: _Bin, bins: dict[str, _Bin], cost: Mapping[str, float], policy: AssignmentPolicy
) -> list[Move] | None:
    """Moves that empty ``idle`` into the other groups, or None (and nothing changed) if they cannot."""
    others = {g: _Bin(g, set(b.cameras), b.load) for g, b in bins.items() if g != idle.group_id}
    moves: list[Move] = []
    for camera_id in sorted(idle.cameras, key=lambda c: (-cost[c], c)):
        target = _least_loaded_with_room(others, cost[camera_id], policy)
        if target is None or not target.cameras:
            return None
        target.add(camera_id, cost[camera_id])
        moves.append(Move(camera_id, idle.group_id, target.group_id))
    for g, b in others.items():
        bins[g] = b
    return moves


def _assignment_of(bins: Mapping[str, _Bin]) -> dict[str, str]:
    return {camera_id: b.group_id for b in bins.values() for camera_id in b.cameras}
