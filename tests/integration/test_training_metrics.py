"""Prometheus metrics of a real training job: trainer samples and bytes, aggregator version/members."""

from __future__ import annotations

import uuid

import pytest

from aiaas.agents.launcher import run_in_process
from aiaas.schemas.jobs import JobSpec
from aiaas.streams import metrics as m
from aiaas.streams.settings import Settings

pytestmark = pytest.mark.timeout(180)


async def test_trainer_and_aggregator_metrics_follow_the_job(settings: Settings) -> None:
    spec = JobSpec.model_validate({
        "job_id": f"metrics-{uuid.uuid4().hex[:8]}",  # metrics are per process: a job id of its own
        "model": {"input_dim": 64, "hidden": [32], "output_dim": 10},
        "optimizer": {"name": "adam", "lr": 2e-3}, "steps": 20, "eval_interval": 10,
        "sync": {"mode": "sync", "straggler_deadline_ms": 1000},
        "data": {"source": "digits", "partitions": 2, "strategy": "random"},
        "export": {"register_model": False},
    })
    status = await run_in_process(settings, spec, timeout_s=150)
    assert status.state == "succeeded", status.error
    job = spec.job_id
    samples = [m.sample("aiaas_trainer_samples_total", {"job": job, "worker": w})
               for w in _workers(job)]
    assert len(samples) == 2 and all(s and s > 0 for s in samples)
    sent = sum(m.sample("aiaas_trainer_gradient_bytes_total",
                        {"job": job, "worker": w, "compression": "none"}) or 0 for w in _workers(job))
    assert sent > 20 * 10_000  # 20 rounds of two 64-32-10 gradients (~8.7 kB each) at least
    assert m.sample("aiaas_aggregator_parameter_version", {"job": job}) == status.metrics["version"]
    assert m.sample("aiaas_aggregator_gradients_total", {"job": job, "outcome": "accepted"}) >= 20
    assert m.sample("aiaas_aggregator_live_workers", {"job": job}) == 2


def _workers(job: str) -> list[str]:
    """Worker ids that reported samples for ``job`` (ids are generated per trainer)."""
    found = set()
    for metric in m.REGISTRY.collect():
        for s in metric.samples:
            if s.name == "aiaas_trainer_samples_total" and s.labels.get("job") == job:
                found.add(s.labels["worker"])
    return sorted(found)
