"""Whether the bridge can reach Kafka and Redis, probed in the background and read as a flag.

Readiness and the infer path must not wait on a broker that is gone: a sync call used to wait its
whole timeout (30 s) before a 504, and an unknown model name a 500 after the registry's 30 s read.
A probe every ``health_probe_s`` asks the broker for one topic's metadata over the bridge
producer's own connections and pings Redis, each bounded by ``health_timeout_s``; the answers are
kept, so ``/v2/health/ready`` and ``require_kafka`` cost nothing per request. While Kafka is
unreachable, infer calls get a 503 with ``Retry-After`` at once and readiness is 503, so a load
balancer sends callers elsewhere; both recover on the first probe that gets through. Plain sync
calls already waiting for a reply when the broker goes away are ended with the same 503 by the
probe that notices (``cut_when_down``), not left to their timeout.

At rest (no request has read the flags for ``REST_AFTER_S``, both reachable) the probe runs every
``REST_PROBE_S`` instead (issue 18 item 5: a probe was ~40% of an idle bridge's CPU); the first
request after that wakes the prober at once, so it answers from the last probe while a fresh one runs,
and a sync call waiting on a broker found gone is still cut by it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from aiokafka.errors import KafkaError

from aiaas.schemas.errors import KafkaUnavailable
from aiaas.streams.lifecycle import Service, cancel, within
from aiaas.streams.metadata import topic_metadata
from aiaas.streams.producer import Producer

log = logging.getLogger(__name__)
REST_AFTER_S = 10.0  # no request for this long: the bridge is at rest
REST_PROBE_S = 5.0  # the probe period at rest (never shorter than ``every_s``)


class Health(Service):
    def __init__(self, producer: Producer, redis: aioredis.Redis, topic: str, every_s: float,
                 timeout_s: float) -> None:
        self.producer = producer
        self.redis = redis
        self.topic = topic  # any topic the bridge owns: its metadata is the cheapest broker question
        self.every_s = every_s
        self.timeout_s = timeout_s
        self.kafka_ok = False
        self.redis_ok = False
        self.kafka_down_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiting: set[asyncio.Task[Any]] = set()  # request tasks in a plain sync call
        self._cut: set[asyncio.Task[Any]] = set()  # ... of which this probe cancelled
        self._last_asked = time.monotonic()
        self._resting = False
        self._asked = asyncio.Event()  # wakes a resting prober

    async def start(self) -> None:
        await self.probe()
        self._task = asyncio.create_task(self._forever(), name="bridge-health")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    @property
    def ok(self) -> bool:
        return self.kafka_ok and self.redis_ok

    def asked(self) -> None:
        """A request reads the flags: probe at full pace again (at once if the prober rests)."""
        self._last_asked = time.monotonic()
        if self._resting:
            self._resting = False
            self._asked.set()

    def require_kafka(self) -> None:
        """Raise KafkaUnavailable (503, Retry-After) when the last probe could not reach the broker."""
        self.asked()
        if not self.kafka_ok:
            raise KafkaUnavailable("kafka is unreachable; retry later",
                                   retry_after_s=max(1.0, self.every_s), down_s=self._down_s())

    async def probe(self) -> None:
        kafka, redis = await asyncio.gather(self._kafka(), self._redis())
        if kafka != self.kafka_ok:
            if kafka:
                if self.kafka_down_since is not None:
                    log.warning("kafka reachable again after %.1f s", self._down_s())
                self.kafka_down_since = None
            else:
                log.warning("kafka unreachable: infer calls get 503 until it answers")
                self.kafka_down_since = time.monotonic()
                self._cut_waiting()
        if redis != self.redis_ok and self._task is not None:
            log.warning("redis %s", "reachable again" if redis else "unreachable")
        self.kafka_ok, self.redis_ok = kafka, redis

    def cut_when_down(self) -> CutWhenDown:
        """Around a plain sync call (nothing stored, nothing answered later): if Kafka becomes
        unreachable meanwhile, the call ends with KafkaUnavailable instead of waiting its timeout."""
        return CutWhenDown(self)

    def _cut_waiting(self) -> None:
        for task in self._waiting:
            if task not in self._cut:
                self._cut.add(task)
                task.cancel()

    def _down_s(self) -> float | None:
        since = self.kafka_down_since
        return None if since is None else round(time.monotonic() - since, 1)

    def _period(self) -> float:
        if not self.ok or time.monotonic() - self._last_asked < REST_AFTER_S:
            return self.every_s
        return max(self.every_s, REST_PROBE_S)

    async def _forever(self) -> None:
        while True:
            period = self._period()
            if period > self.every_s:  # at rest: a request wakes the prober
                self._resting = True
                self._asked.clear()
                await within(self._asked.wait(), period)
                self._resting = False
            else:
                await asyncio.sleep(period)
            try:
                await self.probe()
            except Exception:  # a probe bug must not end the probing
                log.exception("health probe failed")

    async def _kafka(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await topic_metadata(self.producer.raw.client, self.topic) is not None
        except (KafkaError, OSError, TimeoutError, RuntimeError):
            return False

    async def _redis(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout_s):
                return bool(await self.redis.ping())
        except (aioredis.RedisError, OSError, TimeoutError):
            return False


class CutWhenDown:
    """``with health.cut_when_down():`` (a class, not a generator: it runs on every sync call)."""

    __slots__ = ("_health", "_task")

    def __init__(self, health: Health) -> None:
        self._health = health
        self._task: asyncio.Task[Any] | None = None

    def __enter__(self) -> None:
        self._task = asyncio.current_task()
        if self._task is not None:
            self._health._waiting.add(self._task)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        task, health = self._task, self._health
        if task is None:
            return
        health._waiting.discard(task)
        if task not in health._cut:
            return
        health._cut.discard(task)
        task.uncancel()  # our cancel is answered here (or was swallowed inside): not the caller's
        if kind is asyncio.CancelledError and not task.cancelling():
            raise KafkaUnavailable("kafka became unreachable while the call waited; retry later",
                                   retry_after_s=max(1.0, health.every_s)) from None
