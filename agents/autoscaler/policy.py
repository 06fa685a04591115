"""The scaling decision, as pure functions of what was observed (unit-tested without a broker).

It follows KEDA's Kafka scaler and the HPA so the local autoscaler and infra/k8s behave alike:

* ``desired = ceil(lag / lag_threshold)`` (HPA ``AverageValue``), and enough replicas for the
  arrival rate (``ceil(rate / rate_per_replica)``);
* from zero, lag above ``activation_lag`` (KEDA ``activationLagThreshold``) wakes one replica;
* never more replicas than partitions (an extra consumer would sit idle) nor than ``max``;
* up at once; down only to the highest recommendation of the last ``cooldown_s`` seconds (HPA
  scale-down stabilisation), and to zero only after ``idle_s`` of no lag and no arrivals
  (KEDA ``cooldownPeriod``);
* predictive (``forecast_rate``, from agents/autoscaler/forecast.py): also enough replicas for the
  highest rate forecast over the next worker start-up time, so they are up when the load comes;
  the lag rule still holds, so a forecast never leaves fewer replicas than the lag asks for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field, model_validator


class Policy(BaseModel):
    """Scaling bounds and thresholds (the same numbers as infra/k8s/inference-scaledobject.yaml)."""

    min_replicas: int = Field(default=0, ge=0)
    max_replicas: int = Field(default=4, ge=1)
    lag_threshold: int = Field(default=50, ge=1, description="target lag per replica (records)")
    activation_lag: int = Field(default=0, ge=0, description="lag that wakes the first replica")
    rate_per_replica: float = Field(default=200.0, gt=0, description="requests/s one replica serves")
    cooldown_s: float = Field(default=15.0, ge=0, description="scale-down stabilisation window")
    idle_s: float = Field(default=30.0, ge=0, description="idle time before scaling to zero")

    @model_validator(mode="after")
    def _bounds(self) -> Policy:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas {self.max_replicas}")
        return self


@dataclass(frozen=True, slots=True)
class Observation:
    """One look at the request topic: total lag of the group, arrivals/s, partition count."""

    lag: int
    arrival_rate: float
    partitions: int


@dataclass(frozen=True, slots=True)
class Decision:
    replicas: int
    reason: str


def ceiling(policy: Policy, partitions: int) -> int:
    """Most replicas that can do work: one per partition, at most ``max_replicas``."""
    return max(0, min(policy.max_replicas, partitions))


FORECAST_FLOOR = 0.05  # a forecast under this share of one replica's rate asks for no replica


def by_forecast(policy: Policy, forecast_rate: float) -> int:
    """Replicas for the rate forecast (0 for a forecast too small to be worth a worker)."""
    if forecast_rate < FORECAST_FLOOR * policy.rate_per_replica:
        return 0
    return math.ceil(forecast_rate / policy.rate_per_replica)


def recommend(policy: Policy, obs: Observation, forecast_rate: float = 0.0) -> int:
    """Replicas the current load (and the forecast, if any) asks for, within [min, ceiling] (no
    stabilisation)."""
    top = ceiling(policy, obs.partitions)
    by_lag = math.ceil(obs.lag / policy.lag_threshold) if obs.lag > policy.activation_lag else 0
    by_rate = math.ceil(obs.arrival_rate / policy.rate_per_replica) if obs.arrival_rate > 0 else 0
    want = max(by_lag, by_rate, by_forecast(policy, forecast_rate))
    if want == 0 and busy(policy, obs):
        want = 1
    return max(min(policy.min_replicas, top), min(want, top))


def busy(policy: Policy, obs: Observation) -> bool:
    """Anything to do: lag over the activation threshold, or requests still arriving."""
    return obs.lag > policy.activation_lag or obs.arrival_rate > 0


def decide(
    policy: Policy,
    obs: Observation,
    current: int,
    history: Sequence[tuple[float, int]],
    now: float,
    last_busy: float,
    forecast_rate: float = 0.0,
) -> Decision:
    """Replicas to run now.

    ``history`` holds (time, recommendation) pairs of earlier looks (any order, may include
    ones older than the window); ``last_busy`` is when ``busy()`` was last true;
    ``forecast_rate`` the highest rate forecast over the next start-up time (predictive policy).
    """
    rec = recommend(policy, obs, forecast_rate)
    top = ceiling(policy, obs.partitions)
    if current > top:
        return Decision(top, f"over the ceiling ({top} = min(max, partitions))")
    if rec > current:
        if rec > recommend(policy, obs):
            return Decision(rec, f"scale ahead: forecast {forecast_rate:.1f} req/s (lag {obs.lag})")
        return Decision(rec, f"scale up: lag {obs.lag}, {obs.arrival_rate:.1f} req/s")
    window = [r for t, r in history if now - t <= policy.cooldown_s]
    target = max([rec, *window])
    floor = max(min(policy.min_replicas, top), 1 if now - last_busy < policy.idle_s else 0)
    target = max(target, floor)
    if target < current:
        return Decision(target, "scale to zero: idle" if target == 0 else "scale down: load fell")
    return Decision(current, "steady")
