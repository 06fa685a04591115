"""Webhook dispatcher: signed POSTs of results, retried with backoff and jitter, then dead-lettered.

Deliveries are queued in Redis (a sorted set scored by due time), not in memory, so any bridge
delivers any request's webhook and a bridge killed mid-retry loses nothing: a claim is a lease
(the member's score moves to now + lease), and a claim whose bridge died comes due again after
the lease. After the last failed attempt the webhook goes to the ``webhooks.dlq`` topic and the
request is marked failed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import time
from typing import Any

import httpx
import redis.asyncio as aioredis

from agents.bridge.callbacks import CallbackPolicy
from agents.bridge.keys import KeyStore
from agents.bridge.metrics import Metrics
from agents.bridge.rediskeys import RedisKeys
from agents.bridge.settings import BridgeSettings
from agents.bridge.state import ORPHAN_GRACE_S, RequestState, StateStore
from schemas.errors import AiaasError, ErrorCode
from schemas.records import DeadLetter
from streams.producer import Producer
from streams.webhooks import SIGNATURE_HEADER, sign

log = logging.getLogger(__name__)
_rng = random.Random()  # our own generator: jitter never touches (or depends on) the global one

CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), id) end
return ids
"""


def backoff(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with jitter: a delay in [half, full] of ``base * 2**(attempt-1)``."""
    full: float = min(max_s, base_s * 2 ** max(0, attempt - 1))  # int ** int is Any to mypy
    return full / 2 + _rng.uniform(0, full / 2)


def webhook_body(state: RequestState, result: bytes | None) -> bytes:
    """The JSON POSTed to a callback: request id, status, and the OIP response or error."""
    body: dict[str, Any] = {"id": state.id, "status": state.status, "model_name": state.model}
    if state.version:
        body["model_version"] = state.version
    if result is not None:
        body["response"] = json.loads(result)
    if state.error is not None:
        body["error"] = state.error
    return json.dumps(body, separators=(",", ":")).encode()


class Dispatcher:
    """One per bridge; call ``enqueue`` after a request with a callback finishes."""

    def __init__(
        self, redis: aioredis.Redis, keys: RedisKeys, states: StateStore, store: KeyStore,
        producer: Producer, dlq_topic: str, settings: BridgeSettings, metrics: Metrics,
    ) -> None:
        self.redis = redis
        self.k = keys
        self.states = states
        self.store = store
        self.producer = producer
        self.dlq_topic = dlq_topic
        self.s = settings
        self.metrics = metrics
        self.policy = CallbackPolicy(settings.callback_allowlist)
        self._claim = redis.register_script(CLAIM)
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._http = httpx.AsyncClient(
            timeout=self.s.webhook_timeout_s, follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_connections=self.s.webhook_concurrency),
        )
        self._loop = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Stop claiming; abandon attempts in flight (their leases expire and they are retried)."""
        self._stopping = True
        self._wake.set()
        if self._loop is not None:
            # a flag, not cancel(): on 3.11 a cancel racing asyncio.timeout's expiry can be lost
            done, _ = await asyncio.wait([self._loop], timeout=5.0)
            if not done:
                self._loop.cancel()
                await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def enqueue(self, request_id: str, delay_s: float = 0.0) -> None:
        await self.redis.zadd(self.k.webhooks_due(), {request_id: time.time() + delay_s})
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            free = self.s.webhook_concurrency - len(self._tasks)
            ids = await self._claim_due(free) if free > 0 else []
            for raw in ids:
                task = asyncio.create_task(self._deliver(raw.decode()))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not ids and not self._stopping:
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait([waiter], timeout=self.s.dispatch_poll_s)
                waiter.cancel()

    async def _claim_due(self, limit: int) -> list[bytes]:
        try:
            ids: list[bytes] = await self._claim(
                keys=[self.k.webhooks_due()], args=[self.s.webhook_lease_s, limit]
            )
            return ids
        except (aioredis.RedisError, OSError):
            log.exception("claiming due webhooks failed; retrying")
            return []

    async def _deliver(self, request_id: str) -> None:
        try:
            got = await self.states.get(request_id)
            if got is None:  # expired: nothing left to deliver
                await self.redis.zrem(self.k.webhooks_due(), request_id)
                return
            state, result = got
            if state.status == "pending" and not await self._settle_pending(state):
                return
            if state.webhook != "pending" or not state.callback:
                await self.redis.zrem(self.k.webhooks_due(), request_id)
                return
            await self._attempt(state, result)
        except Exception:  # one bad delivery must not stop the others
            log.exception("webhook delivery of %s failed unexpectedly; the lease will retry it", request_id)

    async def _settle_pending(self, state: RequestState) -> bool:
        """A request still running is due again at its deadline; past it (plus grace) the bridge
        that ran it is gone: record the timeout so its webhook reports it. True: deliver now."""
        if not state.orphaned():
            await self.redis.zadd(self.k.webhooks_due(), {state.id: state.deadline + ORPHAN_GRACE_S})
            return False
        state.status, state.status_code, state.finished = "failed", 504, time.time()
        state.error = {"error": "no reply before the deadline", "code": ErrorCode.TIMEOUT.value}
        state.webhook = "pending" if state.callback else "none"
        await self.states.update(state)
        return True

    async def _attempt(self, state: RequestState, result: bytes | None) -> None:
        assert state.callback is not None and self._http is not None
        body = webhook_body(state, result)
        state.attempts += 1
        await self.states.update(state)  # counted before the POST: a crash mid-attempt still counts
        outcome, permanent = await self._post(state, body)
        self.metrics.webhooks.labels(outcome=outcome.split(" ")[0].rstrip(":")).inc()
        if outcome == "delivered":
            state.webhook = "delivered"
            await self.states.update(state)
            await self.redis.zrem(self.k.webhooks_due(), state.id)
        elif permanent or state.attempts >= self.s.webhook_attempts:
            await self._dead_letter(state, body, outcome)
        else:
            await self.states.update(state)
            delay = backoff(state.attempts, self.s.webhook_backoff_s, self.s.webhook_backoff_max_s)
            await self.redis.zadd(self.k.webhooks_due(), {state.id: time.time() + delay})

    async def _post(self, state: RequestState, body: bytes) -> tuple[str, bool]:
        """One POST; returns (outcome, permanent). Refused URLs are permanent failures."""
        assert state.callback is not None and self._http is not None
        try:
            await self.policy.check(state.callback)
        except AiaasError as exc:
            return f"refused: {exc.reason}", True
        tenant = await self.store.tenant(state.tenant)
        if tenant is None:
            return "tenant deleted", True
        headers = {
            "content-type": "application/json", SIGNATURE_HEADER: sign(tenant.secret, body),
            "x-aiaas-request-id": state.id, "x-aiaas-attempt": str(state.attempts),
        }
        try:
            resp = await self._http.post(state.callback, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"error: {type(exc).__name__}", False
        if 200 <= resp.status_code < 300:
            return "delivered", False
        return f"status {resp.status_code}", False

    async def _dead_letter(self, state: RequestState, body: bytes, last: str) -> None:
        letter = DeadLetter(
            source_topic="webhooks", source_partition=-1, source_offset=-1,
            reason="webhook delivery failed", code=ErrorCode.UNAVAILABLE.value,
            details={"request_id": state.id, "url": state.callback, "attempts": state.attempts,
                     "last": last, "tenant": state.tenant, "model": state.model},
            key_b64=base64.b64encode(state.id.encode()).decode(),
            value_b64=base64.b64encode(body).decode(), ts=time.time(),
        )
        await (await self.producer.send_message(self.dlq_topic, letter, key=state.id))
        state.webhook = "failed"
        state.status = "failed"
        state.error = {"error": f"callback delivery failed after {state.attempts} attempts: {last}",
                       "code": ErrorCode.UNAVAILABLE.value}
        await self.states.update(state)
        await self.redis.zrem(self.k.webhooks_due(), state.id)
        log.warning("webhook for %s dead-lettered after %d attempts (%s)", state.id, state.attempts, last)
