"""Failover gap: SIGKILL one of two inference worker processes under load; how long no reply comes.

    python -m benchmarks.inference_failover [--session-ms 6000] [--heartbeat-ms 1000] [--runs 3]
        [--static]    # workers with instance ids; the killed one is restarted at once under its id

A pipelined client keeps ``--window`` requests in flight on a small MLP; ``--warmup-s`` after the
workers share the partitions, worker 0 gets SIGKILL. The dead worker's partitions wait until its
session times out and the group rebalances, and the client's window soon holds only their
requests, so replies stop altogether. Reported per run: ``gap_s``, the longest time after the kill
without any reply; ``max_latency_s`` of a request; ``lost`` (never answered: must be 0);
``duplicates`` (answered twice: the client drops them); ``survivor_rebalances`` (times the other
worker's partitions were taken and handed out again after the kill). The workers get the session settings as
``AIAAS_INFER_SESSION_TIMEOUT_MS`` / ``AIAAS_INFER_HEARTBEAT_INTERVAL_MS``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from aiaas.client.inference import InferenceClient, InferResult
from aiaas.registry.store import Registry
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from benchmarks.common import emit, fresh_prefix, machine, median
from tests import examples
from tests.spawn import spawn_workers, until_processes_balanced


async def one_run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    env = {"AIAAS_INFER_SESSION_TIMEOUT_MS": str(args.session_ms),
           "AIAAS_INFER_HEARTBEAT_INTERVAL_MS": str(args.heartbeat_ms)}
    x = np.random.default_rng(0).normal(size=(1, 16)).astype(np.float32)
    stop = asyncio.Event()
    sent: list[float] = []
    arrived: list[tuple[float, float]] = []  # (arrival, latency)

    async def requests() -> AsyncIterator[dict[str, np.ndarray]]:
        while not stop.is_set():
            sent.append(time.monotonic())
            yield {"input": x}

    def worker(k: int) -> Any:
        return spawn_workers(settings, "fo", 1, env={**env, "AIAAS_INFER_INSTANCE_ID": f"fo-w{k}"}
                             if args.static else env)

    async with contextlib.AsyncExitStack() as stack:
        procs = [*(await stack.enter_async_context(worker(0))), *(await stack.enter_async_context(worker(1)))]
        client = await stack.enter_async_context(InferenceClient(settings))
        await until_processes_balanced(procs, 8)
        started = time.monotonic()
        killed = 0.0
        assigned = ok = 0
        restarted: list[float] = []  # seconds from the kill to the restarted worker's assignment
        async for i, r in client.infer_many("fo", requests(), window=args.window, timeout=120, binary=True):
            now = time.monotonic()
            arrived.append((now, now - sent[i]))
            ok += isinstance(r, InferResult)
            if not killed and now - started >= args.warmup_s:
                procs[0].proc.send_signal(signal.SIGKILL)
                killed, assigned = time.monotonic(), procs[1].assignments
                if args.static:  # a restart under the same id: it takes the partitions back
                    [again] = await stack.enter_async_context(worker(0))
                    back = asyncio.ensure_future(again.changed.wait())
                    back.add_done_callback(lambda _, t0=killed: restarted.append(time.monotonic() - t0))
            if killed and now - killed >= args.after_s:
                stop.set()
        survivor_partitions, rebalances = procs[1].partitions, procs[1].assignments - assigned
        duplicates = client.duplicates
    after = [killed] + [t for t, _ in arrived if t >= killed]
    gap = max(b - a for a, b in itertools.pairwise(after))
    return {"gap_s": round(gap, 2), "max_latency_s": round(max(lat for _, lat in arrived), 2),
            "requests": len(sent), "answered_ok": ok, "lost": len(sent) - len(arrived),
            "duplicates": duplicates, "survivor_partitions": survivor_partitions,
            "survivor_rebalances": rebalances,
            "restart_assigned_s": round(restarted[0], 2) if restarted else None}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(topic_prefix=fresh_prefix("failover"))
    async with Registry(settings) as reg:
        await reg.publish("fo", examples.mlp([16, 64, 4], seed=1), stage="production")
    runs = []
    for k in range(args.runs):
        runs.append(await one_run(settings, args))
        print(f"run {k + 1}: {runs[-1]}", file=sys.stderr, flush=True)
    return {"benchmark": "inference_failover", "machine": machine(), "static": args.static,
            "session_timeout_ms": args.session_ms,
            "heartbeat_interval_ms": args.heartbeat_ms, "window": args.window,
            "gap_s_median": median([r["gap_s"] for r in runs]), "gap_s_max": max(r["gap_s"] for r in runs),
            "lost": sum(r["lost"] for r in runs), "runs": runs}


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--session-ms", type=int, default=6000, help="the workers' session timeout")
    p.add_argument("--heartbeat-ms", type=int, default=1000, help="the workers' heartbeat interval")
    p.add_argument("--window", type=int, default=200, help="requests in flight")
    p.add_argument("--warmup-s", type=float, default=3.0, help="load before the kill")
    p.add_argument("--after-s", type=float, default=12.0, help="load after the kill (> session timeout)")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--static", action="store_true", help="static membership; restart the killed worker")
    emit(run(main(p.parse_args())))


if __name__ == "__main__":
    cli()
