"""Integration fixtures: the real broker and Redis, started by the project's scripts if down."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from streams.admin import Admin, wait_for_broker
from streams.settings import Settings
from tests.infra import ensure_infra


@pytest.fixture(scope="session")
def infra() -> None:
    ensure_infra()


@pytest.fixture
async def settings(infra: None, prefix: str) -> Settings:
    s = Settings(topic_prefix=prefix, client_id=f"test-{prefix}")
    await wait_for_broker(s)
    return s


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[Admin]:
    async with Admin(settings) as a:
        yield a


@pytest.fixture
async def redis_client(infra: None, settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(settings.redis_url)
    await client.ping()
    yield client
    await client.aclose()
