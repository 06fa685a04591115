"""How much one bridge takes on at once: request body bytes and infer calls, overall and per tenant.

The HTTP edge's memory is bounded by what it holds, not by what callers send. A request reserves
its cost before a byte of its body is read (its ``Content-Length``; a JSON body counts
``json_cost_factor`` per byte, for the decoded copy and the copies made while it is served, a
binary one ``binary_cost_factor``: measured, 3.9 MB JSON calls held ~13 MB each, 4 MB binary ones
~9.4 MB) and
keeps it until its answer is sent; a body without ``Content-Length`` grows its reservation as it
arrives. Infer calls are counted the same way. What does not fit is refused at once, with
``Retry-After``: 429 when the caller's tenant holds its share, 503 when the bridge is full. No
request waits in a queue, so nothing grows without bound while the bridge is busy.

A single request larger than a cap is still let in when it would be alone (it is bounded by
``max_body_bytes`` anyway), so a cap set below one maximal body never locks a caller out.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.schemas.errors import RateLimited, Unavailable

RETRY_AFTER_S = 1.0


class Ticket:
    """One admitted request's share (bytes, and a call slot for infer); release it once answered."""

    __slots__ = ("_admission", "call", "cost", "released", "tenant")

    def __init__(self, admission: Admission, tenant: str, call: bool) -> None:
        self._admission = admission
        self.tenant = tenant
        self.call = call
        self.cost = 0
        self.released = False

    def grow(self, cost: int) -> None:
        """Reserve ``cost`` more (a streamed body's next chunk); refused like ``enter``."""
        self._admission.reserve(self, cost)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._admission.give_back(self)

    def hand_over(self) -> Ticket:
        """The same share under a new owner (an async request's task, which outlives the HTTP
        exchange that admitted it); releasing this one then gives nothing back."""
        heir = Ticket(self._admission, self.tenant, self.call)
        heir.cost, heir.released = self.cost, self.released
        self.released = True
        return heir


class Admission:
    """Counters of what is in flight (no I/O, no waiting: one event loop owns them)."""

    def __init__(self, bs: BridgeSettings) -> None:
        self.max_bytes = bs.max_body_bytes_in_flight
        self.max_tenant_bytes = min(bs.max_body_bytes_per_tenant, self.max_bytes)
        self.max_calls = bs.max_sync_in_flight
        self.max_tenant_calls = min(bs.max_sync_per_tenant, self.max_calls)
        self.json_factor = bs.json_cost_factor
        self.binary_factor = bs.binary_cost_factor
        self.bytes = 0
        self.calls = 0
        self.tenant_bytes: Counter[str] = Counter()
        self.tenant_calls: Counter[str] = Counter()
        self.on_refuse: Callable[[str], None] = lambda reason: None  # Metrics.watch counts them

    def cost(self, length: int, is_json: bool) -> int:
        """What a body of ``length`` bytes costs while served."""
        return math.ceil(length * (self.json_factor if is_json else self.binary_factor))

    def enter(self, tenant: str, cost: int, call: bool) -> Ticket:
        """Admit a request of ``cost`` (an infer call when ``call``) or raise 429/503 at once."""
        if call:
            if self.tenant_calls[tenant] >= self.max_tenant_calls:
                raise self._refuse("tenant_calls", RateLimited(
                    "too many requests of this tenant in flight; retry later", limit=self.max_tenant_calls,
                    retry_after_s=RETRY_AFTER_S))
            if self.calls >= self.max_calls:
                raise self._refuse("bridge_calls", Unavailable(
                    "the bridge is serving as many requests as it may; retry later",
                    limit=self.max_calls, retry_after_s=RETRY_AFTER_S))
        ticket = Ticket(self, tenant, call)
        self.reserve(ticket, cost)
        if call:
            self.calls += 1
            self.tenant_calls[tenant] += 1
        return ticket

    def reserve(self, ticket: Ticket, cost: int) -> None:
        tenant = ticket.tenant
        others = self.tenant_bytes[tenant] - ticket.cost
        if others > 0 and self.tenant_bytes[tenant] + cost > self.max_tenant_bytes:
            raise self._refuse("tenant_bytes", RateLimited(
                "this tenant's request bodies in flight are at their limit; retry later",
                limit_bytes=self.max_tenant_bytes, retry_after_s=RETRY_AFTER_S))
        if self.bytes - ticket.cost > 0 and self.bytes + cost > self.max_bytes:
            raise self._refuse("bridge_bytes", Unavailable(
                "the bridge holds as many request bytes as it may; retry later",
                limit_bytes=self.max_bytes, retry_after_s=RETRY_AFTER_S))
        ticket.cost += cost
        self.bytes += cost
        self.tenant_bytes[tenant] += cost

    def give_back(self, ticket: Ticket) -> None:
        tenant = ticket.tenant
        self.bytes -= ticket.cost
        self.tenant_bytes[tenant] -= ticket.cost
        if self.tenant_bytes[tenant] <= 0:
            del self.tenant_bytes[tenant]
        if ticket.call:
            self.calls -= 1
            self.tenant_calls[tenant] -= 1
            if self.tenant_calls[tenant] <= 0:
                del self.tenant_calls[tenant]

    def _refuse(self, reason: str, exc: Exception) -> Exception:
        self.on_refuse(reason)
        return exc
