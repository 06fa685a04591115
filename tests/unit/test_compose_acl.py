"""infra/kafka/docker-compose.yml with access control on, checked as data (no Docker engine here to
run it): the brokers run the StandardAuthorizer with no access by default and a login on every
listener (what ``sasl-broker.sh --acl`` sets up for one local broker), ``admin-user`` makes the admin
``acl-apply`` runs as, and every aiaas service logs in as its own role's user with settings aiaas
accepts (docs/operations.md, "Access control")."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiaas.cli.acl import parse_tenants
from aiaas.streams import acls
from aiaas.streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "infra" / "kafka" / "docker-compose.yml"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _unset(value: str) -> str:
    """What compose makes of ``${VAR:-default}`` with VAR unset, and of ``$$``."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value).replace("$$", "$")


def _property(env_name: str) -> str:
    """The broker property of an apache/kafka image variable: KAFKA_ dropped, ``___`` is ``-``,
    ``__`` is ``_``, ``_`` is ``.``, lower case."""
    words = {"___": "-", "__": "_", "_": "."}
    return re.sub("___|__|_", lambda m: words[m[0]], env_name.removeprefix("KAFKA_")).lower()


def _props(svc: dict[str, Any]) -> dict[str, str]:
    return {_property(k): _unset(v) for k, v in svc["environment"].items() if k.startswith("KAFKA_")}


def _brokers(compose: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {n: _props(s) for n, s in compose["services"].items() if n.startswith("kafka-")}


def _agents(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("image") == "aiaas:latest"}


def _admin(compose: dict[str, Any]) -> tuple[str, str]:
    env = compose["services"]["admin-user"]["environment"]
    return _unset(env["ADMIN_USER"]), _unset(env["ADMIN_PASSWORD"])


def _acl_config_keys() -> set[str]:
    """The properties ``sasl-broker.sh --acl`` gives its broker (its acl_config), listener names
    mapped to this file's: its PLAINTEXT listener is the brokers' own, INTERNAL here."""
    script = (ROOT / "infra" / "kafka" / "sasl-broker.sh").read_text()
    block = script.split("<<PROPS", 1)[1].split("PROPS", 1)[0]
    keys = {line.split("=", 1)[0] for line in block.strip().splitlines()}
    return {k.replace("listener.name.plaintext.", "listener.name.internal.") for k in keys}


def test_brokers_authorize_with_no_access_by_default(compose: dict[str, Any]) -> None:
    admin, _ = _admin(compose)
    for name, props in _brokers(compose).items():
        assert _acl_config_keys() <= props.keys(), name
        assert props["authorizer.class.name"] == AUTHORIZER
        assert props["allow.everyone.if.no.acl.found"] == "false"
        assert set(props["super.users"].split(";")) == {"User:broker", f"User:{admin}"}


def test_every_listener_needs_a_login(compose: dict[str, Any]) -> None:
    for name, props in _brokers(compose).items():
        listeners = {entry.split("://")[0] for entry in props["listeners"].split(",")}
        assert listeners == {"INTERNAL", "CONTROLLER", "CLIENT", "EXTERNAL"}
        protocols = dict(p.split(":") for p in props["listener.security.protocol.map"].split(","))
        assert protocols == dict.fromkeys(listeners, "SASL_PLAINTEXT"), name
        assert props["sasl.mechanism.inter.broker.protocol"] == "PLAIN"
        assert props["sasl.mechanism.controller.protocol"] == "PLAIN"
        for listener in listeners:
            lname = f"listener.name.{listener.lower()}"
            (mech,) = props[f"{lname}.sasl.enabled.mechanisms"].split(",")
            jaas = props[f"{lname}.{mech.lower()}.sasl.jaas.config"]
            if listener in ("INTERNAL", "CONTROLLER"):  # the brokers' own: PLAIN, one user `broker`
                assert mech == "PLAIN" and 'username="broker"' in jaas
                secret = re.search(r'password="([^"]+)"', jaas)
                assert secret and f'user_broker="{secret[1]}"' in jaas
            else:  # clients: SCRAM users (aiaas acl apply)
                assert mech == "SCRAM-SHA-256" and jaas.startswith("org.apache.kafka.common.security.scram.")
        assert f"CLIENT://{name}:9094" in props["advertised.listeners"]


def test_the_admin_is_made_and_runs_acl_apply(compose: dict[str, Any]) -> None:
    services = compose["services"]
    made = services["admin-user"]
    assert set(made["depends_on"]) == set(_brokers(compose))
    assert all(d["condition"] == "service_healthy" for d in made["depends_on"].values())
    script = " ".join(made["command"])
    assert "kafka-configs.sh" in script and '--entity-name "$$ADMIN_USER"' in script
    assert "SCRAM-SHA-256=[password=$$ADMIN_PASSWORD]" in script
    apply = services["acl-apply"]
    assert apply["command"][:3] == ["aiaas", "acl", "apply"]
    assert apply["depends_on"]["admin-user"]["condition"] == "service_completed_successfully"
    env = apply["environment"]
    assert (_unset(env["AIAAS_SASL_USERNAME"]), _unset(env["AIAAS_SASL_PASSWORD"])) == _admin(compose)


def _settings(env: dict[str, str]) -> Settings:
    """The settings an agent of ``env`` starts with (its password comes from its credentials file)."""
    fields = {k.removeprefix("AIAAS_").lower(): _unset(v) for k, v in env.items() if k.startswith("AIAAS_")}
    return Settings(_env_file=None, **{"sasl_password": "from-the-credentials-file", **fields})


def test_every_agent_logs_in_as_its_roles_user(compose: dict[str, Any]) -> None:
    agents = _agents(compose)
    assert {"acl-apply", "inference", "bridge"} <= agents.keys()
    client_listeners = {f"{n}:9094" for n in _brokers(compose)}
    command = agents["acl-apply"]["command"]
    tenants = parse_tenants([command[i + 1] for i, arg in enumerate(command) if arg == "--tenant"], "")
    users = set(acls.plan(_settings(agents["acl-apply"]["environment"]), tenants=tenants).grants)
    for name, svc in agents.items():
        s = _settings(svc["environment"])
        assert s.security_protocol == "SASL_PLAINTEXT" and s.sasl_mechanism == "SCRAM-SHA-256", name
        assert set(s.bootstrap_servers.split(",")) == client_listeners, name
        assert f"credentials:{s.state_dir}/credentials" in svc["volumes"], name
        if name == "acl-apply":
            continue
        user = s.sasl_username
        assert user in users and user in {acls.role_user(r) for r in acls.ROLES}, name
        script = " ".join(svc["command"])
        assert f". {s.state_dir}/credentials/{user}.env" in script and "set -a" in script, name
        assert svc["depends_on"]["acl-apply"]["condition"] == "service_completed_successfully", name


def test_the_image_is_built_from_this_repository(compose: dict[str, Any]) -> None:
    for svc in _agents(compose).values():
        build = svc["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == ROOT and (context / build["dockerfile"]).is_file()
