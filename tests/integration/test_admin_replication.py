"""Topics aiaas creates take the broker's own replication factor unless the settings name one (the
3-node tier, tests/cluster, runs entirely on the brokers' default of 3)."""

from __future__ import annotations

from aiaas.streams.admin import Admin
from aiaas.streams.settings import Settings
from aiaas.streams.topics import TopicSpec


async def _replicas(admin: Admin, topic: str) -> set[int]:
    (meta,) = await admin.client.describe_topics([topic])
    return {len(p["replicas"]) for p in meta["partitions"]}


async def test_unset_replication_factor_is_the_brokers_default(settings: Settings) -> None:
    assert settings.model_copy(update={"replication_factor": None}).replication_factor is None
    async with Admin(settings.model_copy(update={"replication_factor": None})) as admin:
        assert await admin.replication_factor() == 1  # this broker's default.replication.factor
        topic = settings.topic("replicated")
        assert await admin.ensure_topics([TopicSpec(name=topic, partitions=2)]) == [topic]
        assert await _replicas(admin, topic) == {1}

