"""The training benchmark's workload and its two torch baselines (no Kafka in the loop).

- ``single_process``: one torch process over the whole train split (the compute limit);
- ``ddp_gloo``: torch DistributedDataParallel, gloo backend, 2 processes on loopback, each on half
  of the data (the peer). Workers are plain subprocesses that write a JSON result (no pickle).

Every contender (these two and our four Kafka modes, see ``benchmarks/training_modes.py``) trains
``workload_spec()``: digits, MLP 64-256-256-10, cross-entropy, batch 64 per trainer, Adam 1e-3
constant, target test accuracy 0.95. Fair timing: the clock starts when training starts (after
process start-up and rendezvous) and stops at the first evaluation that reaches the target;
evaluations happen every ``EVAL_EVERY_SAMPLES`` training samples (summed over workers) for everyone.

    python -m benchmarks.training_baselines ddp-worker --rank R --world W --port P --out FILE
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aiaas.agents.processes import free_port
from aiaas.data.datasets import Dataset, load_dataset
from aiaas.data.partitioners import assign
from aiaas.ml.evaluate import evaluate
from aiaas.ml.models import build_model, loss_fn, set_threads
from aiaas.ml.optim import build_optimizer, build_scheduler
from aiaas.schemas.jobs import JobSpec

TARGET = 0.95
BATCH = 64
WORKERS = 2
EVAL_EVERY_SAMPLES = 640
FIELDS = ("test_accuracy", "seconds_to_target", "samples_per_s", "grad_bytes_per_step", "ms_per_sync_round")
ROOT = Path(__file__).resolve().parent.parent
WORKLOAD = {
    "dataset": "digits (sklearn, 1797 rows, 20% held out, standardised)",
    "model": "MLP 64-256-256-10 relu",
    "loss": "cross_entropy",
    "optimizer": "adam lr=1e-3, constant schedule",
    "batch_per_trainer": BATCH,
    "trainers": WORKERS,
    "target_test_accuracy": TARGET,
    "eval_every_samples": EVAL_EVERY_SAMPLES,
    "torch_threads_per_process": 1,
}


def max_epochs(quick: bool) -> int:
    return 15 if quick else 30


def workload_spec(quick: bool = False, **overrides: Any) -> JobSpec:
    """The benchmark's JobSpec; Kafka modes override ``sync``/``compression``/``job_id`` only."""
    base: dict[str, Any] = {
        "job_id": "bench-digits",
        "model": {"input_dim": 64, "hidden": [256, 256], "output_dim": 10, "activation": "relu"},
        "loss": "cross_entropy",
        "optimizer": {"name": "adam", "lr": 1e-3},
        "schedule": {"kind": "constant"},
        "batch_size": BATCH,
        "epochs": max_epochs(quick),
        "trainers": WORKERS,
        "eval_interval": EVAL_EVERY_SAMPLES // (BATCH * WORKERS),
        "target": {"metric": "test_accuracy", "value": TARGET},
        "data": {"source": "digits", "strategy": "random", "partitions": WORKERS, "batch_rows": BATCH},
        "seed": 0,
    }
    return JobSpec.model_validate(base | overrides)


def empty_result(status: str, reason: str) -> dict[str, Any]:
    """The contender's fields, all null, with why (never fake numbers)."""
    return {**dict.fromkeys(FIELDS), "status": status, "reason": reason}


Step = Callable[[torch.Tensor, torch.Tensor], None]


def run_epochs(step: Step, x: np.ndarray, y: np.ndarray, spec: JobSpec, steps_per_epoch: int,
               eval_every: int, check: Callable[[], bool], seed: int) -> int:
    """Shuffle, step, and call ``check`` every ``eval_every`` steps until it says stop; returns steps."""
    rng, steps = np.random.default_rng(seed), 0
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(math.ceil(spec.epochs or 1)):
        order = torch.from_numpy(rng.permutation(len(x)))
        for i in range(steps_per_epoch):
            idx = order[i * BATCH:(i + 1) * BATCH]
            step(xt[idx], yt[idx])
            steps += 1
            if steps % eval_every == 0 and check():
                return steps
    return steps


