"""Topic metadata from the broker, asked about one topic at a time.

aiokafka 0.14 has no public call that asks about one topic and returns at once:
``fetch_all_metadata`` asks about every topic (slow on a big cluster), and ``add_topic`` or
``AIOKafkaProducer.partitions_for`` track the topic for the client's life and wait up to
``request_timeout_ms`` (40 s) for one that does not exist, which would turn "unknown model" into a
40 s wait. So ``topic_metadata`` sends the metadata request itself with the client's public
``send``. The project's one use of aiokafka private API is ``kafka_client_of`` below (pinned by
tests/unit/test_metadata_pin.py; tests/integration/test_metadata.py checks both on the broker).
"""

from __future__ import annotations

import logging
import random

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.cluster import ClusterMetadata
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.protocol.offset import OffsetRequest
from aiokafka.structs import TopicPartition

READ_COMMITTED = 1  # ListOffsets isolation level: the last stable offset, what read_committed readers reach
LATEST = -1  # ListOffsets timestamp meaning "the end of the partition"


def kafka_client_of(admin: AIOKafkaAdminClient) -> AIOKafkaClient:
    """The AIOKafkaClient inside an admin client (its private ``_client``): aiokafka's admin client
    has no public way to send a request to one chosen broker, which ``aiaas.streams.admin`` needs to see
    that every broker knows a new topic."""
    return admin._client


async def topic_metadata(client: AIOKafkaClient, topic: str) -> ClusterMetadata | None:
    """One metadata request about ``topic`` only, to a broker the client knows (the next one when
    it does not answer); the answer (no partitions for ``topic`` when it does not exist), or None
    when no broker answered. The client's own metadata and tracked topics are left as they were."""
    nodes = [b.nodeId for b in client.cluster.brokers()]
    random.shuffle(nodes)
    for node in nodes:
        try:
            answer = await client.send(node, MetadataRequest([topic]))
        except (KafkaError, TimeoutError):
            continue
        if not answer.brokers:  # a topic still being created may be answered without brokers
            return None
        return _quietly_parsed(answer)
    return None


def _quietly_parsed(answer: object) -> ClusterMetadata:
    """The answer as metadata, without aiokafka's error log line for a topic that does not exist:
    here that is an expected answer (an unknown model, a missing reply topic) the caller reports
    itself, and the line reached a client user's terminal beside aiaas' own error."""
    cluster_log = logging.getLogger("aiokafka.cluster")
    was = cluster_log.disabled
    cluster_log.disabled = True  # synchronous: no other coroutine logs meanwhile
    try:
        md = ClusterMetadata()
        md.update_metadata(answer)
        return md
    finally:
        cluster_log.disabled = was


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


async def end_offset(client: AIOKafkaClient, tp: TopicPartition) -> int | None:
    """``tp``'s end offset (read_committed) asked of its leader over ``client``'s connections, or None
    when the leader or the answer is unknown (ask the reader's consumer then).

    Why not ``consumer.end_offsets``: Kafka answers a connection's requests in order, so on a reader's
    own consumer the question waits out the long-poll fetch in flight. Asked here (e.g. over a
    producer's client) it is answered at once, and readers can long-poll 500 ms (2 empty fetches/s
    while idle instead of 10 at 100 ms; issue 18 item 5, cost at rest)."""
    md = await topic_metadata(client, tp.topic)
    leader = None if md is None else md.leader_for_partition(tp)
    if leader is None or leader < 0:
        return None
    request = OffsetRequest(-1, READ_COMMITTED, [(tp.topic, [(tp.partition, LATEST)])])
    try:
        answer = await client.send(leader, request)
    except (KafkaError, OSError, TimeoutError):
        return None
    for topic, parts in answer.topics:
        for part, error_code, *info in parts:
            if topic == tp.topic and part == tp.partition and error_code == 0 and answer.API_VERSION >= 1:
                return int(info[-1])
    return None
