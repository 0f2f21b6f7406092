"""What every inference deployment shares: replica and autoscaling arguments, busy-time reporting,
and merging micro-batch requests into one model call.

Requests to our deployments are micro-batches (a group's frames, or a frame's crops), so:
- ``max_ongoing_requests`` must exceed the requests that make one model batch (Serve's default of 5
  caps every batch at 5 requests and collapsed throughput in a measurement);
- ``num_cpus`` is fractional so replicas fit beside decoders on small nodes, ``num_gpus`` on GPU nodes;
- replicas scale on measured model busy time (``autoscale/utilisation.py``) rather than on request
  counts, which say little when requests vary from 1 to N items.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from autoscale.utilisation import BUSY_METRIC, UtilisationParams

T = TypeVar("T")


class ReplicaArgs(BaseModel):
    """Replica resources, batching wait and autoscaling of one inference application."""

    model_config = ConfigDict(extra="forbid")

    batch_wait_timeout_s: float = Field(0.01, ge=0, le=1, description="How long a partial batch waits.")
    num_cpus: float = Field(0.5, gt=0, description="CPUs reserved per replica.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica (fractions share a GPU).")
    min_replicas: int = Field(1, ge=0, description="Fewest replicas (0: scale to zero when idle).")
    max_replicas: int = Field(2, ge=1, description="Most replicas.")
    autoscaling_policy: Literal["utilisation", "requests"] = Field(
        "utilisation",
        description="'utilisation': scale on measured model busy time (autoscale/utilisation.py); "
        "'requests': Serve's default, on ongoing micro-batches per replica.",
    )
    utilisation: UtilisationParams = Field(default_factory=UtilisationParams, description="Policy settings.")
    target_ongoing_requests: float = Field(
        2.0, gt=0, description="Micro-batches in flight per replica ('requests' policy)."
    )
    max_ongoing_requests: int = Field(32, ge=1, description="Must exceed micro-batches per model batch.")

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options``."""
        autoscaling: dict[str, Any] = {
            "min_replicas": self.min_replicas,
            "initial_replicas": max(1, self.min_replicas),
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.utilisation.upscale_delay_s,
            "downscale_delay_s": self.utilisation.downscale_delay_s,
        }
        if self.autoscaling_policy == "utilisation":
            autoscaling["policy"] = {
                "policy_function": "autoscale.utilisation:UtilisationPolicy",
                "policy_kwargs": self.utilisation.model_dump(),
            }
        return {
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            "autoscaling_config": autoscaling,
        }


class BusyTimeReporter:
    """Mixin for deployments: run the model off the event loop, and report the busy fraction."""

    _busy_s: float = 0.0
    _busy_mark: tuple[float, float] | None = None

    async def run_model(self, fn: Callable[..., T], *args: Any) -> T:
        # Off the event loop, so the next batch assembles while this one runs.
        started = time.monotonic()
        try:
            return await asyncio.to_thread(fn, *args)
        finally:
            self._busy_s += time.monotonic() - started

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve calls this periodically: the fraction of wall time spent in the model since last time."""
        now = time.monotonic()
        mark_t, mark_busy = self._busy_mark or (now, self._busy_s)
        self._busy_mark = (now, self._busy_s)
        return {BUSY_METRIC: (self._busy_s - mark_busy) / max(1e-6, now - mark_t)}


def split_by_request(results: Sequence[T], sizes: Sequence[int]) -> list[list[T]]:
    """Results of one merged model call, handed back per request (Serve needs one result each)."""
    if sum(sizes) != len(results):
        raise ValueError(f"{len(results)} results for requests of {sum(sizes)} items")
    out, start = [], 0
    for size in sizes:
        out.append(list(results[start : start + size]))
        start += size
    return out
