"""Bounded stream scoring on the real broker: the source's ``end:`` (offsets per partition, or a
timestamp) is where scoring stops; ``aiaas score`` exits 0 once every partition reached it, and the
output holds exactly the records before the end, once each."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import yaml
from aiokafka import AIOKafkaProducer

from aiaas.agents.inference.scoring import ScoringWorker
from aiaas.agents.inference.scoring_settings import ScoringSettings
from aiaas.registry.store import Registry
from aiaas.schemas.sources import Source
from aiaas.sources import compile_source
from aiaas.streams.settings import Settings
from tests import examples
from tests.integration.test_cli_models import aiaas
from tests.integration.test_scoring import FEATURES, good
from tests.scoredreads import Prediction, make_topic, produce, read_committed


async def test_aiaas_score_stops_at_the_end_offsets_and_exits(settings: Settings, tmp_path: Path) -> None:
    src, out = settings.topic("bounded"), settings.topic("bounded.scored")
    await make_topic(settings, src, 2)
    async with Registry(settings) as reg:
        await reg.publish("b", examples.mlp([3, 8, 2], seed=3), stage="production")
    await produce(settings, src, [(f"k{i}".encode(), json.dumps(good(i)).encode()) for i in range(40)],
                  partitions=2)  # 20 per partition
    spec = tmp_path / "source.yaml"
    spec.write_text(yaml.safe_dump({"source": {"topic": src, "format": "json", "features": FEATURES,
                                               "end": {0: 12, 1: 5}}}))
    rc, _, err = await aiaas(settings, "score", "--model", "b", "--to", out, "--source", str(spec),
                             timeout_s=90)
    assert rc == 0, err  # it exited by itself
    preds: list[Prediction] = await read_committed(settings, out)
    assert sorted(p.source[1:] for p in preds) == [(0, o) for o in range(12)] + [(1, o) for o in range(5)]


async def test_a_timestamp_end_stops_at_the_first_record_at_or_after_it(settings: Settings) -> None:
    src, out = settings.topic("timed"), settings.topic("timed.scored")
    await make_topic(settings, src, 1)
    async with Registry(settings) as reg:
        await reg.publish("t", examples.mlp([3, 8, 2], seed=3), stage="production")
    t0 = 1_700_000_000_000
    producer = AIOKafkaProducer(**settings.producer_kwargs())
    await producer.start()
    try:  # record i at t0 + i s: the end (t0 + 7.5 s) falls between records 7 and 8
        for i in range(12):
            await producer.send_and_wait(src, json.dumps(good(i)).encode(), key=b"k", partition=0,
                                         timestamp_ms=t0 + 1000 * i)
    finally:
        await producer.stop()
    source = Source(topic=src, format="json", features=FEATURES,
                    end=datetime.fromtimestamp((t0 + 7500) / 1000, UTC))
    worker = ScoringWorker(settings, ScoringSettings(model="t", from_topic=src, to_topic=out), source,
                           compile_source(source, labels=False))
    await worker.start()
    try:
        async with asyncio.timeout(30):
            await worker.run()  # returns by itself at the end
    finally:
        await worker.stop()
    preds: list[Prediction] = await read_committed(settings, out)
    assert [p.source[2] for p in preds] == list(range(8)) and worker.stats["scored"] == 8
