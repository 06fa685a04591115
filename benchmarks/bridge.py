"""Bridge benchmark: OIP over HTTP through the bridge vs. the same requests through aiaas.client.inference.

    python -m benchmarks.bridge [--quick] [--repeat N] [--concurrency 32] [--workers 1]

One inference worker process serves the digits-sized MLP (64-128-10, FP32) and one bridge process
serves HTTP (auth on, rate limit on, audit on: the production path). The same JSON OIP request
(one row) is sent with ``concurrency`` requests in flight:

- ``http``: a lean keep-alive HTTP/1.1 load generator (one connection per in-flight request, the
  request bytes prepared once, like ``wrk``), so the client's own cost stays small beside the bridge;
- ``direct``: ``InferenceClient.infer`` in this process with the same concurrency.

The two alternate (direct, http, direct, http, ...) in one run on this machine (broker included);
each of the ``--repeat`` repeats is 2 such pairs of rounds (3 without ``--quick``). Last stdout line:
``http_per_s``, ``p50_ms``, ``p99_ms`` (HTTP at the given concurrency), ``direct_client_per_s``,
``ratio_http_vs_direct``, each the median over the repeats with ``_min`` and ``_max`` beside it (the
ratio: the median of the per-repeat ratios), and more:
``bridge_cpu_us_per_request`` (the bridge process's CPU time per request, from /proc: its own cost,
which other processes' load on the machine changes much less than rates), the load generator's and
the direct client's CPU per request (this process), per-round rates, p95.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis.asyncio as aioredis

from aiaas.agents.bridge.keys import KeyStore
from aiaas.agents.bridge.rediskeys import RedisKeys
from aiaas.client.inference import InferenceClient
from aiaas.registry.store import Registry
from aiaas.streams.admin import wait_for_broker
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from benchmarks.common import add_repeat, emit, fresh_prefix, machine, percentile, spread
from tests import examples
from tests.spawn import BridgeProcess, spawn_workers, until_processes_balanced

MODEL = "digits-mlp"
PARTITIONS = 8


def request_bytes(port: int, key: str, body: bytes) -> bytes:
    head = (f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def http_load(port: int, payload: bytes, n: int, concurrency: int) -> tuple[float, list[float]]:
    """Requests/s and latencies (ms) of ``n`` requests over ``concurrency`` keep-alive connections."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]
    lat: list[float] = []
    left = n

    async def loop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            writer.write(payload)
            status = await _read_response(reader)
            if status != 200:
                raise RuntimeError(f"HTTP {status}")
            lat.append((time.perf_counter() - t0) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(loop(r, w) for r, w in conns))
    rate = n / (time.perf_counter() - start)
    for _, w in conns:
        w.close()
    return rate, lat


async def direct_load(
    client: InferenceClient, x: np.ndarray, n: int, concurrency: int
) -> tuple[float, list[float]]:
    """The same requests through InferenceClient.infer, ``concurrency`` in flight."""
    lat: list[float] = []
    left = n

    async def loop() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t0 = time.perf_counter()
            await client.infer(MODEL, {"input": x}, timeout=60)
            lat.append((time.perf_counter() - t0) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return n / (time.perf_counter() - start), lat


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc): the bridge's own cost, whatever the load."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def prepare(settings: Settings) -> tuple[str, bytes]:
    """Register the model and create an API key with a limit far above the load."""
    async with Registry(settings) as reg:
        await reg.publish(MODEL, examples.mlp([64, 128, 10], seed=0), stage="production")
    client = aioredis.from_url(settings.redis_url)
    try:
        key, _, _ = await KeyStore(client, RedisKeys(settings)).create("bench", rate_per_s=1e6, burst=1e6)
    finally:
        await client.aclose()
    x = np.random.default_rng(0).normal(size=(1, 64)).astype(np.float32)
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32",
                                   "data": x.ravel().tolist()}]}).encode()
    return key, body


