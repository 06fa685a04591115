"""A user's topic for the train-from-topic tests and the drift benchmark: digits as JSON records.

Each record is ``{"id": "r<i>", "image": {"pixels": [64 numbers]}, "label": <0..9>}`` keyed by its
id, so features sit in a nested field and the held-out split goes by key. ``permute`` relabels
(the concept drift), ``noise`` gives random labels.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import numpy as np
from sklearn.datasets import load_digits

from aiaas.schemas.jobs import JobSpec
from aiaas.streams.admin import ensure
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import TopicSpec

PERMUTATION = np.array([3, 7, 0, 9, 5, 1, 8, 2, 6, 4])
SOURCE = {"format": "json", "features": [{"path": "image.pixels[]", "width": 64}], "label": "label"}


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def digits_split(probe_rows: int = 300, seed: int = 0) -> Arrays:
    """(x, y) the stream cycles through, and a disjoint probe (x, y) (raw pixel values)."""
    d = load_digits()
    order = np.random.default_rng(seed).permutation(len(d.target))
    x, y = d.data[order].astype(np.float32), d.target[order].astype(np.int64)
    return x[probe_rows:], y[probe_rows:], x[:probe_rows], y[:probe_rows]


def records(x: np.ndarray, y: np.ndarray, start: int, count: int, *, label_map: np.ndarray | None = None,
            noise_seed: int | None = None) -> list[tuple[bytes, bytes]]:
    """``count`` (key, value) records numbered from ``start``, cycling through (x, y)."""
    rng = np.random.default_rng(noise_seed) if noise_seed is not None else None
    out = []
    for i in range(start, start + count):
        j = i % len(x)
        label = int(y[j]) if label_map is None else int(label_map[y[j]])
        if rng is not None:
            label = int(rng.integers(0, 10))
        value = {"id": f"r{i}", "image": {"pixels": x[j].tolist()}, "label": label}
        out.append((f"r{i}".encode(), msgspec.json.encode(value)))
    return out


async def make_topic(settings: Settings, name: str, partitions: int = 2) -> None:
    await ensure(settings, [TopicSpec(name=name, partitions=partitions)])


async def produce(settings: Settings, topic: str, recs: list[tuple[bytes, bytes]]) -> None:
    """Write the records (keyed: the broker's partitioner spreads them) and wait for every ack."""
    async with Producer(settings) as prod:
        futures = [await prod.send(topic, value, key=key) for key, value in recs]
        await asyncio.gather(*futures)


def source_spec(job_id: str, topic: str, **over: Any) -> JobSpec:
    base: dict[str, Any] = {
        "job_id": job_id,
        "model": {"input_dim": 64, "hidden": [128], "output_dim": 10},
        "optimizer": {"name": "adam", "lr": 2e-3},
        "batch_size": 64, "eval_interval": 5, "checkpoint_interval": 25,
        "sync": {"mode": "sync", "straggler_deadline_ms": 1000},
        "data": {"partitions": 2, "strategy": "random", "test_fraction": 0.2},
        "source": SOURCE | {"topic": topic},
    }
    return JobSpec.model_validate(base | over)
