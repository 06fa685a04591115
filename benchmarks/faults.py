"""Fault benchmark: how long serving stalls when a broker or a worker dies, what is lost, and what a
bridge holds under slow unauthenticated uploads.

    python -m benchmarks.faults [--quick]

Three parts, each on real processes (run from a checkout: it drives ``infra/kafka/cluster.sh``):

- ``broker_kill_recovery_s``: the local 3-node cluster (started when down, stopped again after; RF 3,
  min.insync.replicas 2). Two inference worker processes serve a paced stream of requests from one
  client; the node that leads the client's reply topic (and with it some request partitions) is
  killed with SIGKILL. No reply can reach the client until a surviving replica leads, so the time
  from the kill to the next successful reply is the serving gap. The node is restarted between
  repeats; the median of the repeats is reported (each repeat's figure too).
- ``worker_kill_gap_s``: the single shared broker; two workers under the same paced load, one killed
  with SIGKILL: the longest gap between replies after the kill (its partitions wait for its group
  session to time out; median of the repeats).
- ``requests_lost``: requests of both parts with no successful reply after one retry of the clean
  retriable errors (503/504) they may get; ``requests_duplicated_to_caller``: replies handed to the
  caller twice for one request (after the client's dedupe by request id). Both must be 0.
- ``bridge_rss_mb_under_slow_bodies``: one bridge process (single broker + Redis), 150 connections
  that send a POST's headers (no credentials, ``Content-Length`` ~4 MiB) and then trickle the body;
  the bridge's peak resident memory (VmHWM) while they do (target < 200 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import signal
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aiaas.agents.inference.worker import group_id
from aiaas.client.inference import InferenceClient, InferResult
from aiaas.registry.store import Registry
from aiaas.streams.admin import Admin, drop_prefix, wait_for_broker
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from benchmarks.common import emit, fresh_prefix, machine
from tests import examples
from tests.cluster.control import LocalCluster, leaders, until_in_sync
from tests.spawn import BridgeProcess, WorkerProcess, spawn_workers, until_processes_balanced

MODEL = "faults-mlp"
PARTITIONS = 8
RATE_PER_S = 400.0  # paced load: steady enough that a gap is the fault's, not the load's
MIB = 1024 * 1024


@dataclass
class Stream:
    """What one paced stream got: send and reply times, results, errors, duplicates, the kill time."""

    sent_at: list[float] = field(default_factory=list)  # by request index
    answered_at: dict[int, float] = field(default_factory=dict)  # successful replies
    results: dict[int, InferResult] = field(default_factory=dict)
    errors: dict[int, Exception] = field(default_factory=dict)
    duplicated: int = 0
    killed_at: float = 0.0

    def recovery_s(self) -> float:
        """Kill to the first successful reply to a request sent after it (replies already on their
        way when it died do not count)."""
        after = [t for i, t in self.answered_at.items() if self.sent_at[i] > self.killed_at]
        return (min(after) - self.killed_at) if after else float("inf")

    def max_gap_after_kill_s(self) -> float:
        ok = self.answered_at.values()
        times = sorted([self.killed_at, *(t for t in ok if t > self.killed_at)])
        before = [t for t in ok if t <= self.killed_at]
        if before:
            times.insert(0, max(before))
        return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))


async def paced(xs: np.ndarray, rate: float, sent_at: list[float]) -> AsyncIterator[dict[str, np.ndarray]]:
    """The inputs at ``rate`` per second (a steady load, so a stall shows as a gap); the time each
    one is handed to the client goes to ``sent_at``."""
    due = time.monotonic()
    for x in xs:
        due += 1.0 / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent_at.append(time.monotonic())
        yield {"input": x}


async def stream(client: InferenceClient, n: int, kill_after: int,
                 kill: Callable[[], Awaitable[float]]) -> Stream:
    """``n`` paced requests; ``kill`` runs once ``kill_after`` replies came and returns its time."""
    xs = np.random.default_rng(n).normal(size=(n, 1, 16)).astype(np.float32)
    out = Stream()
    inputs = paced(xs, RATE_PER_S, out.sent_at)
    async for i, r in client.infer_many(MODEL, inputs, binary=True, window=64, timeout=60):
        if i in out.results or i in out.errors:
            out.duplicated += 1
            continue
        if isinstance(r, InferResult):
            out.results[i] = r
            out.answered_at[i] = time.monotonic()
        else:
            out.errors[i] = r
        if not out.killed_at and len(out.results) + len(out.errors) == kill_after:
            out.killed_at = await kill()
    for i in list(out.errors):  # a clean retriable error is the caller's cue to send it again
        err = out.errors[i]
        if getattr(err, "retriable", False):
            try:
                out.results[i] = await client.infer(MODEL, {"input": xs[i]}, binary=True, timeout=30)
                del out.errors[i]
            except Exception as exc:
                out.errors[i] = exc
    return out


def lost(s: Stream, n: int) -> int:
    return n - len(s.results)


async def publish(settings: Settings) -> None:
    async with Registry(settings) as reg:
        await reg.publish(MODEL, examples.mlp([16, 64, 4], seed=7), stage="production")


async def broker_kill(repeats: int, n: int) -> dict[str, Any]:
    cluster = LocalCluster()
    started = await cluster.start()
    prefix = f"bench-faults-{uuid.uuid4().hex[:8]}."
    settings = cluster.settings(topic_prefix=prefix, client_id="bench-faults")
    figures: list[float] = []
    gaps: list[float] = []
    led: list[int] = []
    coordinator: list[bool] = []  # the victim was also the workers' group coordinator
    totals = {"lost": 0, "duplicated": 0, "retried": 0, "dropped_duplicates": 0}
    try:
        await wait_for_broker(settings)
        await until_in_sync(settings)  # every node caught up before one is lost
        await publish(settings)
        env = {"AIAAS_REPLICATION_FACTOR": "3"}  # INFO: the workers log their partitions
        async with spawn_workers(settings, MODEL, 2, env=env) as procs, InferenceClient(settings) as client:
            await until_processes_balanced(procs, PARTITIONS)
            requests = Topics(settings).infer_requests(MODEL).name
            for _ in range(repeats):
                victim = (await leaders(settings, client.reply_topic))[0]
                led.append(sum(1 for node in (await leaders(settings, requests)).values() if node == victim))
                async with Admin(settings) as admin:
                    found = await admin.client.find_coordinator(group_id(settings, MODEL))
                coordinator.append(found == victim)
                s = await stream(client, n, n // 4, functools.partial(cluster.kill, victim))
                figures.append(s.recovery_s())
                gaps.append(s.max_gap_after_kill_s())
                totals["lost"] += lost(s, n)
                totals["duplicated"] += s.duplicated
                await cluster.restart_killed()
                await until_in_sync(settings)
            totals["dropped_duplicates"] = client.duplicates
            assert all(p.proc.returncode is None for p in procs), "a worker died with the broker"
    finally:
        try:
            await cluster.restart_killed()
            await drop_prefix(settings)
        finally:
            if started:
                await cluster.stop()
    return {"recovery": figures, "max_gap": gaps, "victim_led_request_partitions": led,
            "victim_was_group_coordinator": coordinator, **totals}


async def worker_kill(repeats: int, n: int) -> dict[str, Any]:
    settings = Settings(topic_prefix=fresh_prefix("faults"), client_id="bench-faults")
    await wait_for_broker(settings)
    await publish(settings)
    gaps: list[float] = []
    totals = {"lost": 0, "duplicated": 0, "dropped_duplicates": 0}
    async with InferenceClient(settings) as client:
        for _ in range(repeats):
            async with spawn_workers(settings, MODEL, 2) as procs:
                await until_processes_balanced(procs, PARTITIONS)
                s = await stream(client, n, n // 4, functools.partial(_sigkill, procs[0]))
            gaps.append(s.max_gap_after_kill_s())
            totals["lost"] += lost(s, n)
            totals["duplicated"] += s.duplicated
        totals["dropped_duplicates"] = client.duplicates
    return {"gap": gaps, **totals}


async def _sigkill(w: WorkerProcess) -> float:
    w.proc.send_signal(signal.SIGKILL)
    return time.monotonic()


def rss_kb(pid: int, key: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak) of a process, in kB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


async def slow_body(port: int, length: int, send_bytes: int, chunk: int, every_s: float,
                    outcome: dict[str, int]) -> None:
    """One unauthenticated POST: its headers, then ``send_bytes`` of a ``length`` body, slowly."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        outcome["refused"] += 1
        return
    head = (f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()
    try:
        writer.write(head)
        sent = 0
        while sent < send_bytes and not reader.at_eof():
            writer.write(b" " * chunk)
            await writer.drain()
            sent += chunk
            await asyncio.sleep(every_s)
        outcome["closed_by_bridge" if reader.at_eof() else "still_open"] += 1
    except (ConnectionError, OSError):
        outcome["closed_by_bridge"] += 1
    finally:
        writer.close()


async def bridge_slow_bodies(quick: bool, connections: int = 150) -> dict[str, Any]:
    settings = Settings(topic_prefix=fresh_prefix("faults-bridge"), client_id="bench-faults-bridge")
    await wait_for_broker(settings)
    await publish(settings)
    env = {"AIAAS_TOPIC_PREFIX": settings.topic_prefix, "AIAAS_LOG_LEVEL": "WARNING"}
    outcome = {"refused": 0, "closed_by_bridge": 0, "still_open": 0}
    async with BridgeProcess(env) as bridge:
        assert bridge.proc is not None
        pid = bridge.proc.pid
        idle_kb = rss_kb(pid, "VmRSS")
        send = (1 if quick else 2) * MIB  # of a 4 MiB body, 32 KiB every 0.25 s per connection
        peak = 0
        senders = asyncio.gather(*(slow_body(bridge.port, 4 * MIB, send, 32 * 1024, 0.25, outcome)
                                   for _ in range(connections)))
        while not senders.done():
            peak = max(peak, rss_kb(pid, "VmRSS"))
            await asyncio.sleep(0.1)
        await senders
        hwm = rss_kb(pid, "VmHWM")
    return {"peak_rss_mb": max(peak, hwm) / 1024, "idle_rss_mb": idle_kb / 1024,
            "sampled_peak_rss_mb": peak / 1024, "outcome": outcome, "connections": connections,
            "body_bytes_sent_each": send}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    repeats = 1 if args.quick else 3
    n = 2000 if args.quick else 4000
    broker = await broker_kill(repeats, n)
    worker = await worker_kill(repeats, n)
    bridge = await bridge_slow_bodies(args.quick)
    return {
        "broker_kill_recovery_s": round(statistics.median(broker["recovery"]), 3),
        "worker_kill_gap_s": round(statistics.median(worker["gap"]), 3),
        "requests_lost": broker["lost"] + worker["lost"],
        "requests_duplicated_to_caller": broker["duplicated"] + worker["duplicated"],
        "bridge_rss_mb_under_slow_bodies": round(bridge["peak_rss_mb"], 1),
        "broker_kill_recovery_runs_s": [round(x, 3) for x in broker["recovery"]],
        "broker_kill_max_gap_runs_s": [round(x, 3) for x in broker["max_gap"]],
        "broker_kill_victim_led_request_partitions": broker["victim_led_request_partitions"],
        "broker_kill_victim_was_group_coordinator": broker["victim_was_group_coordinator"],
        "worker_kill_gap_runs_s": [round(x, 3) for x in worker["gap"]],
        "duplicate_replies_dropped_by_client": broker["dropped_duplicates"] + worker["dropped_duplicates"],
        "bridge_idle_rss_mb": round(bridge["idle_rss_mb"], 1),
        "bridge_slow_connections": bridge["outcome"],
        "bridge_slow_body_bytes_sent_each": bridge["body_bytes_sent_each"],
        "requests_per_run": n,
        "rate_per_s": RATE_PER_S,
        "repeats": repeats,
        "machine": machine(),
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    emit(run(main(parser.parse_args())))


if __name__ == "__main__":
    cli()
