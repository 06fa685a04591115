"""With access control on (AIAAS_ROLE_USERS), each agent process aiaas starts logs in as its role's
user (agents/processes.role_login), from the credentials ``aiaas acl apply`` wrote; off, it logs in
as its parent. A missing credentials file is one clear line, not a login as someone else."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from aiaas.agents.processes import role_login
from aiaas.schemas.errors import NotFound
from aiaas.streams import acls
from aiaas.streams.settings import Settings


@pytest.fixture
def state(tmp_path: Path) -> Path:
    s = Settings(state_dir=tmp_path, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                 sasl_username="admin", sasl_password=SecretStr("admin-secret"))
    creds = acls.Credentials(s)
    for user in ("aiaas-aggregator", "aiaas-trainer", "aiaas-inference", "aiaas-scoring", "aiaas-bridge",
                 "tenant-demo"):
        creds.password(user)
    return tmp_path


def _env(state: Path, on: str = "true") -> dict[str, str]:
    return {"AIAAS_ROLE_USERS": on, "AIAAS_STATE_DIR": str(state), "AIAAS_SASL_USERNAME": "admin"}


@pytest.mark.parametrize(("module", "args", "user"), [
    ("aiaas.agents.aggregator", (), "aiaas-aggregator"),
    ("aiaas.agents.trainer", ("--worker-id", "w1"), "aiaas-trainer"),
    ("aiaas.agents.inference", ("--model", "m"), "aiaas-inference"),
    ("aiaas.agents.inference", ("--score", "--model", "m"), "aiaas-scoring"),
    ("aiaas.agents.bridge.main", (), "aiaas-bridge"),
])
def test_each_agent_logs_in_as_its_role(state: Path, module: str, args: tuple[str, ...], user: str) -> None:
    login = role_login(module, args, _env(state))
    assert login["AIAAS_SASL_USERNAME"] == user
    assert login["AIAAS_SASL_PASSWORD"] == acls.user_env(state, user)["AIAAS_SASL_PASSWORD"]


def test_off_or_not_an_agent_keeps_the_parents_login(state: Path) -> None:
    assert role_login("aiaas.agents.trainer", (), _env(state, on="false")) == {}
    assert role_login("aiaas.agents.trainer", (), {"AIAAS_STATE_DIR": str(state)}) == {}
    assert role_login("aiaas.cli.main", ("models", "list"), _env(state)) == {}


def test_missing_credentials_say_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as info:
        role_login("aiaas.agents.aggregator", (), _env(tmp_path))
    text = str(info.value)
    assert "aiaas-aggregator" in text and "aiaas acl apply" in text and "\n" not in text


def test_a_tenant_login_brings_its_client_id(state: Path) -> None:
    s = Settings(state_dir=state, client_id="cli", security_protocol="SASL_PLAINTEXT",
                 sasl_mechanism="SCRAM-SHA-256", sasl_username="admin", sasl_password=SecretStr("x"))
    tenant = acls.login_as(s, acls.tenant_user("demo"))
    assert tenant.sasl_username == "tenant-demo" and tenant.client_id == "demo"  # replies.demo-*
    assert tenant.sasl_password is not None
    password = acls.user_env(state, "tenant-demo")["AIAAS_SASL_PASSWORD"]
    assert tenant.sasl_password.get_secret_value() == password
    assert tenant.bootstrap_servers == s.bootstrap_servers and tenant.state_dir == state


def test_the_bridge_reads_the_autoscalers_looks_and_no_tenant_does(tmp_path: Path) -> None:
    """The status page's forecast chart (scaling.<model>) under access control: the bridge may read it."""
    from aiaas.streams.topics import Topics

    s = Settings(state_dir=tmp_path)
    topic = Topics(s).scaling("digits").name
    grants = acls.plan(s, tenants={"acme": ["digits"]}).grants
    readers = {user for user, gs in grants.items() for g in gs
               if g.operation == "READ" and g.resource == "TOPIC"
               and (g.name == topic or (g.pattern == "PREFIXED" and topic.startswith(g.name)))}
    assert readers == {"aiaas-bridge"}
