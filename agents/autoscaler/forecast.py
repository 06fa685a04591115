"""Forecast of the arrival rate: additive Holt-Winters (level, trend, one seasonal term).

Traffic to a model has a daily shape and scheduled bursts (a batch job at 09:00, a report at the
hour). A reactive scaler sees them only once lag has built up, and a new worker then needs its
start-up time before it serves; the predictive policy (docs/operations.md, "Autoscaling") scales
for the highest rate forecast over the next start-up time instead. Holt-Winters learns a seasonal
profile from one season of history and keeps adjusting it (``gamma``), so a burst that recurs at
the same phase is forecast from the second season on, while an unscheduled burst moves the level
only a little (``alpha``) and is left to the lag rule.

Rates are averaged into fixed steps of ``step_s`` (observations come at the controller's pace,
which jitters); a season is ``season_s / step_s`` steps. Until one full season has been seen there
is no forecast (``peak`` is 0) and the predictive policy acts as the reactive one: a running mean
of part of a day says nothing about the next seconds.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field, model_validator


class Forecasting(BaseModel):
    """The predictive policy's settings (``aiaas autoscale --policy predictive``)."""

    season_s: float = Field(default=86_400.0, gt=0, description="length of the traffic's cycle (a day)")
    step_s: float = Field(default=1.0, gt=0, description="the forecaster's time step")
    alpha: float = Field(default=0.2, gt=0, le=1, description="level smoothing")
    beta: float = Field(default=0.01, ge=0, le=1, description="trend smoothing")
    gamma: float = Field(default=0.5, ge=0, le=1, description="seasonal smoothing")
    startup_s: float = Field(default=10.0, ge=0, description="worker start-up time until measured")
    max_steps: int = Field(default=200_000, ge=2, description="longest season kept, in steps")

    @model_validator(mode="after")
    def _season_fits(self) -> Forecasting:
        if self.season_steps < 2:
            raise ValueError(f"season_s {self.season_s} must hold at least 2 steps of {self.step_s} s")
        if self.season_steps > self.max_steps:
            raise ValueError(f"season_s / step_s = {self.season_steps} steps, over {self.max_steps}")
        return self

    @property
    def season_steps(self) -> int:
        return round(self.season_s / self.step_s)


class HoltWinters:
    """Additive Holt-Winters on a series of equally spaced values (one ``update`` per step)."""

    def __init__(self, season: int, alpha: float, beta: float, gamma: float) -> None:
        self.m, self.alpha, self.beta, self.gamma = season, alpha, beta, gamma
        self.level = 0.0
        self.trend = 0.0
        self.seasonal = [0.0] * season
        self.t = 0  # values seen
        self._first: list[float] = []  # the first season, to initialise level and seasonal terms

    @property
    def seasonal_ready(self) -> bool:
        return self.t >= self.m

    def update(self, y: float) -> None:
        i = self.t % self.m
        self.t += 1
        if self.t <= self.m:
            self._first.append(y)
            self.level = self.level + (y - self.level) / self.t if self.t > 1 else y  # running mean
            if self.t == self.m:  # one season seen: profile = deviation from its mean
                self.seasonal = [v - self.level for v in self._first]
                self._first = []
            return
        prev_level, s = self.level, self.seasonal[i]
        self.level = self.alpha * (y - s) + (1 - self.alpha) * (prev_level + self.trend)
        self.trend = self.beta * (self.level - prev_level) + (1 - self.beta) * self.trend
        self.seasonal[i] = self.gamma * (y - self.level) + (1 - self.gamma) * s

    def forecast(self, h: int) -> float:
        """The value ``h >= 1`` steps after the last update (never below zero: it is a rate)."""
        if not self.seasonal_ready:
            return max(0.0, self.level)
        s = self.seasonal[(self.t + h - 1) % self.m]
        return max(0.0, self.level + h * self.trend + s)


class RateForecaster:
    """Holt-Winters fed with arrival rates observed at any times, averaged into ``step_s`` steps."""

    def __init__(self, cfg: Forecasting) -> None:
        self.cfg = cfg
        self.model = HoltWinters(cfg.season_steps, cfg.alpha, cfg.beta, cfg.gamma)
        self._t0: float | None = None
        self._step = 0  # index of the step being filled
        self._sum = 0.0
        self._n = 0
        self._last = 0.0

    def observe(self, at: float, rate: float) -> None:
        """Add the arrival rate (records/s) seen at time ``at`` (seconds, any monotonic clock)."""
        if self._t0 is None:
            self._t0 = at
        step = math.floor((at - self._t0) / self.cfg.step_s)
        if step > self._step:
            self._close(step)
        self._sum += rate
        self._n += 1

    def _close(self, upto: int) -> None:
        """Feed the finished step, and the last value for steps no observation fell in."""
        value = self._sum / self._n if self._n else self._last
        self.model.update(value)
        self._last = value
        gap = upto - self._step - 1  # steps with no observation: repeat the last value; past a
        for _ in range(gap if gap <= self.model.m else self.model.m + gap % self.model.m):  # season,
            self.model.update(value)  # only as many as keep the step's phase in the season
        self._step, self._sum, self._n = upto, 0.0, 0

    def peak(self, horizon_s: float) -> float:
        """The highest rate forecast from now to ``horizon_s`` seconds ahead (0 before a season)."""
        if not self.model.seasonal_ready:
            return 0.0
        steps = max(1, math.ceil(horizon_s / self.cfg.step_s) + 1)  # +1: the step being filled
        return max(self.model.forecast(h) for h in range(1, steps + 1))
