"""Ensure topics exist (idempotently) and wait for the broker to be ready.

Every admin call is retried through ``aiaas.streams.retry`` while the broker answers "not yet" (a broker
just formatted has no group coordinator and no leaders for a moment), up to the settings'
``connect_deadline_s``; each call here is idempotent, so a retry is safe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.protocol.metadata import MetadataRequest

from aiaas.schemas.errors import Unavailable
from aiaas.streams.authz import AUTHORIZATION_CODES, forbidden
from aiaas.streams.lifecycle import Service
from aiaas.streams.metadata import kafka_client_of
from aiaas.streams.retry import close_quietly, retrying, started
from aiaas.streams.settings import Settings
from aiaas.streams.topics import TopicSpec

log = logging.getLogger(__name__)

_TOPIC_EXISTS = 36
_NO_ERROR = 0
T = TypeVar("T")


class Admin(Service):
    """Thin async admin client; created lazily in ``start()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: AIOKafkaAdminClient | None = None
        self._replication: int | None = settings.replication_factor

    async def start(self) -> None:
        kw = self.settings.common_kwargs()
        self._client = await started(lambda: AIOKafkaAdminClient(**kw), self.settings,
                                     "starting an admin client")

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def client(self) -> AIOKafkaAdminClient:
        if self._client is None:
            raise RuntimeError("Admin used before start()")
        return self._client

    async def call(self, what: str, op: Callable[[], Awaitable[T]], **kw: Any) -> T:
        """``await op()`` retried while the broker answers "not yet" (see ``aiaas.streams.retry``)."""
        return await retrying(op, self.settings, what, **kw)

    async def list_topics(self) -> set[str]:
        return set(await self.call("listing topics", self.client.list_topics))

    async def replication_factor(self) -> int:
        """Replicas of the topics aiaas creates: ``AIAAS_REPLICATION_FACTOR`` when set, else the
        broker's own ``default.replication.factor`` (CreateTopics v3, all aiokafka speaks, cannot
        say "the broker's default"), so a cluster gets its replicas, and its ``min.insync.replicas``
        can be met, without configuration."""
        if self._replication is None:
            self._replication = await self.call("reading the broker's default replication factor",
                                                self._broker_default_replication)
        return self._replication

    async def _broker_default_replication(self) -> int:
        brokers = kafka_client_of(self.client).cluster.brokers()
        node = str(min(b.nodeId for b in brokers)) if brokers else "0"
        wanted = ConfigResource(ConfigResourceType.BROKER, node, {"default.replication.factor": None})
        answer = (await self.client.describe_configs([wanted]))[0].to_object()
        entries = [e for r in answer["resources"] for e in r["config_entries"]]
        values = [e["config_value"] for e in entries if e["config_names"] == "default.replication.factor"]
        return int(values[0]) if values and str(values[0]).isdigit() else 1

    async def ensure_topics(self, specs: Iterable[TopicSpec]) -> list[str]:
        """Create the topics that are missing; returns the names created. Safe to call twice."""
        wanted = {s.name: s for s in specs}
        missing = [s for n, s in wanted.items() if n not in await self.list_topics()]
        if not missing:
            return []
        replication = await self.replication_factor()
        new = [
            NewTopic(
                name=s.name,
                num_partitions=s.partitions,
                replication_factor=replication,
                topic_configs=s.config,
            )
            for s in missing
        ]
        resp = await self.call("creating topics", lambda: self.client.create_topics(new))
        created = []
        for name, code, *rest in resp.topic_errors:
            if code == _NO_ERROR:
                created.append(name)
            elif code in AUTHORIZATION_CODES:  # ACLs (docs/operations.md): retrying cannot help
                raise forbidden(self.settings, name, "creating the topic", AUTHORIZATION_CODES[code])
            elif code != _TOPIC_EXISTS:
                raise Unavailable("topic creation failed", topic=name, kafka_error=code, message=str(rest))
        await self._wait_visible([s.name for s in missing])
        return created

    async def delete_topics(self, names: Iterable[str]) -> None:
        existing = await self.list_topics()
        names = [n for n in names if n in existing]
        if names:
            await self.call("deleting topics", lambda: self.client.delete_topics(names))

    async def delete_prefix(self, prefix: str) -> list[str]:
        """Delete every topic named ``prefix*``: tests and benchmarks clean up after themselves, so a
        long-lived dev broker does not pile up thousands of partitions (slow restarts)."""
        if not prefix:
            raise ValueError("refusing to delete every topic: empty prefix")
        names = sorted(n for n in await self.list_topics() if n.startswith(prefix))
        if names:
            await self.call("deleting topics", lambda: self.client.delete_topics(names))
        return names

    async def partitions(self, topic: str) -> int:
        meta = await self.call(f"describing topic {topic}", lambda: self.client.describe_topics([topic]))
        return len(meta[0]["partitions"]) if meta else 0

    async def group(self, group_id: str) -> tuple[str, list[str]]:
        """(state, member ids) of a consumer group as the broker sees it (state ``Dead`` if unknown)."""
        (resp,) = await self.call(f"describing group {group_id}",
                                  lambda: self.client.describe_consumer_groups([group_id]))
        # DescribeGroupsResponse groups: (error, group id, state, protocol type, protocol, members)
        _, _, state, _, _, members = resp.groups[0][:6]
        return str(state), [str(m[0]) for m in members]

    async def wait_group_stable(self, group_id: str, members: int, timeout_s: float = 60.0) -> None:
        """Wait until the group is Stable with at least ``members`` members (rebalance done)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state, ids = await self.group(group_id)
            if state == "Stable" and len(ids) >= members:
                return
            await asyncio.sleep(0.1)
        raise Unavailable("consumer group not stable in time", group=group_id, members=members)

    async def _wait_visible(self, names: list[str], timeout_s: float = 30.0) -> None:
        """Wait until every broker's metadata shows every partition of the new topics with a leader:
        on a cluster a new topic reaches the brokers at different times (0.2 s apart on the local
        3-node cluster), and the caller's next question may go to any of them (a data push saw 0
        partitions and refused the topic)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self.call("describing new topics", lambda: self._visible_everywhere(names)):
                return
            await asyncio.sleep(0.05)
        raise Unavailable("topics not visible in time", topics=names)

    async def _visible_everywhere(self, names: list[str]) -> bool:
        kafka = kafka_client_of(self.client)  # aiokafka's admin client has no per-broker call
        nodes = [b.nodeId for b in kafka.cluster.brokers()]
        answers = ([(await kafka.send(n, MetadataRequest(names))).to_object()["topics"] for n in nodes]
                   if nodes else [await self.client.describe_topics(names)])
        return all(t["error_code"] == _NO_ERROR and t["partitions"] and
                   all(p["leader"] >= 0 for p in t["partitions"]) for meta in answers for t in meta)


async def wait_for_broker(settings: Settings, timeout_s: float | None = None) -> None:
    """Block until the broker answers metadata requests (used by fixtures and agents at start), up
    to ``timeout_s`` (default: the settings' ``connect_deadline_s``)."""
    quick = settings.model_copy(update={"request_timeout_ms": 5000})

    async def probe() -> None:
        client = AIOKafkaAdminClient(**quick.common_kwargs())
        try:
            await client.start()
            await client.list_topics()
        finally:
            await close_quietly(client)

    await retrying(probe, quick, "waiting for the broker", deadline_s=timeout_s, metadata_wait=True)


async def ensure(settings: Settings, specs: Iterable[TopicSpec]) -> list[str]:
    """One-shot helper: connect, ensure topics, disconnect."""
    async with Admin(settings) as admin:
        return await admin.ensure_topics(specs)


async def drop_prefix(settings: Settings) -> list[str]:
    """Delete the topics under ``settings.topic_prefix`` (see ``Admin.delete_prefix``)."""
    async with Admin(settings) as admin:
        return await admin.delete_prefix(settings.topic_prefix)
