"""Streaming benchmark: scoring a user's topic (``aiaas score``) against its two limits.

    python -m benchmarks.streaming [--quick] [--records N] [--repeat R]

The input: N JSON records ``{"id": i, "x": [64 numbers]}`` on a 4-partition topic. Figures:

- ``decode_json_per_s``, ``decode_avro_per_s`` (and the other ``decode_*`` figures): the source
  decoders (``aiaas.sources``), records/s on one core, 64 numeric features, from
  ``benchmarks.streaming_decode``;
- ``copy_per_s``: 2 processes of bare aiokafka consume -> produce (a consumer-group member each,
  same batches and partitions as scoring, offsets committed after the acks): the transport limit;
- ``raw_ort_per_s``: the same model (64-128-10 MLP) in process, one thread, batches of 2000;
- ``score_per_s``: input topic -> 2 scoring worker processes -> output topic, exactly once
  (transactions); ``score_at_least_once_per_s``: the same with ``--at-least-once``;
- ``ratio_score_vs_limit`` = score_per_s / min(copy_per_s, raw_ort_per_s), and
  ``exactly_once_cost`` = 1 - score_per_s / score_at_least_once_per_s;
- ``cpu_us_per_record``: CPU (user + system, /proc) of each side's 2 processes per record over the
  timed window, and ``cpu_ratio_copy_vs_score`` = copy's / exactly once's: what the throughput ratio
  tends to on a machine whose cores are all busy, measured whatever else loads it;
- ``drift_recovery_s``: from ``benchmarks.streaming_drift`` (continuous training following a label
  change); not run with ``--quick`` unless ``--drift`` (null, with ``drift_recovery_note``).

Each run of a 2-process side writes the N records to a fresh input topic in one open transaction,
starts its processes and waits until both own partitions; then the transaction commits, so all N
records become readable at once (every side reads read_committed), and the clock runs from the
commit until the group has committed every input record: the processes drain a backlog, and
neither their start nor the writer's CPU is measured. Each side runs ``--repeat`` times, sides
alternating (the first of a round rotating), after one untimed warm-up copy of a fifth of the
records (a cold broker slowed whichever side went first); medians are reported with min and max, and
``ratio_score_vs_limit_per_round`` is each round's own ratio (min / median / max).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from aiaas.registry.store import Registry
from aiaas.schemas.sources import Source
from aiaas.streams.admin import Admin, wait_for_broker
from aiaas.streams.lifecycle import stop_consumer
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from benchmarks import common as bc
from benchmarks.common import Timer, add_repeat, emit, fresh_prefix, machine, spread
from tests import examples
from tests.infra import ROOT
from tests.scoredreads import group_caught_up, make_topic, send_round_robin
from tests.spawn import WorkerProcess, spawn_workers, until_processes_balanced

PARTITIONS, FEATURES, BATCH = 4, 64, 2000
MODEL = "stream-mlp"


def records(n: int, seed: int = 0) -> list[tuple[bytes, bytes]]:
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=(n, FEATURES)), 4).tolist()
    return [(f"k{i}".encode(), json.dumps({"id": i, "x": row}).encode()) for i, row in enumerate(x)]


def source_block(topic: str) -> dict[str, Any]:
    return {"topic": topic, "format": "json", "features": [{"path": "x[]", "width": FEATURES}],
            "passthrough": ["id"]}


# ---------------------------------------------------------------------- in-process figures

def raw_ort_per_s(model: bytes, seconds: float) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(BATCH, FEATURES)).astype(np.float32)
    rows, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        sess.run(None, {"input": x})
        rows += BATCH
    return rows / (time.perf_counter() - began)


def decode_figures(values: list[bytes], quick: bool) -> dict[str, Any]:
    """``decode_*_per_s`` from the sources area's benchmark (``benchmarks.streaming_decode``: 64
    numeric features, one core); while it is missing, JSON measured here on these records."""
    figures = getattr(_optional("benchmarks.streaming_decode"), "figures", None)
    if callable(figures):
        got = figures(quick=quick)
        return {k: v for k, v in got.items() if k.startswith("decode_")}
    from aiaas.sources import compile_source

    decoder = compile_source(Source.model_validate(source_block("t")), labels=False)
    with Timer() as t:
        for i in range(0, len(values), BATCH):
            decoder.decode(values[i:i + BATCH])
    return {"decode_json_per_s": round(len(values) / t.seconds), "decode_avro_per_s": None,
            "decode_note": "benchmarks/streaming_decode.py not present: JSON measured here with "
                           "aiaas.sources.compile_source on these records; no Avro figure"}


# ---------------------------------------------------------------------- the bare copy member

class _Logged(ConsumerRebalanceListener):  # type: ignore[misc]
    """Says what it owns on stderr, in the words ``tests.spawn.WorkerProcess`` reads."""

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        print(f"assigned {len(assigned)} partitions", file=sys.stderr, flush=True)


async def copy_member(src: str, out: str, group: str) -> None:
    """Bare aiokafka consume -> produce until SIGTERM: each partition's records in batches to the
    same output partition, offsets committed after the acks (what scoring does, minus the work)."""
    s = Settings()
    kw = s.consumer_kwargs(group, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    consumer = AIOKafkaConsumer(**kw)
    producer = AIOKafkaProducer(**s.producer_kwargs(compression_type=None))  # as the scoring workers
    await consumer.start()
    await producer.start()
    consumer.subscribe([src], listener=_Logged())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=BATCH)
            acks, offsets = [], {}
            for tp, recs in batches.items():
                batch = producer.create_batch()
                for r in recs:
                    if batch.append(key=r.key, value=r.value, timestamp=None, headers=[]) is None:
                        acks.append(await producer.send_batch(batch, out, partition=tp.partition))
                        batch = producer.create_batch()
                        batch.append(key=r.key, value=r.value, timestamp=None, headers=[])
                acks.append(await producer.send_batch(batch, out, partition=tp.partition))
                offsets[tp] = OffsetAndMetadata(recs[-1].offset + 1, "")
            await asyncio.gather(*acks)
            if offsets:
                await consumer.commit(offsets)
    finally:
        await producer.stop()
        await stop_consumer(consumer)


# ---------------------------------------------------------------------- two-process sides

@asynccontextmanager
async def copy_side(settings: Settings, src: str, out: str, group: str) -> AsyncIterator[None]:
    """Two bare copy processes in ``group``, both owning partitions."""
    await make_topic(settings, out, PARTITIONS)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIAAS_TOPIC_PREFIX": settings.topic_prefix,
           "AIAAS_BOOTSTRAP_SERVERS": settings.bootstrap_servers}
    procs = [WorkerProcess(await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.streaming", "--copy-member", src, out, group, cwd=ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE)) for _ in range(2)]
    try:
        await until_processes_balanced(procs, PARTITIONS, timeout_s=60)
        yield
    finally:
        for p in procs:
            if p.proc.returncode is None:
                p.proc.terminate()
            await p.proc.wait()


@asynccontextmanager
async def score_side(settings: Settings, src: str, out: str, group: str, spec: Path,
                     exactly_once: bool) -> AsyncIterator[None]:
    """Two scoring worker processes in ``group``, both owning partitions."""
    flags = ["--score", "--from", src, "--to", out, "--source", str(spec), "--group", group,
             "--max-batch", str(BATCH)]
    if not exactly_once:
        flags.append("--at-least-once")
    async with spawn_workers(settings, MODEL, 2, *flags) as procs:
        await until_processes_balanced(procs, PARTITIONS, timeout_s=90)
        yield


async def staged(settings: Settings, topic: str, data: list[tuple[bytes, bytes]]) -> AIOKafkaProducer:
    """``data`` written to ``topic`` in one open transaction: read_committed readers (every side)
    see none of it until ``commit_transaction()``, then all of it at once."""
    producer = AIOKafkaProducer(**settings.producer_kwargs(
        transactional_id=f"{topic}.stage", transaction_timeout_ms=600_000, linger_ms=20))
    await producer.start()
    await producer.begin_transaction()
    await send_round_robin(producer, topic, data, PARTITIONS)
    return producer


async def timed(settings: Settings, data: list[tuple[bytes, bytes]], side: str,
                spec: Path) -> tuple[float, float]:
    """Records/s of one side, and its processes' CPU us per record: the input waits in an open
    transaction while its 2 processes start and take their partitions; the clock runs from the
    commit (all N records readable at once) until the group has committed every record."""
    tag = uuid.uuid4().hex[:6]
    src, out, group = settings.topic(f"in-{tag}"), settings.topic(f"out-{tag}"), settings.topic(f"g-{tag}")
    await make_topic(settings, src, PARTITIONS)
    writer = await staged(settings, src, data)
    running = copy_side(settings, src, out, group) if side == "copy" else \
        score_side(settings, src, out, group, spec, exactly_once=side == "exactly_once")
    try:
        async with running:
            cpu, began = bc.children_cpu_seconds(), time.perf_counter()
            await writer.commit_transaction()
            per_partition = {p: len(range(p, len(data), PARTITIONS)) for p in range(PARTITIONS)}
            await group_caught_up(settings, group, src, timeout_s=600, ends=per_partition, poll_s=0.02)
            rate = len(data) / (time.perf_counter() - began)
            used = sum(t - cpu.get(pid, t) for pid, t in bc.children_cpu_seconds().items())
            return rate, used / len(data) * 1e6
    finally:
        await writer.stop()
        async with Admin(settings) as admin:  # a full run writes GBs: drop each run's topics
            await admin.delete_topics([t for t in (src, out, f"{out}.dlq") if t in await admin.list_topics()])


async def main(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(topic_prefix=fresh_prefix("streaming"))
    await wait_for_broker(settings)
    n = args.records or (100_000 if args.quick else 300_000)
    repeat = args.repeat if args.repeat is not None else (2 if args.quick else 3)
    model = examples.mlp([FEATURES, 128, 10], seed=0)
    data = records(n)
    result: dict[str, Any] = {"benchmark": "streaming", "quick": args.quick, "machine": machine(),
                              "records": n, "partitions": PARTITIONS, "repeat": repeat}
    result.update(decode_figures([v for _, v in data[:40_000]], args.quick))
    raw = [raw_ort_per_s(model, 1.0 if args.quick else 3.0) for _ in range(repeat)]
    async with Registry(settings) as reg:
        await reg.publish(MODEL, model, stage="production")
    spec = write_spec(settings.topic_prefix, settings.topic("in"))  # each run gives its topic (--from)
    runs: dict[str, list[float]] = {"copy": [], "exactly_once": [], "at_least_once": []}
    cpu: dict[str, list[float]] = {side: [] for side in runs}
    await timed(settings, data[: len(data) // 5], "copy", spec)  # warm-up, not counted: a cold broker
    sides = list(runs)  # (JIT, page cache) slowed whichever side went first, always the copy
    for i in range(repeat):  # sides alternate, and the first of a round rotates, so load from other
        for side in sides[i % len(sides):] + sides[:i % len(sides)]:  # processes hits them alike
            rate, us = await timed(settings, data, side, spec)
            runs[side].append(rate)
            cpu[side].append(us)
        print(f"round {i + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in runs.items()),
              file=sys.stderr, flush=True)
    os.unlink(spec)
    copy, eo, alo = runs["copy"], runs["exactly_once"], runs["at_least_once"]
    result.update(spread("copy_per_s", copy, 0) | spread("raw_ort_per_s", raw, 0)
                  | spread("score_per_s", eo, 0) | spread("score_at_least_once_per_s", alo, 0))
    limit = min(result["copy_per_s"], result["raw_ort_per_s"])
    result["ratio_score_vs_limit"] = round(result["score_per_s"] / limit, 3)
    paired = [e / min(c, r) for e, c, r in zip(eo, copy, raw, strict=True)]  # each round's own ratio
    result.update(spread("ratio_score_vs_limit_per_round", paired, 3))
    result["exactly_once_cost"] = round(1 - result["score_per_s"] / result["score_at_least_once_per_s"], 3)
    result["cpu_us_per_record"] = {side: round(bc.median(us), 2) for side, us in cpu.items()}
    result["cpu_ratio_copy_vs_score"] = round(bc.median(cpu["copy"]) / bc.median(cpu["exactly_once"]), 3)
    result.update(await drift_figure(args.quick, args.drift))
    result["targets"] = {"ratio_score_vs_limit>=0.7": result["ratio_score_vs_limit"] >= 0.7,
                         "exactly_once_cost<=0.25": result["exactly_once_cost"] <= 0.25}
    return result


async def drift_figure(quick: bool, drift: bool) -> dict[str, Any]:
    """``drift_recovery_s`` from the continuous-training benchmark (``benchmarks.streaming_drift``:
    a continuous job on a digits stream whose labels change at record 10,000)."""
    measure = getattr(_optional("benchmarks.streaming_drift"), "measure", None)
    if measure is None:
        return {"drift_recovery_s": None,
                "drift_recovery_note": "benchmarks/streaming_drift.py (measure()) not present"}
    if quick and not drift:
        return {"drift_recovery_s": None,
                "drift_recovery_note": "not run with --quick (it trains for minutes); add --drift, or "
                                       "run python -m benchmarks.streaming_drift"}
    got = await measure()
    return {"drift_recovery_s": got["drift_recovery_s"],
            "drift": {k: v for k, v in got.items() if k not in ("machine", "drift_recovery_s")}}


def _optional(module: str) -> Any:
    """Another area's benchmark module, or None while it does not exist."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def write_spec(prefix: str, src: str) -> Path:
    spec = Path(f"/tmp/{prefix}source.yaml")
    spec.write_text(yaml.safe_dump({"source": source_block(src)}))
    return spec


def cli() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--copy-member":
        run(copy_member(*sys.argv[2:5]))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short runs (under 3 minutes in all)")
    p.add_argument("--records", type=int, default=None, help="input records (default 300,000; quick 100,000)")
    p.add_argument("--drift", action="store_true", help="with --quick: measure drift_recovery_s too")
    add_repeat(p, default=3)
    p.set_defaults(repeat=None)
    emit(run(main(p.parse_args())))


if __name__ == "__main__":
    cli()
