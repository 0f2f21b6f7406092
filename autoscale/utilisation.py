"""Replica autoscaling for inference deployments by measured busy time, not request counts.

Serve's default policy scales on ongoing requests per replica. Our requests are micro-batches of
1..N frames, so a request count says little about load: 4 requests of 16 frames are 16x the work of
4 single frames. Each inference replica instead reports the fraction of wall time it spent running
the model (``busy_fraction``, via ``record_autoscaling_stats``); the sum over replicas is the number
of fully-busy replicas the load needs, and we keep replicas at ``target_utilisation``. Serve itself
adds the hysteresis (a decision must hold for ``upscale_delay_s`` / ``downscale_delay_s``, which the
deployments set from ``UtilisationParams``).

``decide`` is a pure function, unit-tested without a cluster; ``UtilisationPolicy`` adapts Serve's
``AutoscalingContext`` to it. Serve config:
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
    upscale_delay_s: float = Field(
        5.0, ge=0, description="Serve adds replicas once the policy has wanted more for this long."
    )
    downscale_delay_s: float = Field(
        60.0, ge=0, description="Serve removes replicas once the policy has wanted fewer for this long."
    )
    max_step_up: int = Field(4, ge=1, description="Most replicas added in one decision.")


def desired_replicas(busy_fractions: list[float], target_utilisation: float, requests: float = 1.0) -> int:
    """Replicas needed so that the measured busy time spreads at ``target_utilisation`` each.

    Zero only when nothing is busy and no request is waiting (scale-to-zero, if the bounds allow).
    """
    busy = sum(min(1.0, max(0.0, b)) for b in busy_fractions)
    if busy <= 0.0 and requests <= 0:
        return 0
    return max(1, math.ceil(busy / target_utilisation - 1e-9))


def decide(
    busy_fractions: list[float],
    requests: float,
    current: int,
    bounds: tuple[int, int],
    params: UtilisationParams,
) -> int:
    """The replica count the measured load needs now, within ``bounds``.

    ``requests``: ongoing plus queued requests, so a deployment at zero replicas starts on demand.
    Hysteresis is not done here: Serve applies ``upscale_delay_s`` / ``downscale_delay_s`` to whatever
    a custom policy returns (it must see the same decision for that long), so this returns the target
    on every call.
    """
    low, high = bounds
    if current == 0:
        return max(low, 1) if requests > 0 else low
    want = min(high, max(low, desired_replicas(busy_fractions, params.target_utilisation, requests)))
    return min(want, current + params.max_step_up)


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
        target = decide(
            busy,
            float(ctx.total_num_requests or 0),
            ctx.current_num_replicas,
            (ctx.capacity_adjusted_min_replicas, ctx.capacity_adjusted_max_replicas),
            self.params,
        )
        return target, ctx.policy_state
