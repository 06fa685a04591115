"""The access-control policy (``aiaas.streams.acls.plan``) without a broker: who may write what.

The broker-side behaviour (refusals, end to end under the users) is in tests/integration/test_acl.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from aiaas.cli.acl import parse_pairs, parse_tenants
from aiaas.schemas.errors import BadRequest
from aiaas.streams import acls
from aiaas.streams.authz import forbidden_from
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

S = Settings(topic_prefix="p.")
T = Topics(S)


def _covers(g: acls.Grant, topic: str) -> bool:
    prefixed = g.pattern == "PREFIXED" and topic.startswith(g.name)
    return g.resource == "TOPIC" and (g.name == topic or prefixed)


def _who(p: acls.Plan, op: str, topic: str) -> set[str]:
    return {g.principal for gs in p.grants.values() for g in gs if g.operation == op and _covers(g, topic)}


PLAN = acls.plan(S, tenants={"a": ["m1"], "b": ["m1", "m2"]}, jobs=["j"], score=[("in", "out")])


def test_only_the_aggregator_writes_parameters_and_the_registry() -> None:
    for topic in (T.train_params("j").name, T.models().name, T.artifacts().name):
        assert _who(PLAN, "WRITE", topic) == {"User:aiaas-aggregator"}, topic
    assert "User:aiaas-trainer" in _who(PLAN, "WRITE", T.train_grads("j").name)


def test_a_tenant_reads_only_its_own_replies_and_no_training() -> None:
    assert _who(PLAN, "READ", T.replies("a-1234").name) == {"User:tenant-a"}
    assert _who(PLAN, "READ", T.replies("b-1234").name) == {"User:tenant-b"}
    readers = _who(PLAN, "READ", T.train_data("j").name)
    assert readers == {"User:aiaas-trainer", "User:aiaas-aggregator"}


def test_a_tenant_sees_the_artifacts_topic_but_cannot_read_it() -> None:
    # aiaas infer as a tenant opens the registry, which creates a topic it cannot see
    assert "User:tenant-a" in _who(PLAN, "DESCRIBE", T.artifacts().name)
    assert "User:tenant-a" not in _who(PLAN, "READ", T.artifacts().name)


def test_a_tenant_writes_the_requests_of_its_models_only() -> None:
    assert "User:tenant-a" not in _who(PLAN, "WRITE", T.infer_requests("m2").name)
    assert "User:tenant-b" in _who(PLAN, "WRITE", T.infer_requests("m2").name)
    assert not any(g.operation == "WRITE" and g.resource == "TOPIC" and "replies" in g.name
                   for g in PLAN.grants["tenant-a"])


def test_a_tenant_name_cannot_reach_into_another_tenants_reply_prefix() -> None:
    with pytest.raises(BadRequest):
        acls.plan(S, tenants={"a-b": ["m1"]})
    with pytest.raises(BadRequest):
        acls.plan(S, tenants={"bridge": ["m1"]})
    assert _who(PLAN, "READ", T.replies("bridge-1").name) == {"User:aiaas-bridge"}
    assert "User:aiaas-bridge" not in _who(acls.plan(S, tenants={"bridgeco": []}), "READ",
                                           T.replies("bridgeco-1").name)


def test_credentials_are_made_once_and_private(tmp_path: Path) -> None:
    s = Settings(state_dir=tmp_path, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                 sasl_username="admin", sasl_password="x")
    creds = acls.Credentials(s)
    first = creds.password("tenant-a")
    assert creds.password("tenant-a") == first
    text = creds.path("tenant-a").read_text()
    assert "AIAAS_CLIENT_ID=a\n" in text and "AIAAS_SASL_USERNAME=tenant-a\n" in text
    assert creds.path("tenant-a").stat().st_mode & 0o077 == 0


def test_cli_arguments() -> None:
    assert parse_tenants(["a=m1,m2", "b"], "m3") == {"a": ["m1", "m2"], "b": ["m3"]}
    assert parse_pairs(["in:out"]) == [("in", "out")]
    with pytest.raises(typer.BadParameter):
        parse_pairs(["no-colon"])


def test_an_authorization_error_becomes_one_forbidden_line() -> None:
    from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError

    s = Settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256", sasl_username="u",
                 sasl_password="x")
    err = forbidden_from(s, TopicAuthorizationFailedError("p.secret"), "reading")
    assert err is not None and err.details["principal"] == "User:u" and err.details["resource"] == "p.secret"
    assert "\n" not in str(err) and err.code.value == "forbidden" and not err.retriable
    assert forbidden_from(s, KafkaConnectionError("down"), "reading") is None
