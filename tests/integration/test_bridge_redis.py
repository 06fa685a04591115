"""The bridge and a Redis that restarts or goes away (a Redis of the test's own, never the shared
one): keys and webhook secrets survive a restart (append-only file), requests right after it
succeed (no 500 per pooled connection), and while Redis is down infer answers 503 with
Retry-After and the dispatcher logs one line per outage instead of a traceback per poll."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest

from aiaas.agents.bridge.app import create_app
from aiaas.agents.bridge.core import Bridge
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.registry.store import Registry
from aiaas.streams.settings import Settings
from tests.integration.test_bridge import BODY, MODEL, ONNX, serve
from tests.ownredis import OwnRedis
from tests.workers import running_worker

BURST = 32


@pytest.fixture
async def own_redis() -> AsyncIterator[OwnRedis]:
    redis = OwnRedis()
    await redis.start()
    try:
        yield redis
    finally:
        await redis.remove()


@dataclass
class Live:
    bridge: Bridge
    http: httpx.AsyncClient
    key: str

    async def infer(self) -> httpx.Response:
        return await self.http.post(f"/v2/models/{MODEL}/infer", json=BODY, headers={"X-API-Key": self.key})

    async def burst(self) -> list[int]:
        """BURST concurrent calls (so the Redis pool holds many connections)."""
        return sorted(r.status_code for r in await asyncio.gather(*(self.infer() for _ in range(BURST))))


async def eventually(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait until ``check()`` holds (polling a condition, not timing)."""
    async with asyncio.timeout(timeout_s):
        while True:
            if check():
                return
            await asyncio.sleep(0.05)


@asynccontextmanager
async def live_bridge(settings: Settings, redis: OwnRedis) -> AsyncIterator[Live]:
    own = settings.model_copy(update={"redis_url": redis.url})
    async with Registry(own) as reg:
        await reg.publish(MODEL, ONNX, stage="production")
    bs = BridgeSettings(instance=uuid.uuid4().hex[:8], auth_cache_s=0.0, dispatch_poll_s=0.05)
    app = create_app(own, bs)
    bridge: Bridge = app.state.bridge
    async with running_worker(own, model=MODEL), serve(app) as url, \
            httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as http:
        key, _, _ = await bridge.keys.create("acme")
        yield Live(bridge, http, key)


async def test_keys_and_secrets_survive_a_redis_restart_and_no_request_fails_after_it(
    settings: Settings, own_redis: OwnRedis
) -> None:
    async with live_bridge(settings, own_redis) as live:
        before = await live.bridge.keys.tenant("acme")
        assert await live.burst() == [200] * BURST
        await own_redis.restart()
        after = await live.bridge.keys.tenant("acme")  # read back from the append-only file
        assert before is not None and after is not None and after.secret == before.secret
        assert await live.burst() == [200] * BURST  # the key still authenticates; no 500 per connection
        assert await live.burst() == [200] * BURST


async def test_redis_outage_is_503_with_retry_after_and_one_log_line(
    settings: Settings, own_redis: OwnRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiaas.agents.bridge")
    async with live_bridge(settings, own_redis) as live:
        assert await live.burst() == [200] * BURST
        await own_redis.stop()
        down = await live.infer()
        assert down.status_code == 503, down.text
        assert down.json()["code"] == "unavailable" and int(down.headers["retry-after"]) >= 1
        poll = await live.http.get("/v2/requests/abc", headers={"X-API-Key": live.key})
        assert poll.status_code == 503, poll.text

        def dispatcher_lines() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.name == "aiaas.agents.bridge.dispatcher"]

        await eventually(lambda: bool(dispatcher_lines()))  # the dispatcher noticed the outage
        await asyncio.sleep(1.5)  # an observation window: the old loop logged a traceback per 200 ms
        lines = dispatcher_lines()
        assert len(lines) == 1 and "unreachable" in lines[0].getMessage() and lines[0].exc_info is None

        await own_redis.start()
        async with asyncio.timeout(20):
            while True:  # Redis is loading its file: wait until it takes requests again
                if (await live.infer()).status_code == 200:
                    break
                await asyncio.sleep(0.1)
        assert await live.burst() == [200] * BURST
        await eventually(lambda: len(dispatcher_lines()) >= 2)
        assert "reachable again" in dispatcher_lines()[1].getMessage()
