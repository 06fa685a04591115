"""One inference call through the bridge: sync, async (poll or webhook), idempotent repeats.

HTTP specifics stay in the routes; this module takes a parsed request and a principal and
returns the HTTP body to send. Sync calls without an ``Idempotency-Key`` touch Redis only for
the rate limit (in the route), so the hot path is: validate, produce, await the reply, answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass

from opentelemetry.trace import SpanKind

from aiaas.agents.bridge import oip
from aiaas.agents.bridge.admission import Ticket
from aiaas.agents.bridge.core import Bridge
from aiaas.agents.bridge.errors import error_body, internal_error
from aiaas.agents.bridge.follow import Follow, finish_retrying, stored_answer
from aiaas.agents.bridge.idempotency import fingerprint
from aiaas.agents.bridge.keys import Principal
from aiaas.agents.bridge.masking import mask_parameters
from aiaas.agents.bridge.state import ORPHAN_GRACE_S, RequestState
from aiaas.client.inference import Reply
from aiaas.schemas.errors import AiaasError, Unavailable
from aiaas.streams import headers as h
from aiaas.streams import tracing

log = logging.getLogger(__name__)
RETRIABLE_STATUS = {429, 503, 504}


@dataclass(slots=True)
class Call:
    """What the route gathered from the HTTP request."""

    who: Principal
    model: str
    version: str | None
    path: str
    body: bytes
    header_length: str | None = None
    callback: str | None = None
    prefer_async: bool = False
    idempotency_key: str | None = None
    timeout_s: float | None = None
    traceparent: str | None = None
    ticket: Ticket | None = None  # the body's share of the bridge (admission); async calls keep it


@dataclass(slots=True)
class Accepted:
    """An async request was accepted: answer 202 with where to poll."""

    request_id: str
    state: RequestState


class InferService:
    def __init__(self, bridge: Bridge) -> None:
        self.b = bridge

    def _timeout(self, call: Call, parsed: oip.ParsedRequest) -> float:
        wanted = parsed.timeout_s or call.timeout_s or self.b.bs.default_timeout_s
        return min(wanted, self.b.bs.max_timeout_s)

    @staticmethod
    def _headers(call: Call) -> dict[str, str]:
        """The tenant (shared by a frame's entries) and, for a traced call, the bridge's span in the
        caller's trace (the request's own: it then travels as an entry of its own, not a row)."""
        hdrs = {h.TENANT: call.who.tenant.name}
        if call.traceparent:
            hdrs[h.TRACEPARENT] = tracing.hop(call.traceparent, "bridge.infer", SpanKind.PRODUCER)
        return hdrs

    async def handle(self, call: Call) -> oip.HttpBody | Accepted:
        parsed = oip.parse_request(call.body, call.header_length)
        callback = call.callback or parsed.callback
        await self.b.model_for(call.who, call.model, call.version)
        mask_parameters(parsed.parameters, self.b.registry.versions.values(), call.model)  # before Kafka
        if callback is not None:
            await self.b.dispatcher.policy.check(callback)
        await self.b.ensure_request_topic(call.model)
        rid = uuid.uuid4().hex
        timeout = self._timeout(call, parsed)
        is_async = callback is not None or call.prefer_async
        if call.idempotency_key is not None:
            fp = fingerprint(f"{call.path}?callback={call.callback or ''}", call.body)
            earlier = await self.b.idempotency.claim(call.who.tenant.name, call.idempotency_key, fp, rid)
            if earlier is not None:
                follow = Follow(self.b, call.who.tenant.name, call.idempotency_key, fp, timeout)
                return await self._repeat(call, parsed, follow, earlier, callback, is_async)
        if is_async:
            return await self._start_async(call, parsed, rid, callback, timeout)
        if call.idempotency_key is None:
            return await self._sync(call, parsed, rid, timeout)
        return await self._sync_stored(call, parsed, rid, timeout)

    async def _repeat(
        self, call: Call, parsed: oip.ParsedRequest, follow: Follow, earlier: str, callback: str | None,
        is_async: bool,
    ) -> oip.HttpBody | Accepted:
        """The same key and body again: the earlier request's answer, without inferring twice; a
        request whose bridge died (its lease lapsed) runs again under the id ``follow`` took."""
        if is_async:
            rid, earlier_state = await follow.started(earlier)
            if earlier_state is not None:
                return Accepted(rid, earlier_state)
            return await self._start_async(call, parsed, rid, callback, follow.timeout_s)
        rid, done, result = await follow.finished(earlier)
        if done is None:
            return await self._sync_stored(call, parsed, rid, follow.timeout_s)
        return stored_answer(done, result, parsed)

    async def _request(self, call: Call, parsed: oip.ParsedRequest, rid: str, timeout_s: float) -> Reply:
        m = self.b.metrics
        m.in_flight.inc()
        t0 = time.perf_counter()
        try:
            return await self.b.client.call(
                call.model, parsed.inputs, timeout=timeout_s, version=call.version,
                headers=self._headers(call), request_id=rid, parameters=parsed.parameters,
                outputs=parsed.outputs)
        finally:
            m.in_flight.dec()
            m.observe_reply(call.model, time.perf_counter() - t0)  # a known model: bounded labels

    async def _sync(self, call: Call, parsed: oip.ParsedRequest, rid: str, timeout_s: float) -> oip.HttpBody:
        with self.b.health.cut_when_down():  # a plain sync call: its wait ends with a 503 if Kafka goes
            reply = await self._request(call, parsed, rid, timeout_s)
        await self.b.audit.infer(call.who, call.model, oip.reply_status(reply), rid)
        return oip.reply_to_http(reply, parsed)

    async def _sync_stored(
        self, call: Call, parsed: oip.ParsedRequest, rid: str, timeout_s: float
    ) -> oip.HttpBody:
        """A sync call with an Idempotency-Key: its outcome is kept for repeats, and its in-flight
        lease is renewed while it runs (a repeat takes over only if this bridge dies)."""
        key = call.idempotency_key or ""
        async with self.b.idempotency.hold(call.who.tenant.name, key, rid):
            state = self._state(call, rid, None, timeout_s)
            await self.b.states.create(state)
            try:
                reply = await self._request(call, parsed, rid, timeout_s)
            except AiaasError as exc:
                await self._failed(call, state, exc)
                raise
            status, body = oip.json_result(reply, parsed.request_id)
            if status in RETRIABLE_STATUS:
                await self.b.idempotency.release(call.who.tenant.name, key, rid)
            await self.b.states.finish(state, body if status == 200 else None, status_code=status,
                                       error=None if status == 200 else json.loads(body))
        await self.b.audit.infer(call.who, call.model, status, rid)
        return oip.reply_to_http(reply, parsed)

    async def _failed(self, call: Call, state: RequestState, exc: AiaasError) -> None:
        if exc.retriable:  # let a retry with the same key run again
            assert call.idempotency_key is not None
            await self.b.idempotency.release(call.who.tenant.name, call.idempotency_key, state.id)
        await self.b.states.finish(state, None, status_code=exc.status_code, error=error_body(exc))

    def _state(self, call: Call, rid: str, callback: str | None, timeout: float) -> RequestState:
        now = time.time()
        return RequestState(id=rid, tenant=call.who.tenant.name, model=call.model, version=call.version,
                            created=now, deadline=now + timeout, callback=callback)

    async def _start_async(
        self, call: Call, parsed: oip.ParsedRequest, rid: str, callback: str | None, timeout_s: float
    ) -> Accepted:
        tenant = call.who.tenant.name
        full = self.b.async_slots.try_take(tenant)
        if full is not None:  # bounded: refuse (retriable) rather than queue without end
            raise Unavailable(f"too many async requests in flight ({full} limit); retry later",
                              retry_after_s=1.0, limit=full)
        state = self._state(call, rid, callback, timeout_s)
        try:
            await self.b.states.create(state)
            if callback is not None:  # a webhook is due even if this bridge dies: at the deadline
                await self.b.dispatcher.enqueue(rid, tenant, delay_s=timeout_s + ORPHAN_GRACE_S)
        except BaseException:
            self.b.async_slots.release(tenant)
            raise
        ticket = call.ticket.hand_over() if call.ticket is not None else None  # held until answered
        self.b.spawn(self._run_async(call, parsed, state, timeout_s, ticket))
        await self.b.audit.record(call.who, "infer_async", call.model, request_id=rid, callback=callback)
        return Accepted(rid, state)

    async def _run_async(
        self, call: Call, parsed: oip.ParsedRequest, state: RequestState, timeout_s: float,
        ticket: Ticket | None,
    ) -> None:
        self.b.metrics.async_pending.inc()
        try:
            async with self._held(call, state.id):
                await self._run_and_record(call, parsed, state, timeout_s)
        finally:
            self.b.metrics.async_pending.dec()
            self.b.async_slots.release(state.tenant)
            if ticket is not None:
                ticket.release()
        if state.callback is not None:
            try:
                await self.b.dispatcher.enqueue(state.id, state.tenant)
            except AiaasError as exc:  # the webhook queued at the start is due at the deadline
                log.warning("webhook of %s waits for its deadline: %s", state.id, exc.reason)

    def _held(self, call: Call, rid: str) -> contextlib.AbstractAsyncContextManager[None]:
        if call.idempotency_key is None:
            return contextlib.nullcontext()
        return self.b.idempotency.hold(call.who.tenant.name, call.idempotency_key, rid)

    async def _run_and_record(
        self, call: Call, parsed: oip.ParsedRequest, state: RequestState, timeout_s: float
    ) -> None:
        try:
            reply = await self._request(call, parsed, state.id, timeout_s)
            status, body = oip.json_result(reply, parsed.request_id)
            await finish_retrying(self.b.states, state, body if status == 200 else None, status,
                                  None if status == 200 else json.loads(body))
        except AiaasError as exc:
            await finish_retrying(self.b.states, state, None, exc.status_code, error_body(exc))
        except Exception as exc:  # record the failure; never lose the request silently
            log.exception("async request %s failed", state.id)
            await finish_retrying(self.b.states, state, None, 500, error_body(internal_error(exc)))


__all__ = ["Accepted", "Call", "InferService"]
