"""The digits MLP job of the sharding tests (tests/integration/test_sharding.py) and the shard kill
test (tests/faults/test_shard_faults.py): one trainer, sync mode, no registration."""

from __future__ import annotations

from typing import Any

from aiaas.schemas.jobs import JobSpec


def shard_job(job_id: str, shards: int = 1, **over: Any) -> JobSpec:
    """A one-trainer digits MLP job in sync mode (the sharding tests' and the shard kill test's)."""
    base: dict[str, Any] = {
        "job_id": job_id, "model": {"input_dim": 64, "hidden": [64], "output_dim": 10},
        "optimizer": {"name": "adam", "lr": 1e-3}, "batch_size": 64, "steps": 6,
        "eval_interval": 3, "checkpoint_interval": 2, "trainers": 1,
        "sync": {"mode": "sync", "straggler_deadline_ms": 10000},
        "data": {"source": "digits", "partitions": 1, "strategy": "sequential"},
        "export": {"register_model": False}, "aggregator": {"shards": shards},
    }
    return JobSpec.model_validate(base | over)
