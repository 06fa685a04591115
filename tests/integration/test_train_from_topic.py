"""Training from the user's own topic on the real broker (README, "Train from your topic").

Digits as JSON records with the pixels in a nested field: a bounded job reads the topic (no data
push, no copy of it on a data topic), spreads it over two trainers with the declared strategy, holds
out a share of keys, and reaches the accuracy the pushed-data path reaches on digits (0.95, as in
test_training.py). The registered version names its source topic, offset ranges and job.
"""

from __future__ import annotations

import numpy as np
import pytest

from aiaas.agents.launcher import run_in_process
from aiaas.ml.export import session
from aiaas.registry.store import Registry
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests.sourcestreams import digits_split, make_topic, produce, records, source_spec

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("strategy", ["random", "label"])
async def test_bounded_json_topic_trains_to_the_pushed_accuracy(settings: Settings, strategy: str) -> None:
    topic = f"{settings.topic_prefix}user.digits"
    await make_topic(settings, topic, partitions=2)
    x, y, px, py = digits_split()
    await produce(settings, topic, records(x, y, 0, len(x)))
    spec = source_spec(f"topic-{strategy}", topic, epochs=40,
                       target={"metric": "test_accuracy", "value": 0.95},
                       data={"partitions": 2, "strategy": strategy, "test_fraction": 0.2})
    status = await run_in_process(settings, spec, timeout_s=100)
    assert status.state == "succeeded", status.error
    assert status.metrics["test_accuracy"] >= 0.95
    async with Registry(settings) as reg:
        mv = await reg.get(spec.model_name, status.model_version)
        onnx = await reg.load_bytes(mv)
    src = mv.lineage.source
    assert src is not None and src.topic == topic and src.format == "json"
    assert sorted(src.offsets) == [0, 1] and all(lo == 0 for lo, _ in src.offsets.values())
    assert sum(hi - lo for lo, hi in src.offsets.values()) == len(x)
    assert mv.lineage.job_id == spec.job_id
    # the served graph takes raw pixels: the scaling fitted from the stream travels inside it
    label = session(onnx).run(["label"], {"input": px})[0]
    assert float((label == py).mean()) >= 0.9
    # nothing was copied onto the job's data topic
    assert not await _holds_records(settings, Topics(settings).train_data(spec.job_id, 2).name)


async def _holds_records(settings: Settings, topic: str) -> bool:
    from aiokafka import TopicPartition

    from aiaas.streams.readers import open_assigned

    consumer = await open_assigned(settings)
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(2)])
        return bool(np.sum(list(ends.values())))
    finally:
        await consumer.stop()
