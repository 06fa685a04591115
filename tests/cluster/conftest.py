"""The cluster tier: the local 3-node KRaft cluster (infra/kafka/cluster.sh, ports 20092-20097),
started for the tier when it is down and stopped again at its end; a node a test kills is
restarted after that test, so every test begins with three in-sync replicas. ``settings`` here point
at the cluster with replication factor 3 (the shared single broker is not used)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import pytest

from aiaas.streams.admin import drop_prefix, wait_for_broker
from aiaas.streams.settings import Settings
from tests.cluster.control import LocalCluster, until_in_sync


@pytest.fixture(scope="package")
def cluster_session() -> Iterator[LocalCluster]:
    """Up for this tier only (three JVMs would burden the other tiers of ``pytest tests``); stopped
    at its end unless it ran before (or AIAAS_KEEP_CLUSTER=1)."""
    cluster = LocalCluster()
    started = asyncio.run(cluster.start())
    yield cluster
    if started and os.environ.get("AIAAS_KEEP_CLUSTER") != "1":
        asyncio.run(cluster.stop())


@pytest.fixture
async def cluster(cluster_session: LocalCluster) -> AsyncIterator[LocalCluster]:
    """The cluster with every node up and every replica in sync (a node an earlier test killed, or a
    whole cluster just started, catches up first); the nodes this test kills are restarted after."""
    await cluster_session.start()
    await until_in_sync(cluster_session.settings())
    yield cluster_session
    await cluster_session.restart_killed()


@pytest.fixture
async def settings(cluster: LocalCluster, prefix: str) -> AsyncIterator[Settings]:
    s = cluster.settings(topic_prefix=prefix, client_id=f"test-{prefix}")
    await wait_for_broker(s)
    yield s
    await drop_prefix(s)
