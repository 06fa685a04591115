"""The control loop: look at the request topic, decide (agents/autoscaler/planner.py), start or stop
workers, export metrics. For the predictive policy it also measures the workers' start-up time: from
a scale-up until the group has that many members. Each look is also a record on ``scaling.<model>``
(agents/autoscaler/samples.py) for the status page's forecast chart."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from aiaas.agents.autoscaler.forecast import Forecasting
from aiaas.agents.autoscaler.lag import LagProbe, LagSample, arrival_rate
from aiaas.agents.autoscaler.planner import Planner, PolicyKind
from aiaas.agents.autoscaler.policy import Decision, Observation, Policy
from aiaas.agents.autoscaler.replicas import LocalReplicas
from aiaas.agents.autoscaler.samples import SamplePublisher
from aiaas.schemas.records import ScalingSample
from aiaas.streams import metrics as m
from aiaas.streams.lifecycle import within
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

log = logging.getLogger(__name__)

# --wait: a worker woken by lag before the model is registered waits for it instead of exiting.
DEFAULT_WORKER = (sys.executable, "-m", "aiaas.cli.main", "worker", "inference", "--model", "{model}",
                  "--wait")


def default_group(settings: Settings, model: str) -> str:
    """The inference workers' consumer group for ``model`` (the group whose lag we watch)."""
    return f"{settings.topic_prefix}inference.{model}"


class Autoscaler:
    """Scales ``replicas`` for ``model`` by ``policy``; ``step()`` is one look, ``run()`` loops."""

    def __init__(
        self,
        settings: Settings,
        model: str,
        policy: Policy,
        replicas: LocalReplicas,
        *,
        group: str | None = None,
        interval_s: float = 1.0,
        rate_window_s: float = 5.0,
        kind: PolicyKind = "reactive",
        forecasting: Forecasting | None = None,
        publish: bool = True,
    ) -> None:
        self.settings, self.model, self.policy, self.replicas = settings, model, policy, replicas
        self.topic = Topics(settings).infer_requests(model).name
        self.group = group or default_group(settings, model)
        self.interval_s = interval_s
        self.rate_window_s = rate_window_s
        self.probe = LagProbe(settings, self.topic, self.group)
        self.last: Decision | None = None
        self.last_observation: Observation | None = None
        self._samples: deque[LagSample] = deque()
        self.planner = Planner(policy, kind, forecasting)
        self._rate_now = 0.0  # arrivals/s since the previous look (the forecaster's input)
        self._starting: tuple[int, float] | None = None  # (replicas, since): a scale-up being timed
        self.samples: SamplePublisher | None = SamplePublisher(settings, model) if publish else None
        self._stop = asyncio.Event()
        self.stepped = asyncio.Event()  # set after every step (status pages, tests wait on it)
        self.replica_log: deque[int] = deque(maxlen=10_000)  # replicas after each step

    async def start(self) -> None:
        await self.probe.start()
        if self.samples is not None:
            await self.samples.start()

    async def stop(self) -> None:
        """Stop looking and stop every worker (gracefully: they commit what they finished)."""
        self._stop.set()
        await self.replicas.stop_all()
        await self.probe.stop()
        if self.samples is not None:
            await self.samples.stop()
        m.AUTOSCALER_REPLICAS.labels(model=self.model).set(0)

    async def observe(self) -> Observation:
        cur = await self.probe.sample()
        while self._samples and cur.at - self._samples[0].at > self.rate_window_s:
            self._samples.popleft()
        rate = arrival_rate(self._samples[0] if self._samples else None, cur)
        self._rate_now = arrival_rate(self._samples[-1] if self._samples else None, cur)
        self._samples.append(cur)
        return Observation(lag=cur.lag, arrival_rate=rate, partitions=cur.partitions)

    async def step(self) -> Decision:
        obs = await self.observe()
        now = time.monotonic()
        current = self.replicas.count
        if self.planner.forecaster is not None:
            await self._time_startup(current, now)
        decision = self.planner.plan(obs, current, now, self._rate_now)
        if decision.replicas > max(current, self._starting[0] if self._starting else 0):
            self._starting = (decision.replicas, now)  # time the newest, largest scale-up
        if decision.replicas != current:
            log.info("%s: %d -> %d replicas (%s)", self.model, current, decision.replicas, decision.reason)
            await self.replicas.scale_to(decision.replicas, model=self.model)
        self.last, self.last_observation = decision, obs
        self.replica_log.append(self.replicas.count)
        self.stepped.set()
        m.AUTOSCALER_REPLICAS.labels(model=self.model).set(self.replicas.count)
        m.AUTOSCALER_LAG.labels(model=self.model).set(obs.lag)
        m.AUTOSCALER_ARRIVAL_RATE.labels(model=self.model).set(obs.arrival_rate)
        m.AUTOSCALER_FORECAST.labels(model=self.model).set(self.planner.forecast_rate)
        if self.samples is not None:
            await self.samples.publish(self._sample(obs))
        return decision

    def _sample(self, obs: Observation) -> ScalingSample:
        horizon = self.planner.startup_s + self.planner.forecasting.step_s if self.planner.forecaster else 0.0
        return ScalingSample(model=self.model, policy=self.planner.kind, ts=time.time(),
                             arrival_rate=obs.arrival_rate, forecast_rate=self.planner.forecast_rate,
                             horizon_s=horizon, lag=obs.lag, replicas=self.replicas.count)

    async def _time_startup(self, current: int, now: float) -> None:
        """Once the group has as many members as the last scale-up asked for, that took the
        workers' start-up time: the forecast horizon follows it."""
        if self._starting is None:
            return
        want, since = self._starting
        if current < want:  # scaled down (or a worker died) before it was up: no measurement
            self._starting = None
        elif await self.probe.members() >= want:
            self.planner.measured_startup(now - since)
            log.info("%s: %d workers up in %.1f s (start-up estimate %.1f s)", self.model, want,
                     now - since, self.planner.startup_s)
            self._starting = None

    async def next_step(self) -> None:
        """Wait for the next step of ``run()`` to finish."""
        self.stepped.clear()
        await self.stepped.wait()

    async def run(self) -> None:
        """Step every ``interval_s`` until ``stop()``; a failed look is logged, not fatal."""
        while not self._stop.is_set():
            try:
                await self.step()
            except Exception:  # a broker hiccup must not stop the scaler
                log.exception("autoscaler step failed; retrying")
            await within(self._stop.wait(), self.interval_s)


def local_autoscaler(
    settings: Settings,
    model: str,
    policy: Policy,
    *,
    command: Sequence[str] = DEFAULT_WORKER,
    group: str | None = None,
    log_dir: Path | None = None,
    interval_s: float = 1.0,
    stop_timeout_s: float = 30.0,
    extra_env: dict[str, str] | None = None,
    kind: PolicyKind = "reactive",
    forecasting: Forecasting | None = None,
) -> Autoscaler:
    """An autoscaler whose workers are local processes that inherit ``settings`` (AIAAS_* env)."""
    env = {**settings.to_env(), **(extra_env or {})}
    replicas = LocalReplicas(command, env=env, log_dir=log_dir, stop_timeout_s=stop_timeout_s)
    return Autoscaler(settings, model, policy, replicas, group=group, interval_s=interval_s, kind=kind,
                      forecasting=forecasting)
