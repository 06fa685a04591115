"""Topic metadata from the broker, asked about one topic at a time.

This is the project's only use of aiokafka private API (pinned by tests/unit/test_metadata_pin.py
and tests/integration/test_metadata.py). aiokafka 0.14 has no public call that asks the broker
about one topic and returns at once: ``fetch_all_metadata`` asks about every topic (slow on a big
cluster), and ``add_topic``/``AIOKafkaProducer.partitions_for`` track the topic for the client's
life and wait up to ``request_timeout_ms`` (40 s) for one that does not exist, which would turn
"unknown model" into a 40 s wait.
"""

from __future__ import annotations

from aiokafka import AIOKafkaClient
from aiokafka.cluster import ClusterMetadata


async def topic_metadata(client: AIOKafkaClient, topic: str) -> ClusterMetadata | None:
    """One metadata request about ``topic`` only, to any broker the client knows; the answer
    (which has no partitions for ``topic`` when it does not exist), or None when no broker
    answered. The client's own metadata and tracked topics are left as they were."""
    md = ClusterMetadata()
    return md if await client._metadata_update(md, [topic]) else None


async def partition_count(client: AIOKafkaClient, topic: str) -> int:
    """Partitions of ``topic`` (0 when it does not exist); asks the broker only on a cache miss,
    and only about this topic (a metadata request for all topics is slow on a big cluster)."""
    parts = client.cluster.partitions_for_topic(topic)
    if parts is None:
        md = await topic_metadata(client, topic)
        if md is None:
            md = await client.fetch_all_metadata()
        parts = md.partitions_for_topic(topic)
    return len(parts or ())


async def topic_exists(client: AIOKafkaClient, topic: str) -> bool:
    return await partition_count(client, topic) > 0
