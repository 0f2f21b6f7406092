"""Replica autoscaling for inference deployments by measured busy time, not request counts.

Serve's default policy scales on ongoing requests per replica. Our requests are micro-batches of
1..N frames, so a request count says little about load: 4 requests of 16 frames are 16x the work of
4 single frames. Each inference replica instead reports the fraction of wall time it spent running
the model (``busy_fraction``, via ``record_autoscaling_stats``); the sum over replicas is the number
of fully-busy replicas the load needs. We keep replicas at ``target_utilisation`` with hysteresis:
scale up after the demand has held for ``upscale_delay_s``, down after ``downscale_delay_s``.

``decide`` is a pure function (state in, state out, clock passed in) so it is unit-tested without a
cluster; ``UtilisationPolicy`` adapts Serve's ``AutoscalingContext`` to it. Serve config:
``autoscaling_config.policy = {policy_function: "autoscale.utilisation:UtilisationPolicy",
policy_kwargs: {...UtilisationParams}}``.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

BUSY_METRIC = "busy_fraction"


class UtilisationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_utilisation: float = Field(0.7, gt=0, le=1, description="Busy fraction to hold each replica at.")
    upscale_delay_s: float = Field(5.0, ge=0, description="Demand must exceed capacity this long to add.")
    downscale_delay_s: float = Field(60.0, ge=0, description="Demand must stay below this long to remove.")
    max_step_up: int = Field(4, ge=1, description="Most replicas added in one decision.")


def desired_replicas(busy_fractions: list[float], target_utilisation: float) -> int:
    """Replicas needed so that the measured busy time spreads at ``target_utilisation`` each."""
    busy = sum(min(1.0, max(0.0, b)) for b in busy_fractions)
    return max(1, math.ceil(busy / target_utilisation - 1e-9))


def decide(
    busy_fractions: list[float],
    current: int,
    bounds: tuple[int, int],
    params: UtilisationParams,
    state: dict[str, Any],
    now: float,
) -> tuple[int, dict[str, Any]]:
    """The replica count to run now, and the policy state to pass to the next call."""
    low, high = bounds
    if current == 0:
        return max(low, 1), {}
    want = min(high, max(low, desired_replicas(busy_fractions, params.target_utilisation)))
    state = dict(state)
    if want > current:
        state.pop("down_since", None)
        since = state.setdefault("up_since", now)
        if now - since >= params.upscale_delay_s:
            state.pop("up_since")
            return min(want, current + params.max_step_up), state
    elif want < current:
        state.pop("up_since", None)
        since = state.setdefault("down_since", now)
        if now - since >= params.downscale_delay_s:
            state.pop("down_since")
            return want, state
    else:
        state.pop("up_since", None)
        state.pop("down_since", None)
    return current, state


class UtilisationPolicy:
    """Serve custom autoscaling policy (class form: built once with ``policy_kwargs``)."""

    def __init__(self, **params: Any) -> None:
        self.params = UtilisationParams.model_validate(params)

    def __call__(self, ctx) -> tuple[int, dict[str, Any]]:
        metrics = ctx.aggregated_metrics or {}
        busy = list((metrics.get(BUSY_METRIC) or {}).values())
        if not busy and ctx.current_num_replicas > 0:
            # No reports yet (replicas starting): hold steady rather than guess.
            return ctx.current_num_replicas, ctx.policy_state
        return decide(
            busy,
            ctx.current_num_replicas,
            (ctx.capacity_adjusted_min_replicas, ctx.capacity_adjusted_max_replicas),
            self.params,
            ctx.policy_state or {},
            ctx.current_time,
        )
