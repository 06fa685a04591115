"""Fairness between tenants on the real broker, Redis and an inference worker: one tenant's
backlog of async requests, or its slow callback server, leaves room for another tenant."""

from __future__ import annotations

import time

from aiaas.cli.demo.receiver import Receiver
from aiaas.client.webhooks import SIGNATURE_HEADER, verify_signature
from aiaas.registry.store import Registry
from tests import examples
from tests.hookservers import HeldReceiver
from tests.integration.test_bridge import BODY, MODEL, StackFactory
from tests.integration.test_bridge import stack as stack  # the fixture


async def test_one_tenants_async_backlog_leaves_slots_for_another(stack: StackFactory) -> None:
    async with stack(max_async_inflight=6, max_async_per_tenant=3) as s:
        async with Registry(s.settings) as reg:  # a model no worker serves: its requests stay in flight
            await reg.publish("idle", examples.mlp([4, 8, 3], seed=7), stage="production")
        flood = {"X-API-Key": await s.new_key("flood"), "Prefer": "respond-async"}
        answers = [await s.http.post("/v2/models/idle/infer", json=BODY, headers=flood,
                                     params={"timeout": "5"}) for _ in range(5)]
        assert [r.status_code for r in answers] == [202, 202, 202, 503, 503], [r.text for r in answers]
        assert answers[-1].json()["code"] == "unavailable" and int(answers[-1].headers["retry-after"]) >= 1
        assert answers[-1].json()["limit"] == "tenant"
        t0 = time.monotonic()
        mine = await s.infer(headers={"Prefer": "respond-async"})  # another tenant: room left
        assert mine.status_code == 202, mine.text
        done = await s.poll_done(mine.headers["location"])
        assert done["status"] == "succeeded"
        assert s.bridge.async_slots.held["flood"] == 3  # the flood is still in flight meanwhile
        assert time.monotonic() - t0 < 5.0


async def test_slow_callbacks_of_one_tenant_do_not_delay_anothers_webhook(stack: StackFactory) -> None:
    # without a per-tenant share, the slow tenant's 6 deliveries would hold all 4 slots for 30 s
    async with stack(webhook_concurrency=4, webhook_concurrency_per_tenant=2, webhook_timeout_s=30,
                     webhook_lease_s=60) as s, HeldReceiver() as slow, Receiver() as fast:
        slowpoke = {"X-API-Key": await s.new_key("slowpoke")}
        for _ in range(6):
            r = await s.http.post(f"/v2/models/{MODEL}/infer", json=BODY, headers=slowpoke,
                                  params={"callback": slow.url})
            assert r.status_code == 202, r.text
        await slow.wait_for(2)  # its share of the slots is held open by its receiver
        t0 = time.monotonic()
        mine = await s.infer(params={"callback": fast.url})
        hooks = await fast.wait_for(1, timeout_s=20)
        elapsed = time.monotonic() - t0
        assert slow.arrived == 2 and s.bridge.dispatcher.in_flight["slowpoke"] == 2
        assert elapsed < 5.0, elapsed
        verify_signature(s.secret, hooks[0].headers[SIGNATURE_HEADER.lower()], hooks[0].body, 60)
        assert mine.json()["id"] in hooks[0].body.decode()
        slow.release()
        await slow.wait_for(6)  # the slow tenant's webhooks all go out once its receiver answers
