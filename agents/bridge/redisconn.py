"""The bridge's Redis client, and what an unreachable Redis means to a caller.

``connect`` builds a client that rides out a Redis restart: a command that meets a dead pooled
connection or a refused connect is retried a few times with jittered exponential backoff (about
half a second in all) on a fresh connection, and idle connections are checked before use. So the
first requests after Redis returns succeed instead of failing once per pooled connection.

Store methods are wrapped in ``guarded``: a Redis that stays unreachable (connection refused,
timeouts, still loading its append-only file, a read-only replica) becomes ``StoreUnavailable``,
a 503 with ``Retry-After``, never a 500 with a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, TryAgainError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aiaas.schemas.errors import StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")
RETRY_AFTER_S = 1.0
MAX_CONNECTIONS = 256
# failures that mean "Redis is not there right now", not a bug in a command
DOWN: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, ReadOnlyError, TryAgainError, OSError,
)


def connect(url: str) -> aioredis.Redis:
    """A client for ``url`` that reconnects with backoff (no I/O until the first command)."""
    return aioredis.from_url(
        url, max_connections=MAX_CONNECTIONS,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.25, base=0.02), retries=3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=5, socket_connect_timeout=2.0, socket_timeout=5.0,
        socket_keepalive=True,
    )


def guarded(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Turn an unreachable Redis inside ``fn`` into ``StoreUnavailable`` (503, Retry-After)."""

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except DOWN as exc:
            raise StoreUnavailable("request state store unreachable; retry later",
                                   retry_after_s=RETRY_AFTER_S, cause=type(exc).__name__) from exc

    return call
