"""The predictive autoscaler's forecaster and planner (pure): Holt-Winters learns a daily shape
with a scheduled burst from synthetic series, keeps the season's phase through jittered and
missing looks, and the predictive policy scales before a scheduled burst while never asking for
fewer replicas than the lag does."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from aiaas.agents.autoscaler.forecast import Forecasting, HoltWinters, RateForecaster
from aiaas.agents.autoscaler.planner import Planner
from aiaas.agents.autoscaler.policy import Observation, Policy, recommend

M = 60  # steps per season
BURST = range(30, 33)  # the scheduled burst's steps in each season


def daily(t: int, *, noise: float = 0.0, rng: random.Random | None = None) -> float:
    """A day compressed to M steps: 100 +- 50 over the day, +400 at the scheduled burst."""
    base = 100 + 50 * math.sin(2 * math.pi * (t % M) / M)
    burst = 400 if t % M in BURST else 0
    return base + burst + (rng.gauss(0, noise) if rng else 0.0)


def fitted(seasons: int, *, noise: float = 5.0) -> HoltWinters:
    hw = HoltWinters(M, alpha=0.2, beta=0.01, gamma=0.5)
    rng = random.Random(7)
    for t in range(seasons * M):
        hw.update(daily(t, noise=noise, rng=rng))
    return hw


def test_the_next_season_is_forecast_shape_and_burst() -> None:
    hw = fitted(3)
    errors = [abs(hw.forecast(h) - daily(3 * M + h - 1)) for h in range(1, M + 1)]
    assert sum(errors) / M < 10  # mean absolute error under 10 req/s on a 50..550 req/s series
    for h in (b + 1 for b in BURST):
        assert hw.forecast(h) > 0.9 * daily(3 * M + h - 1)  # the burst, forecast a season ahead
    assert hw.forecast(BURST.start) < 200  # the step before it is no burst


def test_before_one_season_the_forecast_is_the_level_and_no_peak_is_claimed() -> None:
    hw = HoltWinters(M, alpha=0.2, beta=0.0, gamma=0.5)
    fc = RateForecaster(Forecasting(season_s=M, step_s=1.0))
    for t in range(M // 2):
        hw.update(daily(t))
        fc.observe(float(t), daily(t))
    assert not hw.seasonal_ready
    mean = sum(daily(t) for t in range(M // 2)) / (M // 2)
    assert hw.forecast(1) == pytest.approx(mean) and hw.forecast(20) == pytest.approx(mean)
    assert fc.peak(10.0) == 0.0  # the predictive policy acts as the reactive one until a season is seen


def test_an_unscheduled_burst_barely_moves_the_rest_of_the_day() -> None:
    hw = fitted(2, noise=0.0)
    for t in range(2 * M, 3 * M):
        hw.update(daily(t) + (600 if t % M == 10 else 0))  # once, off schedule
    off = [h for h in range(1, M + 1) if h - 1 not in (10, *BURST)]
    assert max(abs(hw.forecast(h) - daily(3 * M + h - 1)) for h in off) < 0.1 * 600
    assert hw.forecast(11) < daily(3 * M + 10) + 600  # remembered only in part (gamma)


def test_a_trend_is_followed() -> None:
    hw = HoltWinters(10, alpha=0.5, beta=0.3, gamma=0.5)
    for t in range(200):
        hw.update(10 + 2.0 * t)
    assert hw.forecast(5) == pytest.approx(10 + 2.0 * 204, rel=0.02)


def test_rates_never_forecast_below_zero() -> None:
    hw = HoltWinters(4, alpha=0.9, beta=0.9, gamma=0.5)
    for y in (100, 0, 0, 0, 50, 0, 0, 0, 0, 0, 0, 0):
        hw.update(y)
    assert all(hw.forecast(h) >= 0 for h in range(1, 20))


def test_jittered_and_missing_looks_keep_the_phase() -> None:
    """Looks every ~0.5 s with jitter, into 1 s steps, and a gap of over a season: the burst is
    still forecast at its phase."""
    cfg = Forecasting(season_s=M, step_s=1.0, startup_s=3.0)
    fc = RateForecaster(cfg)
    rng = random.Random(3)
    at = 0.0
    while at < 2 * M:
        fc.observe(at, daily(int(at)))
        at += 0.5 + rng.uniform(-0.2, 0.2)
    at += M + 7  # the scaler was down for over a season
    while at < 4 * M + 25:  # up to 5 s before the burst at step 30 of the season
        fc.observe(at, daily(int(at)))
        at += 0.5 + rng.uniform(-0.2, 0.2)
    assert fc.peak(6.0) > 400  # the burst is within the next 6 s
    assert fc.peak(2.0) < 200  # but not within the next 2


def test_settings_refuse_a_season_of_under_two_steps() -> None:
    with pytest.raises(ValidationError, match="at least 2 steps"):
        Forecasting(season_s=1.0, step_s=1.0)
    assert Forecasting(season_s=86_400, step_s=1.0).season_steps == 86_400


POLICY = Policy(min_replicas=1, max_replicas=8, lag_threshold=100, rate_per_replica=100,
                cooldown_s=3, idle_s=30)


def replay(planner: Planner, seasons: int, until_phase: int) -> list[int]:
    """Replicas decided each second while the arrivals follow ``daily`` (no lag: served)."""
    current, seen = 1, []
    for t in range(seasons * M + until_phase):
        obs = Observation(lag=0, arrival_rate=daily(t), partitions=8)
        current = planner.plan(obs, current, float(t)).replicas
        seen.append(current)
    return seen


def test_predictive_scales_before_the_scheduled_burst_reactive_only_at_it() -> None:
    forecasting = Forecasting(season_s=M, step_s=1.0, startup_s=4.0)
    predictive = replay(Planner(POLICY, "predictive", forecasting), 2, BURST.start)
    reactive = replay(Planner(POLICY, "reactive", forecasting), 2, BURST.start)
    before = slice(2 * M + BURST.start - 4, 2 * M + BURST.start)  # the start-up time before it
    assert min(predictive[before]) >= 5 and max(reactive[before]) <= 2, (predictive[before], reactive[before])
    assert predictive[2 * M + 10] <= 2  # not all day long: only ahead of the burst


def test_predictive_scales_down_after_the_burst_once_the_horizon_has_passed() -> None:
    forecasting = Forecasting(season_s=M, step_s=1.0, startup_s=4.0)
    after = 2 * M + BURST.stop + 6  # 6 s after the burst: past the 5 s horizon, inside the 10 s window
    policy = POLICY.model_copy(update={"cooldown_s": 10})
    predictive = replay(Planner(policy, "predictive", forecasting), 2, BURST.stop + 7)
    reactive = replay(Planner(policy, "reactive", forecasting), 2, BURST.stop + 7)
    assert predictive[after] <= 2 < reactive[after], (predictive[after], reactive[after])


def test_the_horizon_follows_the_measured_startup() -> None:
    planner = Planner(POLICY, "predictive", Forecasting(season_s=M, step_s=1.0, startup_s=1.0))
    planner.measured_startup(6.0)
    assert planner.startup_s == 6.0
    planner.measured_startup(4.0)
    assert planner.startup_s == 6.0  # the slowest recent start-up, not an average
    seen = replay(planner, 2, BURST.start)
    assert seen[2 * M + BURST.start - 7] >= 5  # 7 s ahead now that start-up takes ~6 s
    for _ in range(5):
        planner.measured_startup(3.0)
    assert planner.startup_s == 3.0  # the slow one has left the window


@given(lag=st.integers(0, 5000), rate=st.floats(0, 2000), forecast=st.floats(0, 5000),
       partitions=st.integers(0, 16))
def test_a_forecast_never_asks_for_fewer_replicas_than_the_lag(lag: int, rate: float, forecast: float,
                                                               partitions: int) -> None:
    obs = Observation(lag=lag, arrival_rate=rate, partitions=partitions)
    assert recommend(POLICY, obs, forecast) >= recommend(POLICY, obs)


def test_autoscale_takes_a_policy_and_refuses_an_unknown_one() -> None:
    from typer.testing import CliRunner

    from aiaas.cli.main import app

    shown = CliRunner().invoke(app, ["autoscale", "--help"])
    assert shown.exit_code == 0 and "--policy" in shown.output and "--season" in shown.output
    bad = CliRunner().invoke(app, ["autoscale", "--model", "m", "--policy", "magic"])
    assert bad.exit_code == 2 and "use reactive or predictive" in bad.output
    season = CliRunner().invoke(app, ["autoscale", "--model", "m", "--policy", "predictive", "--season", "1",
                                      "--interval", "1"])
    assert season.exit_code == 2 and "at least 2 steps" in season.output  # refused before any broker