def reached_spread(reached: list[float], runs: int) -> dict[str, Any]:
    """seconds_to_target (the median over repeats) with _min and _max; None when a repeat missed."""
    if len(reached) != runs or not reached:
        return {"seconds_to_target": None}
    return {"seconds_to_target": statistics.median(reached), "seconds_to_target_min": min(reached),
            "seconds_to_target_max": max(reached)}


def median_curve(curves: list[list[list[float]]], reached: list[float | None]) -> list[list[float]]:
    """The time-to-accuracy curve ([seconds, accuracy] per evaluation) of the median repeat."""
    if not curves:
        return []
    order = sorted(range(len(curves)), key=lambda i: (reached[i] is None, reached[i] or 0.0))
    return curves[order[len(order) // 2]]


def _summary(runs: list[dict[str, Any]], grad_bytes: float, sync_ms: float) -> dict[str, Any]:
    """Median over repeats of seconds_to_target (None when any repeat missed the target)."""
    reached = [r["seconds_to_target"] for r in runs if r["seconds_to_target"] is not None]
    last = runs[-1]
    return {
        "test_accuracy": last["accuracy"],
        **reached_spread(reached, len(runs)),
        "curve": median_curve([r["curve"] for r in runs], [r["seconds_to_target"] for r in runs]),
        "samples_per_s": statistics.median(r["samples"] / r["seconds"] for r in runs),
        "grad_bytes_per_step": grad_bytes,
        "ms_per_sync_round": sync_ms,
        "steps_to_target": last["steps"],
        "samples_to_target": last["samples"],
        "repeats": len(runs),
        "seconds_to_target_runs": [r["seconds_to_target"] for r in runs],
        "status": "ok" if len(reached) == len(runs) else "target_not_reached",
    }


def _one_run(spec: JobSpec, ds: Dataset, x: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
    model = build_model(spec)
    opt, loss = build_optimizer(spec, model.parameters()), loss_fn(spec)
    sched = build_scheduler(spec, opt)
    state: dict[str, Any] = {"accuracy": None, "seconds_to_target": None, "curve": []}

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss(model(xb), yb).backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()

    def check() -> bool:
        state["accuracy"] = evaluate(model, ds.x_test, ds.y_test, spec)["test_accuracy"]
        seconds = time.perf_counter() - t0
        state["curve"].append([seconds, state["accuracy"]])
        if state["accuracy"] >= TARGET:
            state["seconds_to_target"] = seconds
            return True
        return False

    t0 = time.perf_counter()
    steps = run_epochs(step, x, y, spec, math.ceil(len(x) / BATCH), EVAL_EVERY_SAMPLES // BATCH, check, seed)
    return {**state, "steps": steps, "samples": steps * BATCH, "seconds": time.perf_counter() - t0}


def single_process(quick: bool, n: int = 3) -> dict[str, Any]:
    """One torch process (1 thread) over the whole train split, batch 64; ``n`` repeats."""
    set_threads(1)
    spec = workload_spec(quick)
    ds = load_dataset(spec.data)
    runs = [_one_run(spec, ds, ds.x_train, ds.y_train, seed) for seed in range(n)]
    return {**_summary(runs, 0.0, 0.0), "note": "no exchange: grad bytes and sync round are 0"}


def ddp_gloo(quick: bool, n: int = 3, timeout_s: float = 600.0) -> dict[str, Any]:
    """Launch 2 DDP worker processes (gloo, loopback) for ``n`` repeats; rank 0's JSON result is the
    answer."""
    port = free_port()
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": str(port)}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rank0.json"
        cmd = [sys.executable, "-m", "benchmarks.training_baselines", "ddp-worker", "--world", str(WORKERS),
               "--out", str(out), "--repeat", str(n)] + (["--quick"] if quick else [])
        procs = [subprocess.Popen([*cmd, "--rank", str(r)], env=env, cwd=ROOT) for r in range(WORKERS)]
        try:
            codes = [p.wait(timeout=timeout_s) for p in procs]
        except subprocess.TimeoutExpired:
            codes = [-1]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        if not out.exists():
            return empty_result("failed", f"ddp workers exited with {codes}")
        result: dict[str, Any] = json.loads(out.read_text())
        if any(codes):  # rank 0 measured and wrote everything before a rank died tearing gloo down
            result["teardown_exit_codes"] = codes  # (seen: SIGABRT "terminate called" at exit)
        return result


def _allreduce_ms(n_params: int, rounds: int = 40) -> float:
    """Median time of one gloo all-reduce of a gradient-sized float32 buffer (DDP's sync round)."""
    import torch.distributed as dist

    buf = torch.zeros(n_params)
    times = []
    for i in range(rounds + 5):
        t = time.perf_counter()
        dist.all_reduce(buf)
        if i >= 5:
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _ddp_run(spec: JobSpec, ds: Dataset, rank: int, world: int, seed: int) -> dict[str, Any]:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    parts = assign("random", ds.x_train, ds.y_train, world, spec.data.seed)
    x, y = ds.x_train[parts == rank], ds.y_train[parts == rank]
    steps_per_epoch = math.ceil(int(np.bincount(parts).min()) / BATCH)  # every rank steps alike
    model = DDP(build_model(spec))
    opt, loss = build_optimizer(spec, model.parameters()), loss_fn(spec)
    sched = build_scheduler(spec, opt)
    state: dict[str, Any] = {"accuracy": None, "seconds_to_target": None, "curve": []}
    flag = torch.zeros(1)

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss(model(xb), yb).backward()  # type: ignore[no-untyped-call]  # DDP all-reduces during backward
        opt.step()
        sched.step()

    def check() -> bool:
        if rank == 0:
            state["accuracy"] = evaluate(model.module, ds.x_test, ds.y_test, spec)["test_accuracy"]
            seconds = time.perf_counter() - t0
            state["curve"].append([seconds, state["accuracy"]])
            flag.fill_(1.0 if state["accuracy"] >= TARGET else 0.0)
            if flag.item():
                state["seconds_to_target"] = seconds
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    dist.barrier()
    t0 = time.perf_counter()
    steps = run_epochs(step, x, y, spec, steps_per_epoch, EVAL_EVERY_SAMPLES // (BATCH * world), check,
                       seed + 1000 * rank)
    seconds = time.perf_counter() - t0
    return {**state, "steps": steps, "samples": steps * BATCH * world, "seconds": seconds}


def ddp_worker(rank: int, world: int, out: Path, quick: bool, n: int = 3) -> None:
    """One DDP process: rendezvous over loopback, train its half, rank 0 writes the result."""
    import torch.distributed as dist

    set_threads(1)
    spec = workload_spec(quick)
    ds = load_dataset(spec.data)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        runs = [_ddp_run(spec, ds, rank, world, seed) for seed in range(n)]
        n_params = sum(p.numel() for p in build_model(spec).parameters())
        sync_ms = _allreduce_ms(n_params)
        if rank == 0:
            result = {**_summary(runs, float(n_params * 4), sync_ms), "world_size": world,
                      "note": "grad bytes = float32 gradients all-reduced per process per step; "
                              "sync round = one gloo all-reduce of that buffer"}
            out.write_text(json.dumps(result))
        dist.barrier()  # no rank tears down while the other still talks to it
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("ddp-worker")
    w.add_argument("--rank", type=int, required=True)
    w.add_argument("--world", type=int, default=WORKERS)
    w.add_argument("--out", type=Path, required=True)
    w.add_argument("--quick", action="store_true")
    w.add_argument("--repeat", type=int, default=3)
    sub.add_parser("single").add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "ddp-worker":
        ddp_worker(args.rank, args.world, args.out, args.quick, args.repeat)
    else:
        print(json.dumps(single_process(args.quick)))


if __name__ == "__main__":
    main()
