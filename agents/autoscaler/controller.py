"""The control loop: look at the request topic, decide, start or stop workers, export metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from aiaas.agents.autoscaler.lag import LagProbe, LagSample, arrival_rate
from aiaas.agents.autoscaler.policy import Decision, Observation, Policy, busy, decide, recommend
from aiaas.agents.autoscaler.replicas import LocalReplicas
from aiaas.streams import metrics as m
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
        self._history: deque[tuple[float, int]] = deque()
        self._last_busy = -math.inf
        self._stop = asyncio.Event()
        self.stepped = asyncio.Event()  # set after every step (status pages, tests wait on it)
        self.replica_log: deque[int] = deque(maxlen=10_000)  # replicas after each step

    async def start(self) -> None:
        await self.probe.start()

    async def stop(self) -> None:
        """Stop looking and stop every worker (gracefully: they commit what they finished)."""
        self._stop.set()
        await self.replicas.stop_all()
        await self.probe.stop()
        m.AUTOSCALER_REPLICAS.labels(model=self.model).set(0)

    async def observe(self) -> Observation:
        cur = await self.probe.sample()
        while self._samples and cur.at - self._samples[0].at > self.rate_window_s:
            self._samples.popleft()
        rate = arrival_rate(self._samples[0] if self._samples else None, cur)
        self._samples.append(cur)
        return Observation(lag=cur.lag, arrival_rate=rate, partitions=cur.partitions)

    async def step(self) -> Decision:
        obs = await self.observe()
        now = time.monotonic()
        if busy(self.policy, obs):
            self._last_busy = now
        current = self.replicas.count
        decision = decide(self.policy, obs, current, self._history, now, self._last_busy)
        self._history.append((now, recommend(self.policy, obs)))
        while self._history and now - self._history[0][0] > self.policy.cooldown_s:
            self._history.popleft()
        if decision.replicas != current:
            log.info("%s: %d -> %d replicas (%s)", self.model, current, decision.replicas, decision.reason)
            await self.replicas.scale_to(decision.replicas, model=self.model)
        self.last, self.last_observation = decision, obs
        self.replica_log.append(self.replicas.count)
        self.stepped.set()
        m.AUTOSCALER_REPLICAS.labels(model=self.model).set(self.replicas.count)
        m.AUTOSCALER_LAG.labels(model=self.model).set(obs.lag)
        m.AUTOSCALER_ARRIVAL_RATE.labels(model=self.model).set(obs.arrival_rate)
        return decision

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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval_s)


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
) -> Autoscaler:
    """An autoscaler whose workers are local processes that inherit ``settings`` (AIAAS_* env)."""
    env = {**settings.to_env(), **(extra_env or {})}
    replicas = LocalReplicas(command, env=env, log_dir=log_dir, stop_timeout_s=stop_timeout_s)
    return Autoscaler(settings, model, policy, replicas, group=group, interval_s=interval_s)
