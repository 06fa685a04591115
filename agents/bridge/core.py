"""The bridge's long-lived parts: Redis, the Kafka inference client, the registry, the dispatcher.

Created without I/O; ``start()`` connects everything, ``stop()`` drains and closes. The HTTP app
keeps one ``Bridge`` in ``app.state`` and every route uses it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from aiokafka.errors import KafkaError

from aiaas.agents.bridge import redisconn
from aiaas.agents.bridge.admission import Admission
from aiaas.agents.bridge.audit import AuditLog
from aiaas.agents.bridge.auth import Authenticator, check_bind
from aiaas.agents.bridge.deadlines import Deadlines
from aiaas.agents.bridge.dispatcher import Dispatcher
from aiaas.agents.bridge.health import Health
from aiaas.agents.bridge.idempotency import Idempotency
from aiaas.agents.bridge.jobs import JobsView
from aiaas.agents.bridge.keys import KeyStore, Principal
from aiaas.agents.bridge.metrics import Metrics
from aiaas.agents.bridge.ratelimit import RateLimiter
from aiaas.agents.bridge.rediskeys import RedisKeys
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.agents.bridge.slots import AsyncSlots
from aiaas.agents.bridge.state import StateStore
from aiaas.client.inference import InferenceClient
from aiaas.registry.store import Registry
from aiaas.schemas.errors import NotFound, Unavailable
from aiaas.schemas.registry import ModelVersion
from aiaas.streams.admin import Admin
from aiaas.streams.lifecycle import Service, cancel_all
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

log = logging.getLogger(__name__)
T = TypeVar("T")


class Bridge(Service):
    def __init__(self, settings: Settings, bridge_settings: BridgeSettings) -> None:
        self.settings = settings
        self.bs = bridge_settings
        self.topics = Topics(settings)
        self.rk = RedisKeys(settings)
        self.metrics = Metrics()
        self.redis: aioredis.Redis = redisconn.connect(settings.redis_url)  # retries, health checks
        self.keys = KeyStore(self.redis, self.rk)
        self.auth = Authenticator(self.keys, bridge_settings)
        self.limiter = RateLimiter(self.redis, self.rk, bridge_settings)
        self.states = StateStore(self.redis, self.rk, bridge_settings.result_ttl_s)
        self.idempotency = Idempotency(self.redis, self.rk, bridge_settings.idempotency_ttl_s,
                                       bridge_settings.idempotency_lease_s)
        self.producer = Producer(settings)
        self.admission = Admission(bridge_settings)
        self.deadlines = Deadlines()  # request body deadlines, one sweeper for all
        self.metrics.watch(self.admission)
        self.health = Health(self.producer, self.redis, self.topics.audit().name,
                             bridge_settings.health_probe_s, bridge_settings.health_timeout_s)
        self.admin = Admin(settings)
        self.client = InferenceClient(
            settings, client_id=bridge_settings.reply_client(), timeout_s=bridge_settings.default_timeout_s,
            pack_linger_ms=bridge_settings.pack_linger_ms,
        )
        self.registry = Registry(settings)
        self.dispatcher = Dispatcher(
            self.redis, self.rk, self.states, self.keys, self.producer,
            self.topics.dlq("webhooks").name, bridge_settings, self.metrics,
        )
        self.jobs = JobsView(settings, self.producer)
        self.audit = AuditLog(self.producer, self.topics.audit().name, each=bridge_settings.audit_each_infer)
        self.async_slots = AsyncSlots(bridge_settings.max_async_inflight,
                                      bridge_settings.max_async_per_tenant)
        self.tasks: set[asyncio.Task[Any]] = set()
        self._request_topics: set[str] = set()
        self.known_models: set[str] = set()
        self.started = False

    async def start(self) -> None:
        check_bind(self.bs)
        await self.redis.ping()
        await self.admin.start()
        # independent clients: connect them side by side (start-up is mostly broker round trips)
        await asyncio.gather(
            self.admin.ensure_topics([self.topics.audit(), self.topics.dlq("webhooks"), self.topics.jobs()]),
            self.producer.start(), self.registry.start(), self.client.start(),
        )
        await self.dispatcher.start()
        await self.audit.start()
        await self.health.start()
        await self.deadlines.start()
        self.started = True
        log.info("bridge %s ready (reply topic %s)", self.bs.instance, self.client.reply_topic)

    async def stop(self, drain_s: float = 5.0) -> None:
        self.started = False
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=drain_s)
        await cancel_all(list(self.tasks))
        for part in (self.deadlines, self.health, self.dispatcher, self.jobs, self.client, self.registry,
                     self.audit, self.producer, self.admin):
            try:
                await part.stop()
            except Exception:  # keep closing the rest
                log.exception("stopping %s failed", type(part).__name__)
        await self.redis.aclose()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run background work owned by the bridge (drained on stop)."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ------------------------------------------------------------------ models

    async def model_for(self, who: Principal, model: str, version: str | None = None) -> ModelVersion:
        """The registered version a caller may use; 404 for unknown names and other tenants' models."""
        number = _version_number(model, version)
        try:
            mv = self.registry.pick(model, number)
        except NotFound:
            self.health.require_kafka()  # a name not seen yet: ask the broker only when it answers
            await self._bounded(self.registry.refresh(), "registry read")
            mv = self.registry.pick(model, number)
        if not visible(mv, who):
            raise NotFound("unknown model", model=model)
        self.known_models.add(model)
        return mv

    def visible_models(self, who: Principal) -> list[ModelVersion]:
        return [mv for _, mv in sorted(self.registry.versions.items()) if visible(mv, who)]

    async def ensure_request_topic(self, model: str) -> None:
        """Requests for a registered model queue even while no worker runs (scale from zero)."""
        if model in self._request_topics:
            return
        await self._bounded(self.admin.ensure_topics([self.topics.infer_requests(model)]), "topic creation")
        self._request_topics.add(model)

    async def _bounded(self, call: Awaitable[T], what: str) -> T:
        """A Kafka call on the request path, bounded by ``kafka_call_timeout_s``: a broker that stops
        answering is a 503 (retry later) in seconds, not a 500 after aiokafka's 30 s timeout."""
        try:
            async with asyncio.timeout(self.bs.kafka_call_timeout_s):
                return await call
        except (TimeoutError, KafkaError) as exc:
            raise Unavailable(f"kafka did not answer ({what}); retry later", retry_after_s=1.0,
                              cause=type(exc).__name__) from None


def visible(mv: ModelVersion, who: Principal) -> bool:
    """Models without a tenant are shared; a tenant's own models are visible to it alone."""
    return mv.tenant is None or mv.tenant == who.tenant.name


def _version_number(model: str, version: str | None) -> int | None:
    if version is None:
        return None
    if not (version.isascii() and version.isdigit()) or len(version) > 9:
        raise NotFound("unknown model version", model=model, version=version)
    return int(version)
