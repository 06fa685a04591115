"""infra/kafka/docker-compose.yml, checked as data (no Docker engine here to run it).

The checks are what would break the cluster or make it disagree with our clients: a shared
cluster id, a quorum naming every node, unique node ids and ports, the 8 MiB record limit the
clients use, auto-creation off and replication factor 3 for internal topics.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiaas.streams.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "infra" / "kafka" / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _brokers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if n.startswith("kafka-")}


def test_three_kraft_nodes_on_kafka_391(compose: dict[str, Any]) -> None:
    brokers = _brokers(compose)
    assert len(brokers) == 3
    for svc in brokers.values():
        assert svc["image"] == "apache/kafka:3.9.1"
        assert set(svc["environment"]["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    ids = {svc["environment"]["KAFKA_NODE_ID"] for svc in brokers.values()}
    assert ids == {"1", "2", "3"}


def test_quorum_and_cluster_id_agree(compose: dict[str, Any]) -> None:
    brokers = _brokers(compose)
    envs = [svc["environment"] for svc in brokers.values()]
    assert len({e["CLUSTER_ID"] for e in envs}) == 1
    raw = base64.urlsafe_b64decode(envs[0]["CLUSTER_ID"] + "==")
    assert len(raw) == 16  # Kafka's Uuid: 16 bytes, base64url without padding
    voters = {e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in envs}
    assert len(voters) == 1
    expected = {f"{e['KAFKA_NODE_ID']}@{name}:9093" for name, e in zip(brokers, envs, strict=True)}
    assert set(voters.pop().split(",")) == expected


def test_limits_match_the_clients(compose: dict[str, Any]) -> None:
    limit = Settings().max_message_bytes
    for svc in _brokers(compose).values():
        env = svc["environment"]
        assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) == limit
        assert int(env["KAFKA_REPLICA_FETCH_MAX_BYTES"]) >= limit
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == 2


def test_advertised_ports_are_published_and_distinct(compose: dict[str, Any]) -> None:
    seen: set[str] = set()
    for name, svc in _brokers(compose).items():
        env = svc["environment"]
        external = [a for a in env["KAFKA_ADVERTISED_LISTENERS"].split(",") if a.startswith("EXTERNAL://")]
        assert len(external) == 1
        port = external[0].rsplit(":", 1)[1]
        assert f"127.0.0.1:{port}:{port}" in svc["ports"], name
        assert f"INTERNAL://{name}:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
        seen.add(port)
    assert len(seen) == 3 and "19092" not in seen  # no clash with the script broker


def test_every_environment_value_is_a_string(compose: dict[str, Any]) -> None:
    for svc in compose["services"].values():
        for key, value in (svc.get("environment") or {}).items():
            assert isinstance(value, str), key


def test_redis_is_there(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"].startswith("redis:")
    assert any(p.endswith(":6379") for p in redis["ports"])
