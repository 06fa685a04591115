"""Training benchmark: time to 0.95 test accuracy on digits, our four Kafka modes vs torch.

Contenders train the same workload (``benchmarks.training_baselines.workload_spec``) in one run:
``single_process`` (one torch process: the compute limit), ``ddp_gloo`` (DistributedDataParallel,
gloo, 2 processes: the peer) and our modes ``sync``, ``async``, ``ring``, ``hybrid`` over Kafka, one
call each to ``benchmarks.training_modes.run_mode(mode, quick, n)``. A mode that is missing or fails
is reported with null figures and its reason, never with made-up numbers. Every contender runs
``--repeat`` times: its ``seconds_to_target`` is the median (with _min and _max), its ``curve`` the
median run's [seconds, test accuracy] per evaluation (``make bench`` plots them), and
``time_ratio_sync_vs_ddp`` the median of the per-repeat ratios (run i of sync over run i of DDP).

    python -m benchmarks.training [--quick] [--repeat N] [--only sync,ddp_gloo,...]
"""

from __future__ import annotations

import argparse
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from benchmarks.common import add_repeat, emit, machine, spread
from benchmarks.training_baselines import FIELDS, TARGET, WORKLOAD, ddp_gloo, empty_result, single_process

MODES = ("sync", "async", "ring", "hybrid")
Contender = Callable[[bool], dict[str, Any]]
BASELINES: dict[str, Contender] = {"single_process": single_process, "ddp_gloo": ddp_gloo}
log = logging.getLogger("benchmarks.training")


def _guarded(name: str, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run one contender; a crash becomes a 'failed' entry with the reason, not a dead benchmark."""
    started = time.perf_counter()
    log.info("running %s", name)
    try:
        result = fn(*args)
    except Exception as exc:
        log.error("%s failed: %s", name, traceback.format_exc())
        result = empty_result("failed", repr(exc))
    for field in FIELDS:
        result.setdefault(field, None)
    result["wall_seconds"] = round(time.perf_counter() - started, 3)
    log.info("%s: %s", name, {k: result.get(k) for k in (*FIELDS, "status")})
    return result


def run_modes(quick: bool, wanted: set[str], n: int) -> dict[str, dict[str, Any]]:
    """Our four modes over Kafka (T2's ``run_mode``), or 'missing' entries until it exists."""
    try:
        from benchmarks.training_modes import run_mode, warm_up
    except ImportError as exc:
        reason = f"benchmarks.training_modes.run_mode not available: {exc}"
        return {m: {**empty_result("missing", reason), "wall_seconds": 0.0} for m in MODES}
    if wanted & set(MODES):
        log.info("warm-up job (untimed): %s", warm_up(quick))
    return {m: _guarded(m, run_mode, m, quick, n) if m in wanted else empty_result("skipped", "not in --only")
            for m in MODES}


def ratio(ours: dict[str, Any], ddp: dict[str, Any], name: str) -> dict[str, Any]:
    """``name``: the median of run i's ratio over the repeats both reached the target in (with
    _min, _max and the per-repeat list); null when either missed it in a repeat."""
    a, b = ours.get("seconds_to_target_runs") or [], ddp.get("seconds_to_target_runs") or []
    per = [x / y for x, y in zip(a, b, strict=False) if x is not None and y]
    if not per or len(per) != len(a):  # a repeat that missed the target (either side) has no ratio
        return {name: None}
    return {**spread(name, per, 3), f"{name}_runs": [round(r, 3) for r in per]}


def best_mode(modes: dict[str, dict[str, Any]]) -> str | None:
    reached = {m: r["seconds_to_target"] for m, r in modes.items() if r.get("seconds_to_target") is not None}
    return min(reached, key=lambda m: reached[m]) if reached else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer epochs (under 5 minutes with --repeat 1)")
    ap.add_argument("--only", default="", help="comma list of contenders to run (default: all)")
    add_repeat(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    wanted = set(filter(None, args.only.split(","))) or {*MODES, *BASELINES}
    started = time.perf_counter()
    baselines = {name: _guarded(name, fn, args.quick, args.repeat) if name in wanted
                 else empty_result("skipped", "not in --only") for name, fn in BASELINES.items()}
    modes = run_modes(args.quick, wanted, args.repeat)
    best = best_mode(modes)
    result = {
        "workload": WORKLOAD,
        "target_accuracy": TARGET,
        "modes": modes,
        **baselines,
        **ratio(modes["sync"], baselines["ddp_gloo"], "time_ratio_sync_vs_ddp"),
        **(ratio(modes[best], baselines["ddp_gloo"], "time_ratio_best_vs_ddp") if best
           else {"time_ratio_best_vs_ddp": None}),
        "best_mode": best,
        "quick": args.quick,
        "repeat": args.repeat,
        "seconds": round(time.perf_counter() - started, 3),
        "machine": machine(),
    }
    emit(result)
    return result


if __name__ == "__main__":
    main()
