"""Sharded parameter server: ms per sync round with 1 and 2 aggregator shards, side by side.

One trainer process and 1 or 2 aggregator processes (``aiaas.agents.launcher.LocalJob``) train an MLP
64-1024-1024-1024-10 (2.2M parameters: an 8.8 MB float32 gradient, sent in 4 MiB chunks) on digits in
sync mode; 2 shards split it by tensor (two 1M-parameter layers, one per shard). A round is what the
trainer sees between sending its gradient and holding the next version (``ms_per_sync_round``, the
mean over the run, as shard 0 reports it); the two set-ups alternate ``repeat`` times and the median
is kept (the machine is shared).

    python -m benchmarks.shards [--quick]     # one JSON object on the last line
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from aiaas.agents.launcher import LocalJob
from aiaas.schemas.jobs import JobSpec
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from benchmarks.common import emit, fresh_prefix, machine, spread

HIDDEN = [1024, 1024, 1024]


def spec(shards: int, steps: int) -> JobSpec:
    return JobSpec.model_validate({
        "job_id": f"bench-shards{shards}-{uuid.uuid4().hex[:6]}",
        "model": {"input_dim": 64, "hidden": HIDDEN, "output_dim": 10},
        "optimizer": {"name": "adam", "lr": 1e-3}, "batch_size": 64, "steps": steps, "trainers": 1,
        "eval_interval": steps, "checkpoint_interval": steps,
        "sync": {"mode": "sync", "straggler_deadline_ms": 10000},
        "data": {"source": "digits", "partitions": 1}, "export": {"register_model": False},
        "aggregator": {"shards": shards},
    })


def one_run(shards: int, steps: int) -> dict[str, Any]:
    """One job to its end with ``shards`` aggregator processes; its round figures."""
    settings = Settings(topic_prefix=fresh_prefix(f"shards{shards}"))

    async def job() -> Any:
        async with LocalJob(settings, spec(shards, steps)) as procs:
            return await procs.wait(600)

    status = run(job())
    m = status.metrics
    return {"state": status.state, "versions": status.version,
            "ms_per_sync_round": m.get("ms_per_sync_round"), "apply_ms": m.get("round_ms.apply"),
            "grad_transit_ms": m.get("round_ms.grad_transit"),
            "params_transit_ms": m.get("round_ms.params_transit"),
            "grad_bytes_per_step": m.get("grad_bytes_per_step")}


def measure(quick: bool = False, repeat: int | None = None) -> dict[str, Any]:
    """``round_ms_1_shard`` and ``round_ms_2_shards`` (medians) with every run's figures."""
    steps, repeat = (20, repeat or 1) if quick else (80, repeat or 3)
    runs: dict[str, list[dict[str, Any]]] = {"1": [], "2": []}
    for _ in range(repeat):
        for shards in (1, 2):
            runs[str(shards)].append(one_run(shards, steps))
    out: dict[str, Any] = {"shard_runs": runs, "shard_model": f"mlp 64-{'-'.join(map(str, HIDDEN))}-10, "
                           f"1 trainer, sync, {steps} steps, median of {repeat}"}
    for shards, key in ((1, "round_ms_1_shard"), (2, "round_ms_2_shards")):
        values = [r["ms_per_sync_round"] for r in runs[str(shards)]
                  if r["state"] == "succeeded" and r["ms_per_sync_round"] is not None]
        out |= spread(key, values) if values else {key: None}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one run of 20 steps each")
    ap.add_argument("--repeat", type=int, default=None)
    args = ap.parse_args(argv)
    result = measure(args.quick, args.repeat) | {"machine": machine()}
    emit(result)
    return result


if __name__ == "__main__":
    main()
