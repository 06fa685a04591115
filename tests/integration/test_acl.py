"""Access control on a real broker: an ACL-enabled broker of our own (``sasl-broker.sh start --acl``:
StandardAuthorizer, no ACL means no access; the session's ``acl_broker``, tests/integration/conftest.py)
with the users and ACLs ``aiaas acl apply`` makes.

A tenant cannot read another tenant's replies nor training data, nor call a model it was not
allowed; a trainer cannot write parameters; each refusal is one ``Forbidden`` line naming the
principal and the topic, raised at once (no retry loop, no hang). An inference worker and a client
under their own users serve a request end to end.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from aiaas.client.inference import InferenceClient
from aiaas.registry.store import Registry
from aiaas.schemas.errors import Forbidden, NotFound
from aiaas.streams import acls
from aiaas.streams.admin import Admin, ensure, wait_for_broker
from aiaas.streams.consumer import Consumer
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests import examples
from tests.infra import SecuredBroker
from tests.workers import running_worker

ROOT = Path(__file__).resolve().parents[2]
JOB, MODEL, OTHER = "j", "allowed", "notallowed"


def _admin(broker: SecuredBroker, prefix: str) -> Settings:
    return Settings(bootstrap_servers=f"127.0.0.1:{broker.port}", topic_prefix=prefix,
                    client_id=f"acl-{prefix}", request_timeout_ms=10000, security_protocol="SASL_PLAINTEXT",
                    sasl_mechanism="SCRAM-SHA-256", sasl_username=broker.admin, sasl_password=broker.password,
                    state_dir=broker.state)


def _as(admin: Settings, user: str) -> Settings:
    """The settings a process of ``user`` loads from its credentials file (what acl apply wrote)."""
    path = acls.Credentials(admin).path(user)
    env = dict(line.split("=", 1) for line in path.read_text().splitlines())
    assert env["AIAAS_SASL_USERNAME"] == user
    update = {"sasl_username": user, "sasl_password": env["AIAAS_SASL_PASSWORD"], "connect_deadline_s": 10.0}
    if "AIAAS_CLIENT_ID" in env:
        update["client_id"] = env["AIAAS_CLIENT_ID"]
    return Settings(**{**admin.model_dump(), **update})


@pytest.fixture
async def applied(acl_broker: SecuredBroker, prefix: str) -> Settings:
    """Topics made by the admin, then ``aiaas acl apply`` run as a command (tenants a and b)."""
    admin = _admin(acl_broker, prefix)
    await wait_for_broker(admin, timeout_s=60)
    t = Topics(admin)
    await ensure(admin, [t.train_data(JOB), t.train_params(JOB), t.train_grads(JOB),
                         t.infer_requests(MODEL, 1), t.infer_requests(OTHER, 1), *t.control_plane()])
    env = {**os.environ, **admin.to_env(), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "aiaas.cli.main", "acl", "apply", "--tenant", f"a={MODEL}", "--tenant",
           f"b={MODEL}", "--job", JOB]
    done = await asyncio.to_thread(subprocess.run, cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "tenant-a: " in done.stdout and "aiaas-trainer: " in done.stdout
    return admin


def _refused(info: pytest.ExceptionInfo[Forbidden], user: str, topic: str) -> None:
    text = str(info.value)
    assert f"User:{user}" in text and topic in text and "\n" not in text
    assert info.value.details["principal"] == f"User:{user}" and info.value.details["resource"] == topic


async def test_tenant_cannot_read_other_tenants_replies_nor_training(applied: Settings) -> None:
    t = Topics(applied)
    b = _as(applied, "tenant-b")
    async with InferenceClient(b) as client_b:  # b's own reply topic exists and is b's
        b_replies = client_b.reply_topic
    assert b_replies.startswith(applied.topic("replies.b-"))
    a = _as(applied, "tenant-a")
    async with asyncio.timeout(30):  # refused at once, never a retry loop until a deadline
        with pytest.raises(Forbidden) as info:
            async with InferenceClient(a, client_id=b_replies.removeprefix(applied.topic("replies."))):
                pass
        _refused(info, "tenant-a", b_replies)
        for topic in (b_replies, t.train_data(JOB).name):
            with pytest.raises(Forbidden) as info:
                async with Consumer(a, [topic], "a-reader") as cons:
                    while True:
                        await cons.getmany(timeout_ms=500)
            _refused(info, "tenant-a", topic)


async def test_tenant_calls_only_its_models(applied: Settings) -> None:
    a = _as(applied, "tenant-a")
    t = Topics(applied)
    async with Producer(a) as prod:
        await prod.send_and_wait(t.infer_requests(MODEL, 1).name, b"allowed")
        with pytest.raises(Forbidden) as info:
            await prod.send_and_wait(t.infer_requests(OTHER, 1).name, b"not allowed")
    _refused(info, "tenant-a", t.infer_requests(OTHER, 1).name)
    # through the client: a model it may not call looks like one that does not exist (its request
    # topic is not even visible), answered at once; nothing says what other tenants' models are
    async with asyncio.timeout(20), InferenceClient(a) as client:
        with pytest.raises(NotFound):
            await client.infer(OTHER, {"input": np.ones((1, 4), dtype=np.float32)}, timeout=15)


async def test_trainer_cannot_write_parameters(applied: Settings) -> None:
    t = Topics(applied)
    trainer = _as(applied, "aiaas-trainer")
    async with Producer(trainer) as prod:
        meta = await prod.send_and_wait(t.train_grads(JOB).name, b"gradient")
        assert meta.offset == 0
        with pytest.raises(Forbidden) as info:
            await prod.send_and_wait(t.train_params(JOB).name, b"forged parameters")
    _refused(info, "aiaas-trainer", t.train_params(JOB).name)
    with pytest.raises(Forbidden):  # nor the registry: only the aggregator and the admin write it
        async with Producer(trainer) as prod:
            await prod.send_and_wait(t.models().name, b"forged model")


async def test_worker_and_client_under_their_users_serve_a_request(applied: Settings) -> None:
    async with Registry(applied) as reg:  # the admin (the CLI) registers the model
        await reg.publish(MODEL, examples.mlp([4, 2]), stage="production")
    worker = _as(applied, "aiaas-inference")
    tenant = _as(applied, "tenant-a")
    x = np.ones((1, 4), dtype=np.float32)
    async with running_worker(worker, model=MODEL), InferenceClient(tenant) as client:
        assert client.reply_topic.startswith(applied.topic("replies.a-"))
        result = await client.infer(MODEL, {"input": x}, timeout=60)
    assert result.model_version == "1" and result.outputs["logits"].shape == (1, 2)


async def test_acl_list_shows_the_least_privilege_grants(applied: Settings) -> None:
    from aiaas.streams.admin import Admin

    async with Admin(applied) as admin:
        found = await acls.AclAdmin(admin).list()
    t = Topics(applied)
    mine = [g for g in found if g.name.startswith(applied.topic_prefix)]
    params_writers = {g.principal for g in mine if g.operation == "WRITE" and
                      (g.name == t.train_params(JOB).name or (g.pattern == "PREFIXED" and
                                                              t.train_params(JOB).name.startswith(g.name)))}
    assert params_writers == {"User:aiaas-aggregator"}
    registry_writers = {g.principal for g in mine if g.operation == "WRITE" and g.name == t.models().name}
    assert registry_writers == {"User:aiaas-aggregator"}


async def test_training_job_under_trainer_and_aggregator_users(applied: Settings) -> None:
    """A small sync job: the admin submits it and pushes its data, the aggregator and two trainers
    run under their own users (the trainers' write ACLs are per job: acl apply --job)."""
    from aiaas.agents.aggregator.server import Aggregator
    from aiaas.agents.trainer.settings import TrainerSettings
    from aiaas.agents.trainer.worker import Trainer
    from aiaas.data.datapush import push
    from aiaas.schemas.jobs import JobSpec
    from aiaas.streams.admin import Admin
    from aiaas.streams.jobs import submit

    spec = JobSpec.model_validate({
        "job_id": "digits-acl", "model": {"input_dim": 64, "hidden": [32], "output_dim": 10},
        "optimizer": {"name": "adam", "lr": 3e-3}, "batch_size": 64, "epochs": 10, "eval_interval": 5,
        "sync": {"mode": "sync", "straggler_deadline_ms": 1000},
        "target": {"metric": "test_accuracy", "value": 0.85},
        "data": {"source": "digits", "partitions": 2, "strategy": "random"},
    })
    async with Admin(applied) as admin:
        await acls.AclAdmin(admin).apply(acls.plan(applied, jobs=[spec.job_id], roles=["trainer"]),
                                         acls.Credentials(applied))
    await submit(applied, spec)
    await push(applied, spec)
    agg = Aggregator(_as(applied, "aiaas-aggregator"), spec)
    trainer = _as(applied, "aiaas-trainer")
    workers = [Trainer(trainer, spec, TrainerSettings(worker_id=f"{spec.job_id}-p{i}")) for i in range(2)]
    try:
        await asyncio.gather(agg.start(), *(w.start() for w in workers))
        runs = [asyncio.create_task(w.run()) for w in workers]
        async with asyncio.timeout(150):
            status = await agg.run()
            await asyncio.gather(*runs, return_exceptions=True)
    finally:
        await asyncio.gather(agg.stop(), *(w.stop() for w in workers), return_exceptions=True)
    assert status.state == "succeeded", status.error
    assert status.metrics["test_accuracy"] >= 0.85


async def test_bridge_under_its_user_serves_an_http_call(applied: Settings, infra: None) -> None:
    """The bridge (its own user; the shared Redis for keys) and a worker (its user): one HTTP call."""
    import httpx

    from aiaas.agents.bridge.app import create_app
    from aiaas.agents.bridge.settings import BridgeSettings
    from tests.integration.test_bridge import BODY, serve

    async with Registry(applied) as reg:
        await reg.publish(MODEL, examples.mlp([4, 2]), stage="production")
    app = create_app(_as(applied, "aiaas-bridge"), BridgeSettings(instance=uuid.uuid4().hex[:8]))
    async with running_worker(_as(applied, "aiaas-inference"), model=MODEL), serve(app) as url, \
            httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as http:
        key, _, _ = await app.state.bridge.keys.create("acme")
        resp = await http.post(f"/v2/models/{MODEL}/infer", json=BODY, headers={"X-API-Key": key})
    assert resp.status_code == 200, resp.text
    assert resp.json()["outputs"][0]["shape"] == [2, 2]


async def test_stream_scoring_under_its_user_exactly_once(applied: Settings) -> None:
    """A scoring worker (exactly once: transactions) under the scoring user, granted one IN:OUT pair."""
    import json

    from aiaas.schemas.sources import Source
    from aiaas.streams.admin import Admin
    from tests.integration.test_scoring import FEATURES, good, scoring
    from tests.scoredreads import make_topic, produce, read_committed

    src, out = applied.topic("events"), applied.topic("scored")
    await make_topic(applied, src, 1)
    records = [(f"k{i}".encode(), json.dumps(good(i)).encode()) for i in range(5)]
    await produce(applied, src, records, partitions=1)
    async with Registry(applied) as reg:
        await reg.publish("scorer", examples.mlp([3, 2]), stage="production")
    async with Admin(applied) as admin:
        await acls.AclAdmin(admin).apply(acls.plan(applied, score=[(src, out)], roles=["scoring"]),
                                         acls.Credentials(applied))
    source = Source(topic=src, format="json", features=FEATURES, passthrough=["id"])
    scorer = _as(applied, "aiaas-scoring")
    async with scoring(scorer, source, model="scorer", to_topic=out, exactly_once=True):
        preds = await read_committed(applied, out, until=lambda n: n >= 5, timeout_s=30)
    assert sorted(p.value["id"] for p in preds) == [f"r{i}" for i in range(5)]


async def test_apply_on_a_broker_without_authorizer_says_so(settings: Settings, tmp_path: Path) -> None:
    """The shared broker runs no authorizer: apply refuses in one line and makes no user nor file."""
    from aiaas.schemas.errors import AiaasError
    from aiaas.streams.admin import Admin

    s = settings.model_copy(update={"state_dir": tmp_path})
    async with Admin(s) as admin:
        with pytest.raises(AiaasError) as info:
            await acls.AclAdmin(admin).apply(acls.plan(s, tenants={"x": ["m"]}), acls.Credentials(s))
    assert "no authorizer" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "credentials").exists()


async def test_an_autoscaler_user_without_the_grant_scales_without_its_chart(
    applied: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Writing the forecast chart's looks (scaling.<model>) is refused to a tenant: the publisher
    says so once and the scaler would go on; nothing is raised, nothing is written."""
    import logging

    from aiaas.agents.autoscaler.samples import SamplePublisher
    from aiaas.schemas.records import ScalingSample

    publisher = SamplePublisher(_as(applied, "tenant-a"), MODEL)
    with caplog.at_level(logging.WARNING, logger="aiaas.agents.autoscaler.samples"):
        await publisher.start()
        await publisher.publish(ScalingSample(model=MODEL, policy="reactive", ts=0.0, arrival_rate=1.0,
                                              forecast_rate=0.0, horizon_s=0.0, lag=0, replicas=1))
        await publisher.stop()
    assert "no forecast chart" in caplog.text and "tenant-a" in caplog.text
    async with Admin(applied) as admin:
        assert Topics(applied).scaling(MODEL).name not in await admin.list_topics()
