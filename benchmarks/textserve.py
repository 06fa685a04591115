"""Text serving figures for ``benchmarks.transformer``: the worker's text path in-process, and end to
end through Kafka (2 worker processes, the pipelined client), on the texts raw onnxruntime ran.

- ``worker_text_seq_per_s`` / ``padding_waste_worker``: ``aiaas.agents.inference.text.TextModel`` in
  this process (one onnxruntime thread), micro-batches of 128 texts (a worker's ``max_batch``): one
  tokenizer call each, sub-batches by length;
- ``kafka_seq_per_s``: one request per text (a BYTES ``text`` of shape [1]), ``infer_many`` with a
  window of 256, 2 ``aiaas.agents.inference`` processes (1 onnxruntime thread each) on a bundle
  registered from an artifact directory; the median of ``repeat`` passes over the texts;
- ``ratio_kafka_vs_raw``: each Kafka pass right after a pass of raw onnxruntime (best batch) on the
  same texts; the median of the pass-by-pass ratios (min and max beside it);
- ``p99_ms_low_load`` / ``p50_ms_low_load``: single-text requests on a fixed schedule (after the
  throughput passes), same workers, at 10 per second or a fifth of ``kafka_seq_per_s`` when that is
  less (``low_load_per_s``).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from aiaas.agents.inference.text import IDS, MASK, TextModel
from aiaas.client.inference import InferenceClient, InferResult
from aiaas.data.pretrained import text_tokenizer
from aiaas.registry.bundles import CONFIG, TOKENIZER, from_onnx
from aiaas.registry.store import Registry
from aiaas.streams.admin import wait_for_broker
from aiaas.streams.settings import Settings
from benchmarks.common import fresh_prefix, percentile
from tests.spawn import spawn_workers, until_processes_balanced

MODEL = "bench-text"
PARTITIONS = 8  # a worker's default for the request topic it creates
MICRO_BATCH = 128


def bundle_files(graph: bytes) -> dict[str, bytes]:
    return from_onnx({p.key: p.value for p in onnx.load_from_string(graph).metadata_props})


def worker_path(sess: Any, files: dict[str, bytes], texts: list[str]) -> dict[str, float]:
    """The worker's text code in-process: sequences/s and padding waste over ``texts``."""
    import json

    max_length = json.loads(files[CONFIG])["max_length"]
    tm = TextModel(text_tokenizer(files[TOKENIZER].decode(), max_length), max_length, [IDS, MASK], True)
    names = [o.name for o in sess.get_outputs()]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, sess.run(names, feeds), strict=True))

    started = time.perf_counter()
    for i in range(0, len(texts), MICRO_BATCH):
        tm.run(run, [np.array(texts[i:i + MICRO_BATCH], dtype=object)])
    return {"seq_per_s": len(texts) / (time.perf_counter() - started), "padding_waste": tm.pads / tm.tokens}


def _one(text: str) -> dict[str, np.ndarray]:
    arr = np.empty(1, dtype=object)
    arr[0] = text
    return {"text": arr}


async def _pipelined(client: InferenceClient, texts: list[str]) -> float:
    got, start = 0, time.perf_counter()
    async for _, r in client.infer_many(MODEL, (_one(t) for t in texts), window=256, timeout=120):
        if not isinstance(r, InferResult):
            raise r
        got += 1
    return got / (time.perf_counter() - start)


async def _low_load(client: InferenceClient, texts: list[str], rate: float, count: int) -> list[float]:
    lat: list[float] = []

    async def one(i: int) -> None:
        t0 = time.perf_counter()
        await client.infer(MODEL, _one(texts[i % len(texts)]), timeout=30)
        lat.append((time.perf_counter() - t0) * 1000)

    tasks, start = [], time.perf_counter()
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))  # the load schedule
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return lat


async def through_kafka(graph: bytes, texts: list[str], raw: Callable[[], float], *, repeat: int,
                        low_load_count: int) -> dict[str, Any]:
    """2 worker processes serving the bundle of ``graph``; the pipelined client sends ``texts``.
    Each pass through Kafka follows a pass of ``raw`` (in-process onnxruntime, texts/s, on the same
    texts): on a shared machine the ratio is taken pass by pass, side by side."""
    settings = Settings(topic_prefix=fresh_prefix("text-serve"), client_id="bench-text")
    await wait_for_broker(settings)
    with tempfile.TemporaryDirectory() as tmp:
        async with Registry(settings, artifact_dir=tmp) as reg:
            await reg.publish(MODEL, graph, files=bundle_files(graph), stage="production")
        async with spawn_workers(settings, MODEL, 2, "--threads", "1") as procs, \
                InferenceClient(settings) as client:
            await until_processes_balanced(procs, PARTITIONS, timeout_s=120)
            await _pipelined(client, texts[:256])  # warm-up: sessions, shapes, connections
            pairs = []
            for _ in range(repeat):
                limit = await asyncio.to_thread(raw)
                pairs.append((limit, await _pipelined(client, texts)))
            # low load: a fifth of the measured rate, at most 10/s (a busy shared machine serves few)
            rate = min(10.0, 0.2 * statistics.median(k for _, k in pairs))
            lat = await _low_load(client, texts, rate, max(30, min(low_load_count, int(rate * 20))))
    ratios = sorted(k / r for r, k in pairs)
    return {"kafka_seq_per_s": round(statistics.median(k for _, k in pairs), 1),
            "ratio_kafka_vs_raw": round(statistics.median(ratios), 3),
            "ratio_kafka_vs_raw_min_max": [round(ratios[0], 3), round(ratios[-1], 3)],
            "kafka_runs": [{"raw_seq_per_s": round(r, 1), "kafka_seq_per_s": round(k, 1)} for r, k in pairs],
            "p50_ms_low_load": round(percentile(lat, 50), 2),
            "p99_ms_low_load": round(percentile(lat, 99), 2), "low_load_requests": len(lat),
            "low_load_per_s": round(rate, 2)}
