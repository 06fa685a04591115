"""The autoscaler's decision logic (pure): wake from zero, lag thresholds, partition ceiling,
stabilised scale-down, scale to zero only after idleness."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from aiaas.agents.autoscaler.lag import LagSample, arrival_rate, total_lag
from aiaas.agents.autoscaler.policy import Observation, Policy, busy, decide, recommend

P = Policy(min_replicas=0, max_replicas=4, lag_threshold=10, activation_lag=0, rate_per_replica=100,
           cooldown_s=15, idle_s=30)
IDLE = Observation(lag=0, arrival_rate=0.0, partitions=8)
NEVER = -math.inf


def test_idle_at_zero_stays_at_zero() -> None:
    assert decide(P, IDLE, 0, [], now=100, last_busy=NEVER).replicas == 0


def test_first_lag_wakes_one() -> None:
    d = decide(P, Observation(lag=1, arrival_rate=0.0, partitions=8), 0, [], now=100, last_busy=100)
    assert d.replicas == 1 and "scale up" in d.reason


def test_activation_lag_holds_back_the_first_replica() -> None:
    p = P.model_copy(update={"activation_lag": 5})
    assert decide(p, Observation(4, 0.0, 8), 0, [], now=1, last_busy=NEVER).replicas == 0
    assert decide(p, Observation(6, 0.0, 8), 0, [], now=1, last_busy=1).replicas == 1


def test_lag_per_replica_and_arrival_rate() -> None:
    assert recommend(P, Observation(lag=25, arrival_rate=0.0, partitions=8)) == 3
    assert recommend(P, Observation(lag=0, arrival_rate=250.0, partitions=8)) == 3
    assert recommend(P, Observation(lag=0, arrival_rate=0.5, partitions=8)) == 1  # trickle: keep one


def test_never_more_than_partitions_or_max() -> None:
    assert recommend(P, Observation(lag=10_000, arrival_rate=0.0, partitions=2)) == 2
    assert recommend(P, Observation(lag=10_000, arrival_rate=0.0, partitions=8)) == 4
    d = decide(P, Observation(lag=0, arrival_rate=0.0, partitions=2), 3, [], now=1, last_busy=1)
    assert d.replicas == 2  # partitions shrank below the replicas: trim at once


def test_scale_up_is_immediate_and_down_waits_for_the_window() -> None:
    burst = Observation(lag=40, arrival_rate=0.0, partitions=8)
    assert decide(P, burst, 1, [], now=10, last_busy=10).replicas == 4
    drained = Observation(lag=0, arrival_rate=5.0, partitions=8)
    history = [(10.0, 4), (12.0, 2)]
    assert decide(P, drained, 4, history, now=20, last_busy=20).replicas == 4  # 4 still in window
    d = decide(P, drained, 4, history, now=26, last_busy=26)
    assert d.replicas == 2 and "down" in d.reason  # the 4 left the 15 s window, the 2 did not
    assert decide(P, drained, 2, history, now=40, last_busy=40).replicas == 1


def test_scale_to_zero_only_after_idle_s() -> None:
    assert decide(P, IDLE, 1, [], now=100, last_busy=80).replicas == 1  # idle 20 s < 30 s
    d = decide(P, IDLE, 1, [], now=111, last_busy=80)
    assert d.replicas == 0 and "zero" in d.reason


def test_min_replicas_is_kept_when_idle() -> None:
    p = P.model_copy(update={"min_replicas": 2})
    assert decide(p, IDLE, 0, [], now=1, last_busy=NEVER).replicas == 2
    assert decide(p, IDLE, 3, [], now=1000, last_busy=NEVER).replicas == 2


def test_min_above_max_is_refused() -> None:
    with pytest.raises(ValidationError):
        Policy(min_replicas=3, max_replicas=2)


@given(lag=st.integers(0, 10**6), rate=st.floats(0, 1e5), parts=st.integers(0, 64),
       current=st.integers(0, 64), idle=st.floats(0, 100), mn=st.integers(0, 4), mx=st.integers(4, 16))
def test_bounds_hold_for_any_observation(lag: int, rate: float, parts: int, current: int,
                                         idle: float, mn: int, mx: int) -> None:
    p = Policy(min_replicas=mn, max_replicas=mx, lag_threshold=10, cooldown_s=15, idle_s=30)
    obs = Observation(lag, rate, parts)
    last_busy = 100.0 if busy(p, obs) else 100 - idle  # as the controller keeps it
    n = decide(p, obs, current, [(0.0, current)], now=100, last_busy=last_busy).replicas
    top = min(mx, parts)
    assert min(mn, top) <= n <= top
    if lag > 0 and parts > 0:
        assert n >= 1  # lag always has at least one worker
    if n > current:
        assert n == recommend(p, obs)


def test_lag_counts_uncommitted_partitions_from_their_start() -> None:
    end = {"a": 10, "b": 5, "c": 7}
    assert total_lag(end, {"a": 0, "b": 2, "c": 0}, {"a": 4, "c": -1}) == 6 + 3 + 7  # type: ignore[arg-type]


def test_arrival_rate_between_samples() -> None:
    a, b = LagSample(0, 100, 4, at=10.0), LagSample(0, 150, 4, at=12.0)
    assert arrival_rate(None, a) == 0.0
    assert arrival_rate(a, b) == 25.0
    assert arrival_rate(b, a) == 0.0
