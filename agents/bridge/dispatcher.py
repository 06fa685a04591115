"""Webhook dispatcher: signed POSTs of results, retried with backoff and jitter, then dead-lettered.

Deliveries are queued in Redis (``aiaas.agents.bridge.webhookqueue``: per tenant, scored by due time),
not in memory, so any bridge delivers any request's webhook and a bridge killed mid-retry loses
nothing: a claim is a lease, and a claim whose bridge died comes due again after the lease. A
tenant holds at most ``webhook_concurrency_per_tenant`` of a bridge's ``webhook_concurrency``
delivery slots, so its slow receivers never delay another tenant's webhooks. After the last failed
attempt (or at once when the URL can never be called) the webhook goes to the ``webhooks.dlq``
topic and the request is marked failed. While Redis is unreachable the dispatcher logs one line,
backs off, and logs again when Redis is back.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import Counter

import redis.asyncio as aioredis
from pydantic import ValidationError

from aiaas.agents.bridge.callbacks import CallbackPolicy
from aiaas.agents.bridge.errors import error_body
from aiaas.agents.bridge.keys import KeyStore
from aiaas.agents.bridge.metrics import Metrics
from aiaas.agents.bridge.rediskeys import RedisKeys
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.agents.bridge.state import ORPHAN_GRACE_S, RequestState, StateStore
from aiaas.agents.bridge.webhookpost import Poster, backoff, webhook_body
from aiaas.agents.bridge.webhookqueue import WebhookQueue
from aiaas.schemas.errors import AiaasError, ErrorCode, StoreUnavailable, Timeout, Unavailable
from aiaas.schemas.records import DeadLetter
from aiaas.streams.envelope import Sealer, configured
from aiaas.streams.lifecycle import cancel, cancel_all
from aiaas.streams.producer import Producer

log = logging.getLogger(__name__)
OUTAGE_BACKOFF_MAX_S = 5.0


class Dispatcher:
    """One per bridge; call ``enqueue`` after a request with a callback finishes."""

    def __init__(
        self, redis: aioredis.Redis, keys: RedisKeys, states: StateStore, store: KeyStore,
        producer: Producer, dlq_topic: str, settings: BridgeSettings, metrics: Metrics,
    ) -> None:
        self.queue = WebhookQueue(redis, keys)
        self.states = states
        self.producer = producer
        self.dlq_topic = dlq_topic
        self.s = settings
        self.metrics = metrics
        self.policy = CallbackPolicy(settings.callback_allowlist)
        self.poster = Poster(self.policy, store, settings)
        self.in_flight: Counter[str] = Counter()  # deliveries running here, per tenant
        self._wake = asyncio.Event()
        self._stopping = False
        self._down_since: float | None = None  # Redis unreachable since (for one log line per outage)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self.sealer: Sealer | None = None  # dead-lettered bodies: sealed under the tenant's data key

    async def start(self) -> None:
        self.sealer = configured(opening_only=True)  # reads AIAAS_DATA_KEYS_FILE (docs/security.md)
        await self.poster.start()
        self._loop = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Stop claiming; abandon attempts in flight (their leases expire and they are retried)."""
        self._stopping = True
        self._wake.set()
        if self._loop is not None:
            # a flag, not cancel(): on 3.11 a cancel racing asyncio.timeout's expiry can be lost
            done, _ = await asyncio.wait([self._loop], timeout=5.0)
            if not done:
                await cancel(self._loop, quiet=True)
            self._loop = None
        await cancel_all(list(self._tasks))
        await self.poster.stop()

    async def enqueue(self, request_id: str, tenant: str, delay_s: float = 0.0) -> None:
        await self.queue.put(tenant, request_id, time.time() + delay_s)
        self._wake.set()

    async def _run(self) -> None:
        outage_wait = idle_wait = self.s.dispatch_poll_s
        while not self._stopping:
            free = self.s.webhook_concurrency - len(self._tasks)
            try:
                claimed = await self._claim(free) if free > 0 else []
            except (aioredis.RedisError, OSError) as exc:
                self._unreachable(exc)
                outage_wait = min(2 * outage_wait, OUTAGE_BACKOFF_MAX_S)
                await self._idle(outage_wait)
                continue
            self._reachable()
            outage_wait = self.s.dispatch_poll_s
            for tenant, request_id in claimed:
                self._spawn(tenant, request_id)
            # work claimed, or woken (something enqueued here or a slot freed): poll at full pace
            if claimed or await self._idle(idle_wait):
                idle_wait = self.s.dispatch_poll_s
            else:  # nothing due: poll less often (another bridge's enqueue waits at most the cap)
                idle_wait = min(2 * idle_wait, max(self.s.dispatch_poll_s, self.s.dispatch_idle_max_s))

    async def _claim(self, free: int) -> list[tuple[str, str]]:
        return await self.queue.claim(free, self.s.webhook_concurrency_per_tenant,
                                      self.s.webhook_lease_s, self.in_flight)

    async def _idle(self, wait_s: float) -> bool:
        """Wait ``wait_s`` or until woken; True when woken."""
        if self._stopping:
            return True
        self._wake.clear()
        waiter = asyncio.ensure_future(self._wake.wait())
        done, _ = await asyncio.wait([waiter], timeout=wait_s)
        waiter.cancel()
        return bool(done)

    def _unreachable(self, exc: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("webhook queue: Redis unreachable (%s: %s); retrying with backoff",
                        type(exc).__name__, exc)

    def _reachable(self) -> None:
        if self._down_since is not None:
            log.warning("webhook queue: Redis reachable again after %.1f s",
                        time.monotonic() - self._down_since)
            self._down_since = None

    def _spawn(self, tenant: str, request_id: str) -> None:
        self.in_flight[tenant] += 1
        task = asyncio.create_task(self._deliver(tenant, request_id))
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self.in_flight[tenant] -= 1
            if self.in_flight[tenant] <= 0:
                del self.in_flight[tenant]
            self._wake.set()  # a slot is free: claim again without waiting for the poll

        task.add_done_callback(done)

    async def _deliver(self, tenant: str, request_id: str) -> None:
        try:
            try:
                got = await self.states.get(request_id)
            except ValidationError as exc:  # a state no bridge can read: never deliverable
                await self._unreadable(tenant, request_id, exc)
                return
            if got is None:  # expired: nothing left to deliver
                await self.queue.remove(tenant, request_id)
                return
            state, result = got
            if state.status == "pending" and not await self._settle_pending(state):
                return
            if state.webhook != "pending" or not state.callback:
                await self.queue.remove(tenant, request_id)
                return
            await self._attempt(state, result)
        except (aioredis.RedisError, OSError, StoreUnavailable) as exc:  # an outage: the lease retries it
            self._unreachable(exc)
        except AiaasError as exc:  # e.g. the dead-letter topic unreachable: the lease retries it
            log.warning("webhook delivery of %s failed (%s); the lease will retry it", request_id, exc.reason)
        except Exception:  # one bad delivery must not stop the others
            log.exception("webhook delivery of %s failed unexpectedly; the lease will retry it", request_id)

    async def _settle_pending(self, state: RequestState) -> bool:
        """A request still running is due again at its deadline; past it (plus grace) the bridge
        that ran it is gone: record the timeout so its webhook reports it. True: deliver now."""
        if not state.orphaned():
            await self.queue.put(state.tenant, state.id, state.deadline + ORPHAN_GRACE_S)
            return False
        state.status, state.status_code, state.finished = "failed", 504, time.time()
        state.error = error_body(Timeout("no reply before the deadline"))
        state.webhook = "pending" if state.callback else "none"
        await self.states.update(state)
        return True

    async def _attempt(self, state: RequestState, result: bytes | None) -> None:
        assert state.callback is not None
        try:
            body = webhook_body(state, result)
        except ValueError:  # a stored result that is not JSON: no attempt can ever send it
            await self._dead_letter(state, result or b"", "unreadable stored result")
            return
        if state.attempts >= self.s.webhook_attempts:  # earlier attempts crashed before an outcome
            await self._dead_letter(state, body, "attempts exhausted")
            return
        state.attempts += 1
        await self.states.update(state)  # counted before the POST: a crash mid-attempt still counts
        outcome, permanent = await self.poster.post(state, body)
        self.metrics.webhooks.labels(outcome=outcome.split(" ")[0].rstrip(":")).inc()
        if outcome == "delivered":
            state.webhook = "delivered"
            await self.states.update(state)
            await self.queue.remove(state.tenant, state.id)
        elif permanent or state.attempts >= self.s.webhook_attempts:
            await self._dead_letter(state, body, outcome)
        else:
            await self.states.update(state)
            delay = backoff(state.attempts, self.s.webhook_backoff_s, self.s.webhook_backoff_max_s)
            await self.queue.put(state.tenant, state.id, time.time() + delay)

    async def _unreadable(self, tenant: str, request_id: str, exc: ValidationError) -> None:
        last = f"unreadable request state: {exc.error_count()} errors"
        await self._send_letter(request_id, b"", {"request_id": request_id, "tenant": tenant, "last": last})
        await self.queue.remove(tenant, request_id)
        log.error("webhook for %s dead-lettered: its request state is unreadable", request_id)

    async def _dead_letter(self, state: RequestState, body: bytes, last: str) -> None:
        body, sealed = self._sealed(body, state.tenant)
        await self._send_letter(state.id, body, {
            "request_id": state.id, "url": state.callback, "attempts": state.attempts, "last": last,
            "tenant": state.tenant, "model": state.model, **sealed})
        state.webhook = "failed"
        state.status = "failed"
        why = f"callback delivery failed after {state.attempts} attempts: {last}"
        state.error = error_body(Unavailable(why))
        await self.states.update(state)
        await self.queue.remove(state.tenant, state.id)
        log.warning("webhook for %s dead-lettered after %d attempts (%s)", state.id, state.attempts, last)

    def _sealed(self, body: bytes, tenant: str) -> tuple[bytes, dict[str, object]]:
        """A webhook body (the reply) sealed under its tenant's data key when it has one, and the
        key id for the letter's details."""
        data_key = self.sealer.key_for(tenant) if self.sealer is not None else None
        if self.sealer is None or data_key is None:
            return body, {}
        return self.sealer.seal(body, data_key), {"data_key": data_key}

    async def _send_letter(self, request_id: str, body: bytes, details: dict[str, object]) -> None:
        letter = DeadLetter(
            source_topic="webhooks", source_partition=-1, source_offset=-1,
            reason="webhook delivery failed", code=ErrorCode.UNAVAILABLE.value, details=details,
            key_b64=base64.b64encode(request_id.encode()).decode(),
            value_b64=base64.b64encode(body).decode(), ts=time.time(),
        )
        await (await self.producer.send_message(self.dlq_topic, letter, key=request_id))


__all__ = ["Dispatcher", "backoff", "webhook_body"]
