"""Shared fixtures: uvloop for every async test, a fresh topic prefix per test, and (for the
integration and fault tiers) the real broker and Redis, started by the project's scripts if down."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Generator, Iterator

import pytest
import redis.asyncio as aioredis
from hypothesis import settings as hypothesis_settings

from aiaas.streams.admin import Admin, drop_prefix, wait_for_broker
from aiaas.streams.settings import Settings
from tests.infra import ensure_infra, use_clone_state
from tests.watchdog import watch, watched_loop

use_clone_state()
# property tests check what is decoded, not how fast: on a loaded 2-core machine (two pytest workers)
# an example can take longer than hypothesis' default 200 ms deadline
hypothesis_settings.register_profile("aiaas", deadline=None)
hypothesis_settings.load_profile("aiaas")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    """Every async test runs on uvloop, like every agent does."""
    return {"uvloop": watched_loop}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """A timeout that holds under uvloop, with the stacks left in .run/hangs/ (tests/watchdog.py)."""
    with watch(item):
        yield


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """Whatever a test (or the CLI it runs in-process) sets in ``os.environ`` or on the aiokafka
    logger ends with it: the CLI shortens AIAAS_CONNECT_DEADLINE_S and silences aiokafka for
    one-shot commands, and later tests must not inherit that."""
    saved = dict(os.environ)
    kafka_log = logging.getLogger("aiokafka")  # the CLI quiets it for one-shot commands
    level, filters = kafka_log.level, list(kafka_log.filters)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)
    kafka_log.setLevel(level)
    kafka_log.filters[:] = filters


@pytest.fixture
def prefix() -> Iterator[str]:
    """A topic prefix no other test uses: every test gets its own topics."""
    yield f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture(scope="session")
def infra() -> None:
    ensure_infra()


@pytest.fixture
async def settings(infra: None, prefix: str) -> AsyncIterator[Settings]:
    s = Settings(topic_prefix=prefix, client_id=f"test-{prefix}")
    await wait_for_broker(s)
    yield s
    await drop_prefix(s)


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
