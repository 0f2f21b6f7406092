"""Camera -> DecoderGroup assignment as pure functions: ``(costs, current, groups, policy) -> Plan``.

No Ray, no I/O, no clock: the controller passes everything in and applies the returned plan, so every
rule here is tested with plain dicts (tests/test_control_assignment.py).

Rules, in the order ``plan_assignment`` applies them:

1. A camera stays where it is while its group is alive and not over its hard limits. Moving a camera
   costs a reconnect (seconds of missing frames), so nothing moves just to even out load.
2. A group over its hard capacity (measured decode cost grew) sheds its most expensive cameras
   first: the fewest moves that bring it back under the limit. A group with one camera keeps it.
3. Cameras of a dead group are placed first, into the least-loaded groups with room up to
   ``failover_fill`` (by default all the headroom): those groups' CPUs are already reserved, while a
   new group may have to wait for the autoscaler to add a node.
4. Other cameras without a group (new, re-enabled, shed) are placed largest cost first into the
   least-loaded group with room under ``target_fill`` (cost and camera count); a new group is created
   only when none has room. The headroom absorbs measurement drift and failovers without moves.
5. Groups left without cameras are retired.

``plan_rebalance`` is the periodic, bounded pass: it brings groups back under ``target_fill`` (after a
failover or cost drift) and drains one nearly-empty group into the others when they can take all of
its cameras, so the group count follows the load down. Both cap their moves and prefer staying put.
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
        if spec.is_simulated:
            return self.simulated
        return self.keyframes if spec.sampling is SamplingMode.KEYFRAMES else self.full_decode


class AssignmentPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    group_capacity: float = Field(
        1.0, gt=0, description="Hard limit on a group's summed decode cost (CPU s/s, i.e. cores it may use)."
    )
    target_fill: float = Field(
        0.8, gt=0, le=1, description="Fraction of the limits (cost, count) that placement fills: headroom."
    )
    failover_fill: float = Field(
        1.0, gt=0, le=1, description="Fraction of the limits that a dead group's cameras may fill elsewhere."
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
    orphans: list[str] = []  # their group died
    for camera_id, group_id in current.items():
        if camera_id not in cost:
            if group_id in bins:  # removed or disabled: stop it where it runs
                moves.append(Move(camera_id, group_id, None))
        elif group_id in bins:
            bins[group_id].add(camera_id, cost[camera_id])
        else:
            orphans.append(camera_id)
    source: dict[str, str | None] = dict.fromkeys(orphans)
    others = [c for c in cost if c not in current]
    source.update(dict.fromkeys(others))
    for b in bins.values():
        for camera_id in _shed(b, cost, policy):
            others.append(camera_id)
            source[camera_id] = b.group_id
    create, seq = _place(orphans, cost, bins, policy, policy.failover_fill, next_group_seq)
    more, seq = _place(others, cost, bins, policy, policy.target_fill, seq)
    create += more
    for camera_id in orphans + others:
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
    soft_load, soft_count = _limits(policy, policy.target_fill)
    moves: list[Move] = []
    create: list[str] = []
    seq = next_group_seq
    # 1. Soft overload: move the cameras that bring the group under target_fill with the fewest
    #    moves, small ones first (they fit elsewhere without opening a group); never empty a group.
    for b in sorted(bins.values(), key=lambda b: (-b.load, b.group_id)):
        while len(moves) < policy.max_moves and len(b.cameras) > 1:
            if b.load > soft_load + _EPS:
                camera_id = _cheapest_relief(b, cost, b.load - soft_load)
            elif len(b.cameras) > soft_count:
                camera_id = min(b.cameras, key=lambda c: (cost[c], c))
            else:
                break
            target = _least_loaded_with_room(
                bins, cost[camera_id], policy, policy.target_fill, exclude=b.group_id
            )
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


def _limits(policy: AssignmentPolicy, fill: float) -> tuple[float, int]:
    """(load, camera count) a group may reach when filled to ``fill`` of its hard limits."""
    return policy.group_capacity * fill, max(1, int(policy.max_cameras_per_group * fill + _EPS))


def _least_loaded_with_room(
    bins: Mapping[str, _Bin],
    camera_cost: float,
    policy: AssignmentPolicy,
    fill: float,
    exclude: str | None = None,
) -> _Bin | None:
    max_load, max_count = _limits(policy, fill)
    best: _Bin | None = None
    for b in bins.values():
        # An empty group accepts any one camera, even one that alone exceeds the limit.
        fits = not b.cameras or (b.load + camera_cost <= max_load + _EPS and len(b.cameras) < max_count)
        if fits and b.group_id != exclude and (best is None or _rank(b) < _rank(best)):
            best = b
    return best


def _rank(b: _Bin) -> tuple[float, int, str]:
    return (b.load, len(b.cameras), b.group_id)


def _place(
    unplaced: list[str],
    cost: Mapping[str, float],
    bins: dict[str, _Bin],
    policy: AssignmentPolicy,
    fill: float,
    seq: int,
) -> tuple[list[str], int]:
    """Largest cost first into the least-loaded group with room; open groups only when none has room."""
    create: list[str] = []
    for camera_id in sorted(unplaced, key=lambda c: (-cost[c], c)):
        target = _least_loaded_with_room(bins, cost[camera_id], policy, fill)
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
        target = _least_loaded_with_room(others, cost[camera_id], policy, policy.target_fill)
        if target is None or not target.cameras:
            return None
        target.add(camera_id, cost[camera_id])
        moves.append(Move(camera_id, idle.group_id, target.group_id))
    for g, b in others.items():
        bins[g] = b
    return moves


def _assignment_of(bins: Mapping[str, _Bin]) -> dict[str, str]:
    return {camera_id: b.group_id for b in bins.values() for camera_id in b.cameras}
