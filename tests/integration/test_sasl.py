"""Secured Kafka: a second broker with a SASL_PLAINTEXT/SCRAM-SHA-256 listener (the shared broker is
left alone). An authenticated client produces and consumes; unauthenticated and wrong-password
clients are refused; faust's credentials from ``aiaas.streams.faust_app`` authenticate too.

The broker is the session's secured one (``acl_broker``, tests/integration/conftest.py, shared with
test_acl): access control is on there, and these tests log in as its admin, a super user."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from aiaas.client.inference import InferenceClient
from aiaas.registry.store import Registry
from aiaas.schemas.errors import KafkaUnavailable
from aiaas.streams import faust_app
from aiaas.streams.admin import Admin, wait_for_broker
from aiaas.streams.consumer import Consumer
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics, TopicSpec
from tests import examples
from tests.infra import SecuredBroker
from tests.workers import running_worker


def _settings(port: int, prefix: str, **security: object) -> Settings:
    return Settings(
        bootstrap_servers=f"127.0.0.1:{port}", topic_prefix=prefix, client_id=f"sasl-{prefix}",
        request_timeout_ms=5000, **security,
    )


def _scram(broker: SecuredBroker, prefix: str, password: str | None = None, **more: object) -> Settings:
    return _settings(broker.port, prefix, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                     sasl_username=broker.admin, sasl_password=password or broker.password, **more)


async def test_authenticated_client_produces_and_consumes(acl_broker: SecuredBroker, prefix: str) -> None:
    s = _scram(acl_broker, prefix)
    await wait_for_broker(s, timeout_s=60)
    topic = s.topic("secured")
    async with Admin(s) as admin:
        await admin.ensure_topics([TopicSpec(name=topic, partitions=2)])
    async with Producer(s) as prod:
        for i in range(5):
            await prod.send_and_wait(topic, f"m{i}".encode(), key=str(i))
    got: list[bytes] = []
    async with Consumer(s, [topic], "secured-group") as cons:
        async with asyncio.timeout(30):
            while len(got) < 5:
                recs = await cons.getmany(timeout_ms=200)
                got += [r.value for r in recs if r.value is not None]
                await cons.commit(recs)
    assert sorted(got) == [f"m{i}".encode() for i in range(5)]


async def test_unauthenticated_client_is_refused(acl_broker: SecuredBroker, prefix: str) -> None:
    s = _settings(acl_broker.port, prefix, connect_deadline_s=2)  # PLAINTEXT against the SASL listener
    prod = Producer(s)
    with pytest.raises(KafkaUnavailable) as info:
        await prod.start()
    assert isinstance(info.value.__cause__, KafkaConnectionError)


async def test_wrong_password_is_refused(
    acl_broker: SecuredBroker, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    await wait_for_broker(_scram(acl_broker, prefix), timeout_s=60)
    prod = Producer(_scram(acl_broker, prefix, password="not-the-password", connect_deadline_s=2))
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaUnavailable) as info:
        await prod.start()
    assert "SaslAuthenticationFailed" in caplog.text
    assert "\n" not in str(info.value) and "credentials" in str(info.value)  # one line, says what to check


async def test_faust_credentials_authenticate(acl_broker: SecuredBroker, prefix: str) -> None:
    """What faust's aiokafka driver builds from our credentials reaches the SASL listener."""
    s = _scram(acl_broker, prefix)
    cfg = faust_app.app_config(s)
    auth = credentials_to_aiokafka_auth(cfg["broker_credentials"])
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["sasl_mechanism"] == "SCRAM-SHA-256"
    topic = s.topic("faust")
    async with Admin(s) as admin:
        await admin.ensure_topics([TopicSpec(name=topic)])
    servers = [u.removeprefix("kafka://") for u in cfg["broker"]]
    prod = AIOKafkaProducer(bootstrap_servers=servers, **auth)
    await prod.start()
    try:
        meta = await prod.send_and_wait(topic, b"from-faust-credentials")
        assert meta.offset == 0
    finally:
        await prod.stop()


async def test_registry_worker_and_client_over_scram(acl_broker: SecuredBroker, prefix: str) -> None:
    """The agents take security from Settings: a model served and called end to end over SCRAM."""
    s = _scram(acl_broker, prefix)
    model = "secure"
    async with Admin(s) as admin:
        await admin.ensure_topics([Topics(s).infer_requests(model, 1)])
    async with Registry(s) as reg:
        await reg.publish(model, examples.mlp([4, 2]), stage="production")
    x = np.ones((1, 4), dtype=np.float32)
    async with running_worker(s, model=model), InferenceClient(s) as client:
        result = await client.infer(model, {"input": x}, timeout=60)
    assert result.model_version == "1" and result.outputs["logits"].shape == (1, 2)
