"""streams.metadata on the real broker: what its one aiokafka private call gives that no public
call does (see streams/metadata.py): a question about one topic only, answered at once even for a
topic that does not exist."""

from __future__ import annotations

import time

from streams.admin import ensure
from streams.metadata import partition_count, topic_exists, topic_metadata
from streams.producer import Producer
from streams.settings import Settings
from streams.topics import Topics


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
