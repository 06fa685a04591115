"""Kafka goes away under a running bridge: readiness says so, infer calls fail fast, both recover.

The bridge runs against a broker of its own (free ports, a temporary state dir, started with
infra/kafka/start.sh; the shared broker is never touched) and the shared Redis. The broker is
SIGKILLed: within a few probe periods /v2/health/ready is 503, a sync infer call is a 503 with
Retry-After at once (it waited its whole 30 s timeout for a 504 before; a call already waiting
when the broker died gets the 503 from the probe that notices), and a model name the
bridge has not seen is a quick 503 (it was a 500 KafkaTimeoutError after 30 s). The broker is
started again on the same ports and state: readiness returns and an unknown name is a quick 404.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from aiaas.agents.bridge.app import create_app
from aiaas.agents.bridge.core import Bridge
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.registry.store import Registry
from aiaas.streams.admin import wait_for_broker
from aiaas.streams.settings import Settings
from tests import examples
from tests.infra import ROOT, TEST_BROKER_JVM, alive, distinct_free_ports
from tests.integration.test_bridge import BODY, serve

MODEL = "mlp"


@dataclass
class OwnBroker:
    port: int
    env: dict[str, str]
    state: Path

    def start(self) -> None:
        done = subprocess.run([str(ROOT / "infra" / "kafka" / "start.sh")], env=self.env, capture_output=True,
                              text=True, timeout=180)
        assert done.returncode == 0, f"broker did not start:\n{done.stdout}\n{done.stderr}"

    def kill(self) -> None:
        """SIGKILL the broker this test started (by its pid file only) and wait until it is gone."""
        pid_file = self.state / "kafka.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text())
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and alive(pid):  # a zombie counts as gone
            time.sleep(0.05)  # polling the exit of the process, not synchronising on time


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[OwnBroker]:
    kafka, controller = distinct_free_ports(2)
    env = {
        **os.environ, "AIAAS_STATE_DIR": str(tmp_path), "AIAAS_KAFKA_PORT": str(kafka),
        "AIAAS_KAFKA_CONTROLLER_PORT": str(controller), "AIAAS_KAFKA_HEAP": TEST_BROKER_JVM,
        # a fresh cluster id from here saves start.sh one JVM start (StorageTool random-uuid)
        "AIAAS_KAFKA_CLUSTER_ID": base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode(),
    }
    broker = OwnBroker(int(env["AIAAS_KAFKA_PORT"]), env, tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@pytest.fixture
async def bridge_on(
    own_broker: OwnBroker, prefix: str, infra: None
) -> AsyncIterator[tuple[Bridge, str, str]]:
    """A bridge app on real HTTP using ``own_broker`` and the shared Redis; yields it, its URL, a key."""
    settings = Settings(bootstrap_servers=f"127.0.0.1:{own_broker.port}", topic_prefix=prefix,
                        client_id=f"test-{prefix}")
    await wait_for_broker(settings)
    async with Registry(settings) as reg:
        await reg.publish(MODEL, examples.mlp([4, 3], seed=1), stage="production")
    app = create_app(settings, BridgeSettings(instance=uuid.uuid4().hex[:8], health_probe_s=0.2,
                                              health_timeout_s=1.0))
    bridge: Bridge = app.state.bridge
    async with serve(app) as url:
        key, _, _ = await bridge.keys.create("acme")
        yield bridge, url, key


async def ready_is(http: httpx.AsyncClient, status: int, timeout_s: float) -> dict[str, bool]:
    async with asyncio.timeout(timeout_s):
        while True:
            resp = await http.get("/v2/health/ready")
            if resp.status_code == status:
                return dict(resp.json())
            await asyncio.sleep(0.1)  # polling readiness, the condition under test


async def timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    resp = await call
    return resp, time.monotonic() - t0


@pytest.mark.timeout(300)
async def test_kafka_down_makes_readiness_503_and_infer_fail_fast_then_both_recover(
    own_broker: OwnBroker, bridge_on: tuple[Bridge, str, str]
) -> None:
    bridge, url, key = bridge_on
    auth = {"X-API-Key": key}
    async with httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as http:
        assert await ready_is(http, 200, 10) == {"ready": True, "kafka": True, "redis": True}
        # up: the call goes to Kafka and waits for a reply (no worker runs): the timeout it asked for
        resp, took = await timed(http.post(f"/v2/models/{MODEL}/infer", json=BODY, headers=auth,
                                           params={"timeout": 0.5}))
        assert resp.status_code == 504 and took >= 0.5, resp.text

        # a call waiting for its reply (30 s allowed) when the broker dies ends with the 503 too
        waiting = asyncio.ensure_future(timed(http.post(f"/v2/models/{MODEL}/infer", json=BODY, headers=auth,
                                                        params={"timeout": 30})))
        async with asyncio.timeout(10):
            while True:
                if bridge.client.in_flight:
                    break
                await asyncio.sleep(0.02)  # polling the bridge's count of waiting calls
        own_broker.kill()
        body = await ready_is(http, 503, 15)
        resp, took = await waiting
        assert resp.status_code == 503 and took < 15, (resp.text, took)
        assert "while the call waited" in resp.json()["error"] and int(resp.headers["retry-after"]) >= 1
        assert body == {"ready": False, "kafka": False, "redis": True}
        resp, took = await timed(http.post(f"/v2/models/{MODEL}/infer", json=BODY, headers=auth))
        assert resp.status_code == 503 and took < 2, (resp.text, took)
        assert resp.json()["code"] == "unavailable" and "kafka" in resp.json()["error"]
        assert int(resp.headers["retry-after"]) >= 1
        resp, took = await timed(http.post("/v2/models/never-seen/infer", json=BODY, headers=auth))
        assert resp.status_code == 503 and took < 2, (resp.text, took)
        resp, took = await timed(http.get("/v2/models/never-seen", headers=auth))
        assert resp.status_code == 503 and took < 2, (resp.text, took)
        # a model the bridge knows is still described (the registry is read, not asked)
        assert (await http.get(f"/v2/models/{MODEL}", headers=auth)).status_code == 200

        own_broker.start()
        assert await ready_is(http, 200, 90) == {"ready": True, "kafka": True, "redis": True}
        resp, took = await timed(http.post("/v2/models/never-seen/infer", json=BODY, headers=auth))
        assert resp.status_code == 404 and took < 5, (resp.text, took)
