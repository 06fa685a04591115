"""The cold tier: a Kafka broker formatted for each test (fresh state dir, no ``__consumer_offsets``
yet), started and stopped with the project's own ``infra/kafka`` scripts beside any other broker
(a start takes about 3 s).

Ports: ``AIAAS_COLD_KAFKA_PORT`` / ``AIAAS_COLD_KAFKA_CONTROLLER_PORT`` when set, else two free
ones; the state dir is ``.run/cold-<random>`` and is removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streams.settings import Settings
from tests.infra import ROOT

KAFKA = ROOT / "infra" / "kafka"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ColdBroker:
    settings: Settings  # bootstrap of the fresh broker, the default topic prefix (as a user has it)
    env: dict[str, str]  # AIAAS_* of the fresh broker for child processes
    state_dir: Path


@pytest.fixture
def cold_broker() -> Iterator[ColdBroker]:
    """A freshly formatted single-node KRaft broker, up for one test."""
    port = int(os.environ.get("AIAAS_COLD_KAFKA_PORT") or _free_port())
    controller = int(os.environ.get("AIAAS_COLD_KAFKA_CONTROLLER_PORT") or _free_port())
    state = ROOT / ".run" / f"cold-{uuid.uuid4().hex[:10]}"
    infra_env = {**os.environ, "AIAAS_KAFKA_PORT": str(port),
                 "AIAAS_KAFKA_CONTROLLER_PORT": str(controller), "AIAAS_STATE_DIR": str(state)}
    started = subprocess.run([str(KAFKA / "start.sh")], env=infra_env, capture_output=True, text=True,
                             timeout=180)
    try:
        assert started.returncode == 0, f"cold broker did not start: {started.stdout}{started.stderr}"
        settings = Settings(bootstrap_servers=f"127.0.0.1:{port}", topic_prefix="aiaas.")
        yield ColdBroker(settings, {"AIAAS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                                    "AIAAS_TOPIC_PREFIX": settings.topic_prefix}, state)
    finally:
        subprocess.run([str(KAFKA / "stop.sh")], env=infra_env, capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)
