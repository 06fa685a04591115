"""The cold tier: a Kafka broker formatted for each test (fresh state dir, no ``__consumer_offsets``
yet), started and stopped with the project's own ``infra/kafka`` scripts beside any other broker
(a start takes about 3 s).

Ports: ``AIAAS_COLD_KAFKA_PORT`` / ``AIAAS_COLD_KAFKA_CONTROLLER_PORT`` when set, else two free
ones; the state dir is ``.run/cold-<random>`` and is removed afterwards. Skipped with
``AIAAS_EXTERNAL_INFRA=1`` (the local scripts are not what the tests run against then).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiaas.streams.settings import Settings
from tests.infra import ROOT, TEST_BROKER_JVM, cluster_id, distinct_free_ports

KAFKA = ROOT / "infra" / "kafka"


class ColdBroker:
    """A broker of its own: ``settings`` reach it with the default topic prefix (as a user has
    it), ``env`` gives the same to child processes; ``start``/``stop`` run the infra scripts."""

    def __init__(self) -> None:
        picked = distinct_free_ports(2)
        port = int(os.environ.get("AIAAS_COLD_KAFKA_PORT") or picked[0])
        controller = int(os.environ.get("AIAAS_COLD_KAFKA_CONTROLLER_PORT") or picked[1])
        self.state_dir: Path = ROOT / ".run" / f"cold-{uuid.uuid4().hex[:10]}"
        self._infra_env = {**os.environ, "AIAAS_KAFKA_PORT": str(port),
                           "AIAAS_KAFKA_CONTROLLER_PORT": str(controller),
                           "AIAAS_STATE_DIR": str(self.state_dir), "AIAAS_KAFKA_HEAP": TEST_BROKER_JVM,
                           "AIAAS_KAFKA_CLUSTER_ID": cluster_id()}  # saves start.sh a JVM (random-uuid)
        self.settings = Settings(bootstrap_servers=f"127.0.0.1:{port}", topic_prefix="aiaas.")
        self.env = {"AIAAS_BOOTSTRAP_SERVERS": self.settings.bootstrap_servers,
                    "AIAAS_TOPIC_PREFIX": self.settings.topic_prefix}

    def start(self) -> None:
        """Format the state dir and start the broker (returns once it accepts connections)."""
        done = subprocess.run([str(KAFKA / "start.sh")], env=self._infra_env, capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 0, f"cold broker did not start: {done.stdout}{done.stderr}"

    async def start_async(self) -> None:
        await asyncio.to_thread(self.start)

    def remove(self) -> None:
        """Stop the broker (if it runs) and delete its state."""
        subprocess.run([str(KAFKA / "stop.sh")], env=self._infra_env, capture_output=True, timeout=120)
        shutil.rmtree(self.state_dir, ignore_errors=True)


@pytest.fixture
def cold_broker_down() -> Iterator[ColdBroker]:
    """A broker not started yet (the test starts it), removed afterwards."""
    if os.environ.get("AIAAS_EXTERNAL_INFRA") == "1":
        pytest.skip("AIAAS_EXTERNAL_INFRA=1: the tests run against a cluster started elsewhere")
    broker = ColdBroker()
    try:
        yield broker
    finally:
        broker.remove()


@pytest.fixture
def cold_broker(cold_broker_down: ColdBroker) -> ColdBroker:
    """A freshly formatted single-node KRaft broker, up for one test."""
    cold_broker_down.start()
    return cold_broker_down
