"""The local 3-node KRaft cluster of ``infra/kafka/cluster.sh`` from Python: start it, kill -9 a node,
restart it, and ask the cluster which node leads a partition (the node to kill).

Node N is broker id N, so a partition's leader id names the node to kill. Used by the cluster fault
tier (tests/cluster) and by ``python -m benchmarks.faults``; both run from a checkout of the repo.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiaas.streams.admin import Admin
from aiaas.streams.settings import Settings
from tests.infra import CLONE_STATE
from tests.spawn import run_to_end

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "infra" / "kafka" / "cluster.sh"
NODES = (1, 2, 3)


class ClusterError(RuntimeError):
    """cluster.sh failed: the message holds its output."""


class LocalCluster:
    """Drive cluster.sh; ``killed`` remembers the nodes killed and not restarted yet."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = {**CLONE_STATE, **os.environ, **(env or {})}  # the clone's state dir unless set
        self.killed: set[int] = set()
        self.bootstrap = ""

    async def _script(self, *args: str, timeout_s: float = 300.0) -> str:
        returncode, out, _ = await run_to_end(str(SCRIPT), *args, timeout_s=timeout_s, merge_stderr=True,
                                              env=self.env, stdin=asyncio.subprocess.DEVNULL)
        text = out.decode(errors="replace")
        if returncode != 0:
            raise ClusterError(f"cluster.sh {' '.join(args)} exited {returncode}: {text[-2000:]}")
        return text

    async def running_nodes(self) -> set[int]:
        status = await self._script("status", timeout_s=60)
        return {n for n in NODES if f"node {n}: running" in status}

    async def start(self) -> bool:
        """Start the nodes that are down and wait until all serve; True when any was down."""
        was_up = await self.running_nodes() == set(NODES)
        await self._script("start")
        self.bootstrap = (await self._script("bootstrap", timeout_s=60)).strip()
        self.killed.clear()
        return not was_up

    async def stop(self) -> None:
        await self._script("stop", timeout_s=120)

    async def kill(self, node: int) -> float:
        """kill -9 node ``node``; returns the monotonic time the process was gone."""
        await self._script("kill", str(node), timeout_s=60)
        self.killed.add(node)
        return time.monotonic()

    async def restart(self, node: int) -> None:
        await self._script("restart", str(node))
        self.killed.discard(node)

    async def restart_killed(self) -> None:
        for node in sorted(self.killed):
            await self.restart(node)

    def settings(self, **over: Any) -> Settings:
        """Settings for this cluster: all three bootstrap servers; topics take the brokers' own
        replication factor (3), as a user's settings would without AIAAS_REPLICATION_FACTOR."""
        return Settings(bootstrap_servers=self.bootstrap, **over)


async def leaders(settings: Settings, topic: str) -> dict[int, int]:
    """partition -> leader node of ``topic`` as the cluster's metadata says now."""
    async with Admin(settings) as admin:
        (meta,) = await admin.client.describe_topics([topic])
    return {int(p["partition"]): int(p["leader"]) for p in meta["partitions"]}


async def replication(settings: Settings, topic: str) -> list[tuple[int, int]]:
    """(replicas, in-sync replicas) per partition of ``topic``."""
    async with Admin(settings) as admin:
        (meta,) = await admin.client.describe_topics([topic])
    return [(len(p["replicas"]), len(p["isr"])) for p in meta["partitions"]]


async def until_in_sync(settings: Settings, topics: list[str] | None = None,
                        timeout_s: float = 120.0) -> None:
    """Wait until every partition of ``topics`` (default: every topic there is) has all its replicas
    in sync: a node that was restarted (or the whole cluster) takes seconds to tens of seconds to
    catch up, and losing another node before that leaves fewer than min.insync.replicas copies."""
    deadline = time.monotonic() + timeout_s
    async with Admin(settings) as admin:
        while True:
            names = topics if topics is not None else sorted(await admin.list_topics())
            lagging = [(t["topic"], p["partition"]) for t in await admin.client.describe_topics(names)
                       for p in t["partitions"] if len(p["isr"]) < len(p["replicas"])]
            if not lagging:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"replicas still out of sync after {timeout_s:.0f} s: {lagging[:10]}")
            await asyncio.sleep(0.2)


def busiest(leads: Mapping[Any, int], prefer: int | None = None) -> int:
    """The node leading the most partitions (``prefer`` wins a tie): the worst node to lose."""
    counts = Counter(leads.values())
    top = max(counts.values())
    tied = sorted(n for n, c in counts.items() if c == top)
    return prefer if prefer in tied else tied[0]