async def main(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(topic_prefix=fresh_prefix("bridge"), client_id="bench-bridge")
    await wait_for_broker(settings)
    key, body = await prepare(settings)
    x = np.asarray(json.loads(body)["inputs"][0]["data"], dtype=np.float32).reshape(1, 64)
    # many short alternating rounds: both sides sample the same background load on a shared machine
    n = 750 if args.quick else 2500
    per_repeat = 2 if args.quick else 3
    env = {"AIAAS_TOPIC_PREFIX": settings.topic_prefix, "AIAAS_LOG_LEVEL": "WARNING"}
    results: dict[str, list[Any]] = {"http": [], "direct": [], "lat": [], "cpu": [], "client_cpu": [],
                                     "loadgen_cpu": []}
    repeats: list[dict[str, float]] = []
    async with spawn_workers(settings, MODEL, args.workers, "--threads", "1") as workers, \
            BridgeProcess(env) as bridge, InferenceClient(settings) as client:
        await until_processes_balanced(workers, PARTITIONS)
        payload = request_bytes(bridge.port, key, body)
        await http_load(bridge.port, payload, 300, args.concurrency)  # warm both paths
        await direct_load(client, x, 300, args.concurrency)
        for i in range(args.repeat * per_repeat):
            own0 = time.process_time()
            rate, _ = await direct_load(client, x, n, args.concurrency)
            results["client_cpu"].append((time.process_time() - own0) / n * 1e6)
            results["direct"].append(rate)
            assert bridge.proc is not None
            cpu0, own0 = cpu_seconds(bridge.proc.pid), time.process_time()
            rate, lat = await http_load(bridge.port, payload, n, args.concurrency)
            results["cpu"].append((cpu_seconds(bridge.proc.pid) - cpu0) / n * 1e6)
            results["loadgen_cpu"].append((time.process_time() - own0) / n * 1e6)
            results["http"].append(rate)
            results["lat"].append(lat)
            if (i + 1) % per_repeat == 0:
                repeats.append(_one_repeat(results, per_repeat))
    return {
        **spread("http_per_s", [r["http_per_s"] for r in repeats], 1),
        **spread("p50_ms", [r["p50_ms"] for r in repeats]),
        **spread("p99_ms", [r["p99_ms"] for r in repeats]),
        "p95_ms": round(percentile([x for lat in results["lat"] for x in lat], 95), 2),
        **spread("direct_client_per_s", [r["direct_client_per_s"] for r in repeats], 1),
        **spread("ratio_http_vs_direct", [r["ratio"] for r in repeats], 3),
        "repeat": args.repeat,
        "bridge_cpu_us_per_request": round(statistics.mean(results["cpu"]), 1),
        "http_loadgen_cpu_us_per_request": round(statistics.mean(results["loadgen_cpu"]), 1),
        "direct_client_cpu_us_per_request": round(statistics.mean(results["client_cpu"]), 1),
        "concurrency": args.concurrency,
        "requests_per_round": n,
        "rounds": args.repeat * per_repeat,
        "http_rounds_per_s": [round(r, 1) for r in results["http"]],
        "direct_rounds_per_s": [round(r, 1) for r in results["direct"]],
        "workers": args.workers,
        "model": "mlp 64-128-10 FP32, JSON OIP, 1 row per request",
        "machine": machine(),
    }


def _one_repeat(results: dict[str, list[Any]], rounds: int) -> dict[str, float]:
    """A repeat's figures: its last ``rounds`` rounds of each side."""
    http, direct = statistics.mean(results["http"][-rounds:]), statistics.mean(results["direct"][-rounds:])
    lat = [x for one in results["lat"][-rounds:] for x in one]
    return {"http_per_s": http, "direct_client_per_s": direct, "ratio": http / direct,
            "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99)}


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    add_repeat(parser)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    emit(run(main(args)))


if __name__ == "__main__":
    cli()
