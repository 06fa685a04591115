"""infra/k8s: the KEDA ScaledObject uses the local autoscaler's thresholds, names the workers'
group and topic, and targets the Deployment (checked as data; no cluster here)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiaas.agents.autoscaler.controller import default_group
from aiaas.agents.autoscaler.policy import Policy
from aiaas.cli.ops import autoscale
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

K8S = Path(__file__).resolve().parents[2] / "infra" / "k8s"
MODEL = "digits"


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def test_scaledobject_targets_the_deployment(docs: dict[str, dict[str, Any]]) -> None:
    so = docs[f"ScaledObject/aiaas-inference-{MODEL}"]
    dep = docs[f"Deployment/aiaas-inference-{MODEL}"]
    assert so["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert "replicas" not in dep["spec"]  # KEDA owns the count
    cmd = dep["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[-2:] == ["--model", MODEL]
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 30


def test_thresholds_match_the_local_autoscaler(docs: dict[str, dict[str, Any]]) -> None:
    so = docs[f"ScaledObject/aiaas-inference-{MODEL}"]["spec"]
    policy = Policy()
    cli = {k: p.default for k, p in inspect.signature(autoscale).parameters.items()}
    kafka = next(t for t in so["triggers"] if t["type"] == "kafka")["metadata"]
    prom = next(t for t in so["triggers"] if t["type"] == "prometheus")["metadata"]
    assert so["minReplicaCount"] == policy.min_replicas == cli["min_replicas"]
    assert so["maxReplicaCount"] == policy.max_replicas == cli["max_replicas"]
    assert int(kafka["lagThreshold"]) == policy.lag_threshold == cli["lag_threshold"]
    assert int(kafka["activationLagThreshold"]) == policy.activation_lag == cli["activation_lag"]
    assert float(prom["threshold"]) == policy.rate_per_replica == cli["rate_per_replica"]
    assert so["cooldownPeriod"] == policy.idle_s == cli["idle"]
    down = so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] == policy.cooldown_s == cli["cooldown"]
    assert kafka["allowIdleConsumers"] == "false"  # never more workers than partitions
    assert kafka["offsetResetPolicy"] == "earliest"  # as our consumers start


def test_group_and_topic_are_the_workers(docs: dict[str, dict[str, Any]]) -> None:
    kafka = next(t for t in docs[f"ScaledObject/aiaas-inference-{MODEL}"]["spec"]["triggers"]
                 if t["type"] == "kafka")["metadata"]
    cfg = docs["ConfigMap/aiaas-config"]["data"]
    s = Settings(topic_prefix=cfg["AIAAS_TOPIC_PREFIX"])
    assert kafka["consumerGroup"] == default_group(s, MODEL)
    assert kafka["topic"] == Topics(s).infer_requests(MODEL).name
    assert kafka["bootstrapServers"] == cfg["AIAAS_BOOTSTRAP_SERVERS"]
    assert Topics(s).infer_requests(MODEL).partitions >= Policy().max_replicas


def test_configmap_and_secret_make_valid_settings(docs: dict[str, dict[str, Any]]) -> None:
    env = {**docs["ConfigMap/aiaas-config"]["data"],
           **docs["Secret/aiaas-kafka-credentials"]["stringData"]}
    fields = {k.removeprefix("AIAAS_").lower(): v for k, v in env.items() if k.startswith("AIAAS_")}
    s = Settings(**fields)
    assert s.security_protocol == "SASL_PLAINTEXT" and s.sasl_mechanism == "SCRAM-SHA-256"
    auth = docs["TriggerAuthentication/aiaas-kafka-scram"]["spec"]["secretTargetRef"]
    assert {a["parameter"] for a in auth} == {"sasl", "username", "password"}


def test_the_watched_group_is_the_inference_workers_group() -> None:
    from aiaas.agents.inference.worker import group_id

    s = Settings(topic_prefix="x.")
    assert default_group(s, MODEL) == group_id(s, MODEL)
