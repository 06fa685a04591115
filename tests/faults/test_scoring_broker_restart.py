"""Exactly-once stream scoring across a broker crash. The broker is this test's own (free ports, a
temporary state dir, started with infra/kafka/start.sh; the shared broker is never touched),
SIGKILLed mid-stream and kept down until a transaction attempt has failed (one attempt may take
the request timeout + 5 s, 12 s here), then started again on the same ports and state. The failed
transaction is aborted and tried again with a fresh producer until the broker answers
(agents/inference/transactions.py); read committed, the output holds exactly one prediction per
input offset, and the worker goes on (~60 s in all: two broker starts)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter

import pytest

from aiaas.agents.inference.scoring import ScoringWorker
from aiaas.agents.inference.scoring_settings import ScoringSettings
from aiaas.agents.inference.transactions import TransactionalSink
from aiaas.registry.store import Registry
from aiaas.schemas.sources import Source
from aiaas.sources import compile_source
from aiaas.streams.admin import wait_for_broker
from aiaas.streams.lifecycle import cancel
from aiaas.streams.settings import Settings
from tests import examples
from tests.faults.test_bridge_kafka_down import OwnBroker, own_broker  # noqa: F401 (the fixture)
from tests.integration.test_scoring import FEATURES, good, scoring
from tests.scoredreads import Prediction, group_caught_up, make_topic, produce, read_committed

N, PARTITIONS = 20_000, 2


async def stream_on(broker: OwnBroker, prefix: str, request_timeout_ms: int) -> tuple[Settings, Source, str]:
    """N records on a 2-partition topic of ``broker`` and a production model: settings, source, output."""
    settings = Settings(bootstrap_servers=f"127.0.0.1:{broker.port}", topic_prefix=prefix,
                        client_id=f"test-{prefix}", request_timeout_ms=request_timeout_ms)
    await wait_for_broker(settings)
    src, out = settings.topic("events"), settings.topic("scored")
    await make_topic(settings, src, PARTITIONS)
    async with Registry(settings) as reg:
        await reg.publish("m", examples.mlp([3, 8, 2], seed=6), stage="production")
    await produce(settings, src, [(f"k{i}".encode(), json.dumps(good(i)).encode()) for i in range(N)],
                  PARTITIONS)
    return settings, Source(topic=src, format="json", features=FEATURES), out


@pytest.mark.timeout(300)
async def test_broker_killed_mid_stream_scoring_resumes_exactly_once(
    own_broker: OwnBroker, prefix: str  # noqa: F811 (the fixture)
) -> None:
    settings, source, out = await stream_on(own_broker, prefix, request_timeout_ms=7000)
    async with scoring(settings, source, model="m", to_topic=out, max_batch=500,
                       retry_deadline_s=150) as worker:
        early = await read_committed(settings, out, until=lambda n: n >= N // 10, timeout_s=60, parse=False)
        assert len(early) < N, "all scored before the crash: it would test nothing"
        await asyncio.to_thread(own_broker.kill)  # SIGKILL: the transaction in flight is cut off
        sink = worker.sink
        assert isinstance(sink, TransactionalSink)
        # down until a transaction attempt failed (the abort-and-retry path), or 30 s: a kill that
        # falls between polls, with nothing fetched left, starts no transaction until the broker is back
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await sink.attempt_failed.wait()
        await asyncio.to_thread(own_broker.start)  # same ports and state
        await group_caught_up(settings, worker.group, source.topic, timeout_s=150)
        assert worker.stats["scored"] >= N - N // 10
        preds: list[Prediction] = await read_committed(settings, out, timeout_s=60)
    seen = Counter(p.source[1:] for p in preds)
    assert set(seen) == {(p, o) for p in range(PARTITIONS) for o in range(N // PARTITIONS)}
    assert max(seen.values()) == 1, [k for k, c in seen.items() if c > 1][:5]


@pytest.mark.timeout(120)
async def test_a_worker_told_to_stop_with_the_broker_gone_stops_within_its_grace(
    own_broker: OwnBroker, prefix: str  # noqa: F811 (the fixture)
) -> None:
    """The transaction in flight would retry to its deadline (150 s here) and the take-over lock
    waits on it: stop() gives up on it after stop_grace_s (its partitions' next owner aborts it)."""
    settings, source, out = await stream_on(own_broker, prefix, request_timeout_ms=5000)
    conf = ScoringSettings(from_topic=source.topic, model="m", to_topic=out, max_batch=500,
                           retry_deadline_s=150, stop_grace_s=2)
    worker = ScoringWorker(settings, conf, source, compile_source(source, labels=False))
    await worker.start()
    task = asyncio.create_task(worker.run())
    try:
        await read_committed(settings, out, until=lambda n: n >= 1, timeout_s=60, parse=False)
        await asyncio.to_thread(own_broker.kill)
        sink = worker.sink
        assert isinstance(sink, TransactionalSink)
        async with asyncio.timeout(60):
            await sink.attempt_failed.wait()  # a transaction is retrying against the dead broker
        worker.request_stop()
        began = time.monotonic()
        await cancel(task)
        await worker.stop()
        took = time.monotonic() - began
    finally:
        await cancel(task)
    assert took < 30, f"stop() took {took:.1f}s with stop_grace_s=2"
