"""Async request slots of one bridge: a total bound and a bound per tenant.

A tenant may hold at most ``per_tenant`` of the bridge's ``total`` slots, so one tenant's backlog
of async requests makes that tenant's next request a 503 (retry later) while other tenants' still
find room. Taking a slot never waits: a full pool is answered at once, not queued without end.
"""

from __future__ import annotations

from collections import Counter


class AsyncSlots:
    def __init__(self, total: int, per_tenant: int) -> None:
        self.total = total
        self.per_tenant = min(per_tenant, total)
        self.held: Counter[str] = Counter()
        self.in_use = 0

    def try_take(self, tenant: str) -> str | None:
        """Take a slot for ``tenant``; when none is free, say which bound refused it."""
        if self.held[tenant] >= self.per_tenant:
            return "tenant"
        if self.in_use >= self.total:
            return "bridge"
        self.held[tenant] += 1
        self.in_use += 1
        return None

    def release(self, tenant: str) -> None:
        self.in_use -= 1
        self.held[tenant] -= 1
        if self.held[tenant] <= 0:
            del self.held[tenant]
