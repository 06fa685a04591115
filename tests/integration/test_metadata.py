"""aiaas.streams.metadata on the real broker: a question about one topic only, answered at once even
for a topic that does not exist (no public aiokafka call does that, see streams/metadata.py), and
the admin client's inner client (the one aiokafka private attribute used) reaching every broker."""

from __future__ import annotations

import time

from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.structs import TopicPartition

from aiaas.streams.admin import Admin, ensure
from aiaas.streams.metadata import end_offset, kafka_client_of, partition_count, topic_exists, topic_metadata
from aiaas.streams.producer import Producer
from aiaas.streams.readers import open_assigned
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics


async def test_one_topic_is_asked_about_and_a_missing_one_is_answered_at_once(settings: Settings) -> None:
    spec = Topics(settings).train_ring("meta", partitions=3)
    await ensure(settings, [spec])
    missing = f"{settings.topic_prefix}no-such-topic"
    async with Producer(settings) as producer:
        client = producer.raw.client
        md = await topic_metadata(client, spec.name)
        assert md is not None and md.topics() == {spec.name}  # only the topic asked about
        assert md.partitions_for_topic(spec.name) == {0, 1, 2}
        assert await partition_count(client, spec.name) == 3
        t0 = time.monotonic()
        assert await partition_count(client, missing) == 0
        assert not await topic_exists(client, missing)
        # AIOKafkaProducer.partitions_for would wait request_timeout_ms (40 s) here
        assert time.monotonic() - t0 < 10
        assert missing not in client.cluster.topics()  # the client's own metadata is untouched


async def test_the_admin_clients_inner_client_asks_each_broker(settings: Settings) -> None:
    spec = Topics(settings).train_ring("meta-admin", partitions=2)
    await ensure(settings, [spec])  # returns once every broker shows the topic (through the wrapper)
    async with Admin(settings) as admin:
        kafka = kafka_client_of(admin.client)
        nodes = [b.nodeId for b in kafka.cluster.brokers()]
        assert nodes
        for node in nodes:
            answer = (await kafka.send(node, MetadataRequest([spec.name]))).to_object()
            assert [len(t["partitions"]) for t in answer["topics"]] == [2]


async def test_end_offset_is_the_consumers_without_waiting_behind_its_long_poll(settings: Settings) -> None:
    spec = Topics(settings).train_ring("meta-end", partitions=1)
    await ensure(settings, [spec])
    tp = TopicPartition(spec.name, 0)
    async with Producer(settings) as producer:
        for i in range(3):
            await producer.send_and_wait(spec.name, b"x", key=str(i).encode())
        reader = await open_assigned(settings, tp, fetch_max_wait_ms=5000)  # a long poll on another client
        try:
            await reader.getmany(tp, timeout_ms=1000)
            t0 = time.monotonic()
            assert await end_offset(producer.raw.client, tp) == 3
            assert time.monotonic() - t0 < 2.5  # not queued behind a 5 s fetch
            assert (await reader.end_offsets([tp]))[tp] == 3
        finally:
            await reader.stop()
        missing = TopicPartition(f"{settings.topic_prefix}no-such-topic", 0)
        assert await end_offset(producer.raw.client, missing) is None
