"""One scaling decision per look, with the memory it needs: the recent recommendations (scale-down
window), when the load was last busy (scale to zero) and, for the predictive policy, the arrival
rate forecaster and the measured worker start-up time. Pure (no broker, no processes): the
controller feeds it what it observed, and so does the autoscale benchmark's replay.

Once the forecaster has seen a season, the predictive policy's scale-down window shrinks from
``cooldown_s`` to the forecast horizon (start-up time + one step): the window exists so a worker
is not stopped just before it is needed again, and a worker needed within the horizon is already
kept by the forecast; holding it longer only spends replica-seconds.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

from aiaas.agents.autoscaler.forecast import Forecasting, RateForecaster
from aiaas.agents.autoscaler.policy import Decision, Observation, Policy, busy, decide, recommend

PolicyKind = Literal["reactive", "predictive"]
STARTUPS_KEPT = 5  # the horizon follows the slowest of the last few start-ups


class Planner:
    """``plan()`` turns one observation into a decision under ``policy`` (reactive or predictive)."""

    def __init__(self, policy: Policy, kind: PolicyKind = "reactive",
                 forecasting: Forecasting | None = None) -> None:
        self.policy, self.kind = policy, kind
        self.forecasting = forecasting or Forecasting()
        self.forecaster = RateForecaster(self.forecasting) if kind == "predictive" else None
        self.startup_s = self.forecasting.startup_s
        self.startups_measured = 0
        self._startups: deque[float] = deque(maxlen=STARTUPS_KEPT)
        self.forecast_rate = 0.0  # the last peak forecast (0 for the reactive policy)
        self._history: deque[tuple[float, int]] = deque()
        self._last_busy = -math.inf

    def measured_startup(self, seconds: float) -> None:
        """A worker took ``seconds`` from start to serving. The horizon is the slowest of the last
        ``STARTUPS_KEPT``: a worker up early costs a few replica-seconds, one up late misses the
        burst (an average of a quick start on an idle machine and a slow one under load did)."""
        self.startups_measured += 1
        self._startups.append(seconds)
        self.startup_s = max(self._startups)

    def plan(self, obs: Observation, current: int, now: float, rate_now: float | None = None) -> Decision:
        """The decision for ``obs`` at ``now``; ``rate_now`` is the arrival rate since the previous
        look (the forecaster's input; default the observation's smoothed rate)."""
        policy = self.policy
        if self.forecaster is not None:
            horizon = self.startup_s + self.forecasting.step_s
            self.forecaster.observe(now, obs.arrival_rate if rate_now is None else rate_now)
            self.forecast_rate = self.forecaster.peak(horizon)
            if self.forecaster.model.seasonal_ready:  # the forecast covers what a worker stopped now
                policy = policy.model_copy(  # could not be back for: hold only that long
                    update={"cooldown_s": min(policy.cooldown_s, horizon)})
        if busy(policy, obs):
            self._last_busy = now
        decision = decide(policy, obs, current, self._history, now, self._last_busy,
                          forecast_rate=self.forecast_rate)
        self._history.append((now, recommend(policy, obs, self.forecast_rate)))
        while self._history and now - self._history[0][0] > self.policy.cooldown_s:
            self._history.popleft()
        return decision
