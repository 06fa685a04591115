"""The cluster keeps what it promises before anything is killed: topics aiaas creates and Kafka's own
offsets and transaction state topics have 3 in-sync replicas and need 2 for an acks=all write, and
such a write still succeeds with one node down."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from aiaas.streams.admin import Admin
from aiaas.streams.consumer import Consumer
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests.cluster.control import LocalCluster, leaders, replication, until_in_sync


async def min_insync(admin: Admin, topic: str) -> str:
    (resp,) = await admin.client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    # resources: (error code, error message, resource type, name, [(name, value, ...), ...])
    entries = resp.resources[0][4]
    return next(str(e[1]) for e in entries if e[0] == "min.insync.replicas")


async def test_topics_and_internal_topics_are_replicated_with_min_insync_two(
    cluster: LocalCluster, settings: Settings
) -> None:
    topic = Topics(settings).audit()
    async with Admin(settings) as admin:
        await admin.ensure_topics([topic])
    async with Producer(settings) as prod:  # an acks=all write and a committed group offset
        await prod.send_and_wait(topic.name, b"hello", key=b"k")
    async with Consumer(settings, [topic.name], group_id=settings.topic("cfg")) as consumer:
        await consumer.getmany(timeout_ms=5000)
        await consumer.commit_quietly()
    txn = AIOKafkaProducer(**settings.producer_kwargs(transactional_id=settings.topic("cfg-txn")))
    await txn.start()  # creates __transaction_state
    await txn.stop()
    names = [topic.name, "__consumer_offsets", "__transaction_state"]
    await until_in_sync(settings, names, timeout_s=60)
    async with Admin(settings) as admin:
        for name in names:
            reps = await replication(settings, name)
            assert reps and all(r == (3, 3) for r in reps), (name, reps)
            assert await min_insync(admin, name) == "2", name
    victim = (await leaders(settings, topic.name))[0]
    await cluster.kill(victim)
    async with Producer(settings) as prod:  # two in-sync copies left: acks=all still succeeds
        await prod.send_and_wait(topic.name, b"still", key=b"k")
    assert victim not in (await leaders(settings, topic.name)).values()
