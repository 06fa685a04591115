"""Transport benchmark: bare aiokafka (the limit) vs. the streams layer, same messages, one run.

Both sides use the same client settings (acks=all, idempotence, lz4, linger 5 ms) so the ratio
measures our wrappers and codecs, not configuration. Each side produces N messages, flushes,
then consumes them all; rounds alternate raw/streams and the median round counts.

    python -m benchmarks.transport [--quick] [--size 1024] [--messages N]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from aiaas.streams.admin import Admin, wait_for_broker
from aiaas.streams.checks import aiokafka_extensions_loaded
from aiaas.streams.consumer import Consumer
from aiaas.streams.producer import Producer
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from aiaas.streams.topics import TopicSpec
from benchmarks.common import Timer, emit, fresh_prefix, machine, median

Side = Callable[[Settings, str, list[bytes]], Awaitable[tuple[float, float]]]


async def raw_side(s: Settings, topic: str, payloads: list[bytes]) -> tuple[float, float]:
    """Bare aiokafka producer and consumer with the same settings as ours."""
    prod = AIOKafkaProducer(**s.producer_kwargs())
    await prod.start()
    with Timer() as tp:
        for p in payloads:
            await prod.send(topic, p, key=None, headers=[("content-type", b"application/octet-stream")])
        await prod.flush()
    await prod.stop()
    cons = AIOKafkaConsumer(topic, **s.consumer_kwargs(None))
    await cons.start()
    got = 0
    with Timer() as tc:
        while got < len(payloads):
            batch = await cons.getmany(timeout_ms=200, max_records=5000)
            got += sum(len(v) for v in batch.values())
    await cons.stop()
    return tp.seconds, tc.seconds


async def streams_side(s: Settings, topic: str, payloads: list[bytes]) -> tuple[float, float]:
    """The same messages through streams.Producer / streams.Consumer (headers, records, chunk checks)."""
    async with Producer(s) as prod:
        with Timer() as tp:
            for p in payloads:
                await prod.send(topic, p, headers={"content-type": "application/octet-stream"})
            await prod.flush()
    async with Consumer(s, [topic], None) as cons:
        got = 0
        with Timer() as tc:
            while got < len(payloads):
                got += len(await cons.getmany(timeout_ms=200, max_records=5000))
    return tp.seconds, tc.seconds


async def measure(messages: int, size: int, rounds: int) -> dict[str, Any]:
    s = Settings(topic_prefix=fresh_prefix("transport"))
    await wait_for_broker(s)
    payloads = [os.urandom(size) for _ in range(messages)]
    sides: dict[str, Side] = {"raw": raw_side, "streams": streams_side}
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in sides}
    async with Admin(s) as admin:
        topics = [s.topic(f"{name}{r}") for r in range(rounds) for name in sides]
        await admin.ensure_topics([TopicSpec(name=t) for t in topics])
        for r in range(rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                results[name].append(await sides[name](s, s.topic(f"{name}{r}"), payloads))
        await admin.delete_topics(topics)
    return summarise(results, messages, size)


def summarise(results: dict[str, list[tuple[float, float]]], messages: int, size: int) -> dict[str, Any]:
    out: dict[str, Any] = {"message_bytes": size, "messages": messages}
    for name, runs in results.items():
        total = median([p + c for p, c in runs])
        out[f"{name}_msgs_per_s"] = round(messages / total, 1)
        out[f"{name}_mb_per_s"] = round(messages * size / total / 1e6, 2)
        out[f"{name}_produce_msgs_per_s"] = round(messages / median([p for p, _ in runs]), 1)
        out[f"{name}_consume_msgs_per_s"] = round(messages / median([c for _, c in runs]), 1)
    out["ratio_streams_vs_raw"] = round(out["streams_msgs_per_s"] / out["raw_msgs_per_s"], 3)
    out["rounds"] = len(next(iter(results.values())))
    out["aiokafka_c_extensions"] = aiokafka_extensions_loaded()
    out["machine"] = machine()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="finish within 60 s")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--messages", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    messages = args.messages or (20_000 if args.quick else 100_000)
    rounds = args.rounds or (3 if args.quick else 5)
    emit(run(measure(messages, args.size, rounds)))


if __name__ == "__main__":
    main()
