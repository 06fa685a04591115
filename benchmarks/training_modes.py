"""Our four sync modes on the training benchmark's workload, over the real broker.

``run_mode(mode, quick)`` runs ``benchmarks.training_baselines.workload_spec`` (digits, MLP
64-256-256-10, batch 64 per trainer, Adam 1e-3, target 0.95, evaluation every 640 samples) with
the aggregator and 2 trainers as local processes (``aiaas.agents.launcher``), ``n`` times, and
reports the median ``seconds_to_target`` (with _min, _max and the median run's time-to-accuracy ``curve``
from the job's metrics topic) (clock: trainers get version 0 after the rendezvous -> the
first evaluation at or over the target), plus ``samples_per_s``, ``grad_bytes_per_step`` (tensor
bytes per message a trainer sends), ``ms_per_sync_round`` (a trainer's gradient -> parameters
round trip) and ``round_breakdown_ms`` (where a round's time goes, medians: compute, serialize,
grad_transit = produce+broker+fetch, wait_peers, apply, params_transit, load).

No process is pinned to a CPU, ours or DDP's: pinning each trainer to its own core
(``LocalJob(pin_cpus=True)``) shortens our sync rounds by ~17% here, but pinning DDP's ranks speeds
DDP up as much, so the comparison stays with the OS's scheduling on both sides.

Mode knobs (only ``sync``/``compression`` differ from the shared workload): sync = BSP; async =
staleness 2 (one gradient in flight per trainer: on 2 cores more only starves the aggregator); both
send float16 gradients and receive float16 parameters (``HALF``: the aggregator keeps float32 master
weights; half the bytes per round trip); hybrid = local SGD with ``HYBRID_LOCAL_STEPS``; ring =
gossip every ``RING_LOCAL_STEPS`` local steps. The values were picked by measuring the
alternatives side by side on the 2-core machine.

    python -m benchmarks.training_modes [--quick] [--mode sync]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import uuid
from typing import Any

from aiaas.agents.launcher import LocalJob
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.records import JobStatus
from aiaas.streams.jobs import read_metrics
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from benchmarks.common import add_repeat, emit, fresh_prefix
from benchmarks.training_baselines import FIELDS, empty_result, median_curve, reached_spread, workload_spec

log = logging.getLogger("benchmarks.training_modes")
# 2026-12-07, seconds to 0.95 over 2 x 3 runs each: 24 -> 0.14-0.24, 32 -> 0.13-0.18, 48 -> 0.15-0.23,
# 64 -> 0.10-0.12 (the first average already reaches it: the trainers' halves are small)
HYBRID_LOCAL_STEPS = 64
RING_LOCAL_STEPS = 16
HALF = {"kind": "fp16", "params_dtype": "float16"}  # gradients and parameters as float16 on the wire
KNOBS: dict[str, dict[str, Any]] = {
    "sync": {"sync": {"mode": "sync", "straggler_deadline_ms": 2000}, "compression": HALF},
    "async": {"sync": {"mode": "async", "staleness": 2}, "compression": HALF},
    "hybrid": {"sync": {"mode": "hybrid", "local_steps": HYBRID_LOCAL_STEPS, "straggler_deadline_ms": 2000}},
    "ring": {"sync": {"mode": "ring", "local_steps": RING_LOCAL_STEPS, "straggler_deadline_ms": 2000}},
}
TIMEOUT_S = 300.0
WARM_UP_STEPS = 300


def warm_up(quick: bool) -> dict[str, Any]:
    """One short untimed sync job before the contenders: a freshly started broker serves its first
    thousands of large records slowly (JIT; measured: a 170 KB round trip takes 8.8 ms cold, 5.2 ms
    warm), which would otherwise count against whichever mode happens to run first."""
    status, _ = run(_one("sync", quick, epochs=None, steps=WARM_UP_STEPS, target=None))
    return {"state": status.state, "versions": status.version}


def mode_spec(mode: str, quick: bool, **extra: Any) -> JobSpec:
    job = f"bench-{mode}-{uuid.uuid4().hex[:6]}"
    return workload_spec(quick, job_id=job, **KNOBS[mode], **extra)


Run = tuple[JobStatus, list[list[float]]]  # the job's final status, its [seconds, accuracy] curve


async def _one(mode: str, quick: bool, **extra: Any) -> Run:
    settings = Settings(topic_prefix=fresh_prefix(f"train-{mode}"))
    spec = mode_spec(mode, quick, **extra)
    async with LocalJob(settings, spec) as job:
        status = await job.wait(TIMEOUT_S)
        evals = await read_metrics(settings, spec.job_id)
    return status, [[m.seconds, m.test_accuracy] for m in evals
                    if m.seconds is not None and m.test_accuracy is not None]


def _summary(done: list[Run]) -> dict[str, Any]:
    runs = [status for status, _ in done]
    metrics = [r.metrics for r in runs]
    reached = [m["seconds_to_target"] for m in metrics if "seconds_to_target" in m]
    last = metrics[-1]
    phases = sorted({k for m in metrics for k in m if k.startswith("round_ms.")})
    return {
        "test_accuracy": last.get("test_accuracy"),
        **reached_spread(reached, len(runs)),
        "curve": median_curve([c for _, c in done], [m.get("seconds_to_target") for m in metrics]),
        "samples_per_s": statistics.median(m.get("samples_per_s", 0.0) for m in metrics),
        "grad_bytes_per_step": last.get("grad_bytes_per_step"),
        "ms_per_sync_round": statistics.median(m.get("ms_per_sync_round", 0.0) for m in metrics),
        "round_breakdown_ms": {p.removeprefix("round_ms."): round(statistics.median(
            m[p] for m in metrics if p in m), 3) for p in phases},
        "versions": last.get("version"),
        "epochs": last.get("epochs"),
        "onnx_max_abs_diff": last.get("onnx_max_abs_diff"),
        "dropped_stale": last.get("dropped_stale"),
        "repeats": len(runs),
        "seconds_to_target_runs": [m.get("seconds_to_target") for m in metrics],
        "status": "ok" if len(reached) == len(runs) and all(r.state == "succeeded" for r in runs)
        else "target_not_reached",
    }


def run_mode(mode: str, quick: bool, n: int = 3, **extra: Any) -> dict[str, Any]:
    """Run ``mode`` on the workload ``n`` times; the benchmark's figures for it."""
    if mode not in KNOBS:
        return empty_result("failed", f"unknown mode {mode!r}")

    async def all_runs() -> list[Run]:
        return [await _one(mode, quick, **extra) for _ in range(n)]

    done = run(all_runs())
    failed = [status for status, _ in done if status.state != "succeeded"]
    if failed:
        return {**empty_result("failed", failed[0].error or "job failed"),
                "runs": [status.metrics for status, _ in done]}
    result = _summary(done)
    result["knobs"] = KNOBS[mode]["sync"]
    for field in FIELDS:
        result.setdefault(field, None)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--mode", default="sync,async,ring,hybrid")
    add_repeat(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    result = {m: run_mode(m, args.quick, args.repeat) for m in args.mode.split(",")}
    emit(result)
    return result


if __name__ == "__main__":
    main()
