"""Request state in Redis: what was asked, where it stands, its result; kept for a TTL.

One hash per request (``meta`` JSON + ``result`` bytes) so any bridge can answer a poll, deliver
a webhook or serve an idempotent repeat. A request still ``pending`` well past its deadline was
orphaned by a bridge that died; readers report it as failed (timeout) instead of waiting forever.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.typing import EncodableT, FieldT

from aiaas.agents.bridge.errors import error_body
from aiaas.agents.bridge.redisconn import guarded
from aiaas.agents.bridge.rediskeys import RedisKeys, blob
from aiaas.schemas.errors import Timeout

Status = Literal["pending", "succeeded", "failed"]
WebhookStatus = Literal["none", "pending", "delivered", "failed"]
ORPHAN_GRACE_S = 5.0


class RequestState(BaseModel):
    id: str
    tenant: str
    model: str
    version: str | None = None
    status: Status = "pending"
    created: float
    deadline: float
    finished: float | None = None
    callback: str | None = None
    webhook: WebhookStatus = "none"
    attempts: int = 0
    status_code: int | None = None
    error: dict[str, Any] | None = None

    def orphaned(self, now: float | None = None) -> bool:
        return self.status == "pending" and (now or time.time()) > self.deadline + ORPHAN_GRACE_S

    def public(self) -> dict[str, Any]:
        """What a poll shows (no internal fields beyond what the caller sent)."""
        body = self.model_dump(exclude={"tenant"}, exclude_none=True)
        if self.orphaned():
            body.update(status="failed", error=error_body(Timeout("no reply before the deadline")))
        return body


class StateStore:
    def __init__(self, redis: aioredis.Redis, keys: RedisKeys, ttl_s: int) -> None:
        self.redis = redis
        self.k = keys
        self.ttl_s = ttl_s

    @guarded
    async def create(self, state: RequestState) -> None:
        key = self.k.request(state.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"meta": state.model_dump_json()})
            pipe.expire(key, self.ttl_s)
            await pipe.execute()

    @guarded
    async def get(self, request_id: str) -> tuple[RequestState, bytes | None] | None:
        meta, result = await self.redis.hmget(self.k.request(request_id), ["meta", "result"])
        if meta is None:
            return None
        return RequestState.model_validate_json(meta), None if result is None else blob(result)

    @guarded
    async def finish(
        self, state: RequestState, result: bytes | None, *, status_code: int,
        error: dict[str, Any] | None = None,
    ) -> None:
        """Record the outcome (``result`` is the JSON response body on success)."""
        state.status = "succeeded" if error is None else "failed"
        state.status_code = status_code
        state.error = error
        state.finished = time.time()
        if state.callback and state.webhook == "none":
            state.webhook = "pending"
        mapping: dict[FieldT, EncodableT] = {"meta": state.model_dump_json()}
        if result is not None:
            mapping["result"] = result
        key = self.k.request(state.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, self.ttl_s)
            await pipe.execute()

    @guarded
    async def update(self, state: RequestState) -> None:
        await self.redis.hset(self.k.request(state.id), "meta", state.model_dump_json())

    async def wait_finished(self, request_id: str, timeout_s: float) -> tuple[RequestState, bytes | None]:
        """Wait for another call's request to finish (idempotent repeats while in flight)."""
        delay = 0.01
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    got = await self.get(request_id)
                    if got is not None and (got[0].status != "pending" or got[0].orphaned()):
                        return got
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.25)
        except TimeoutError:
            raise Timeout("no result in time", id=request_id, timeout_s=timeout_s) from None
