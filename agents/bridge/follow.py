"""Following an earlier idempotent request: wait for its state or result, or take it over.

A repeat of an ``Idempotency-Key`` waits for the first request's answer. When the bridge running
that request died, its in-flight lease lapses (``aiaas.agents.bridge.idempotency``) and the repeat takes
the key over under a fresh request id and runs the request itself, instead of answering 504 for
the rest of the key's TTL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiaas.agents.bridge import oip
from aiaas.agents.bridge.core import Bridge
from aiaas.agents.bridge.errors import error_body
from aiaas.agents.bridge.state import ORPHAN_GRACE_S, RequestState, StateStore
from aiaas.schemas.errors import AiaasError, Conflict, ErrorCode, StoreUnavailable, Timeout

log = logging.getLogger(__name__)
APPEAR_S = 2.0  # the claiming call writes its state right after the claim


class Follow:
    """Polls one key's request (short, growing pauses) for a repeat of it."""

    def __init__(self, bridge: Bridge, tenant: str, key: str, fp: str, timeout_s: float) -> None:
        self.b = bridge
        self.tenant = tenant
        self.key = key
        self.fp = fp
        self.timeout_s = timeout_s

    async def started(self, earlier: str) -> tuple[str, RequestState | None]:
        """The earlier request's id and state; a state of None: this call took the key over and
        must run the request as the returned id."""
        try:
            async with asyncio.timeout(APPEAR_S + self.b.bs.idempotency_lease_s):
                rid, state, _ = await self._poll(earlier, lambda s: True)
                return rid, state
        except TimeoutError:
            raise Conflict("the earlier request has expired", request_id=earlier) from None

    async def finished(self, earlier: str) -> tuple[str, RequestState | None, bytes | None]:
        """Like ``started``, but waits until the earlier request finished (or was taken over)."""
        budget = self.timeout_s + self.b.bs.idempotency_lease_s + ORPHAN_GRACE_S
        try:
            async with asyncio.timeout(budget):
                return await self._poll(earlier, lambda s: s.status != "pending")
        except TimeoutError:
            raise Timeout("no result in time", id=earlier, timeout_s=budget) from None

    async def _poll(
        self, rid: str, ready: Callable[[RequestState], bool]
    ) -> tuple[str, RequestState | None, bytes | None]:
        delay = 0.005
        while True:
            got = await self.b.states.get(rid)
            if got is not None and ready(got[0]):
                return rid, *got
            if await self.b.idempotency.lapsed(self.tenant, self.key):
                got = await self.b.states.get(rid)  # an owner finishes before it releases
                if got is not None and ready(got[0]):
                    return rid, *got
                mine = uuid.uuid4().hex
                if await self.b.idempotency.take_over(self.tenant, self.key, self.fp, rid, mine):
                    log.warning("request %s lost its bridge; running it again as %s", rid, mine)
                    return mine, None, None
                owner = await self.b.idempotency.claim(self.tenant, self.key, self.fp, mine)
                if owner is None:  # the key was released meanwhile: this call owns it now
                    return mine, None, None
                rid = owner  # another repeat took it over first: follow that one
            await asyncio.sleep(delay)  # polling Redis for another bridge's outcome
            delay = min(2 * delay, 0.25)


def stored_answer(state: RequestState, result: bytes | None, parsed: oip.ParsedRequest) -> oip.HttpBody:
    """The HTTP answer of a finished request, from its stored state."""
    if state.status == "failed" or result is None:
        err = state.public().get("error") or error_body(AiaasError("failed", code=ErrorCode.INTERNAL))
        return oip.HttpBody(json.dumps(err).encode(), state.status_code or 504, {}, "application/json")
    return oip.stored_to_http(state.status_code or 200, result, parsed)


async def finish_retrying(
    states: StateStore, state: RequestState, result: bytes | None, status_code: int,
    error: dict[str, Any] | None,
) -> None:
    """Record an async outcome, riding out a Redis outage until the request's deadline (past it,
    readers and the deadline webhook report a timeout anyway)."""
    delay = 0.1
    while True:
        try:
            await states.finish(state, result, status_code=status_code, error=error)
            return
        except StoreUnavailable:
            if time.time() > state.deadline + ORPHAN_GRACE_S:
                log.warning("outcome of %s not recorded: Redis unreachable past its deadline", state.id)
                return
            await asyncio.sleep(delay)  # backoff while Redis is down
            delay = min(2 * delay, 2.0)
