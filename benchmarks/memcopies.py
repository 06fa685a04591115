"""Parameter copies per process: peak RSS of a trainer and the aggregator, in model sizes.

One trainer and one aggregator process (``LocalJob``) train an MLP 64-5000-5000-10 (25.4M
parameters by default: a 97 MiB float32 gradient, 25 chunks of 4 MiB) in sync mode with Adam for a
few steps against the broker, then the same with a small model (64-500-500-10). Each process's
high-water mark (``VmHWM``, sampled while it runs), less the small run's, divided by the difference
in parameter bytes is ``copies``: everything parameter-sized at the busiest moment (weights,
gradients, records, reassembly and producer buffers, allocator slack), start-up costs (torch, the
clients) cancelled out. ``training_copies``: the same until the aggregator logs that the job stops
(before its final publish, checkpoint and ONNX export). Adam's two moments, where a process holds
them (the aggregator; the trainer builds no optimizer in sync mode), are optimizer state, reported
as ``optimizer_copies``; ``param_copies`` is the rest.

    python -m benchmarks.memcopies [--hidden 5000] [--steps 6] [--compression none|fp16|topk]
"""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path
from typing import Any

from aiaas.agents.launcher import LocalJob
from aiaas.schemas.jobs import JobSpec
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from benchmarks.common import emit, fresh_prefix, machine


def spec(hidden: int, steps: int, compression: str) -> JobSpec:
    comp: dict[str, Any] = {"kind": compression}
    if compression == "topk":
        comp["ratio"] = 0.01
    return JobSpec.model_validate({
        "job_id": f"bench-mem-{uuid.uuid4().hex[:6]}",
        "model": {"input_dim": 64, "hidden": [hidden, hidden], "output_dim": 10},
        "optimizer": {"name": "adam", "lr": 1e-3}, "batch_size": 64, "steps": steps, "trainers": 1,
        "eval_interval": steps, "checkpoint_interval": steps, "compression": comp,
        "sync": {"mode": "sync", "straggler_deadline_ms": 60000},
        "data": {"source": "digits", "partitions": 1}, "export": {"register_model": False},
    })


def kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def _watch(job: LocalJob, peaks: dict[str, int], trace: dict[str, list[int]],
                 stop: asyncio.Event) -> None:
    """Each process's high-water mark (``<name>:training`` until the aggregator logs that the job
    stops: the final publish, checkpoint and ONNX export come after), and its RSS (MiB) every
    0.5 s for ``--trace``."""
    tick = 0
    while not stop.is_set():
        procs = [("aggregator", job.aggregator), *(("trainer", p) for p in job.trainer_procs.values())]
        training = "stops at version" not in job.log_text("aggregator")
        for name, proc in procs:
            if proc is not None and proc.returncode is None:
                peaks[name] = max(peaks.get(name, 0), kib(proc.pid, "VmHWM"))
                if training:
                    peaks[name + ":training"] = peaks[name]
                if tick % 10 == 0:
                    trace.setdefault(name, []).append(kib(proc.pid, "VmRSS") // 1024)
        tick += 1
        await asyncio.sleep(0.05)


def one_run(hidden: int, steps: int, compression: str, trace: bool = False,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    settings = Settings(topic_prefix=fresh_prefix("mem"))
    job_spec = spec(hidden, steps, compression)
    peaks: dict[str, int] = {}
    series: dict[str, list[int]] = {}

    async def job() -> Any:
        async with LocalJob(settings, job_spec, env=env) as procs:
            stop = asyncio.Event()
            watcher = asyncio.create_task(_watch(procs, peaks, series, stop))
            try:
                return await procs.wait(300)
            finally:
                stop.set()
                await watcher

    status = run(job())
    params = 64 * hidden + hidden + hidden * hidden + hidden + hidden * 10 + 10
    out: dict[str, Any] = {"state": status.state, "params": params, "param_mb": round(params * 4 / 2**20, 1)}
    for name in ("trainer", "aggregator"):
        out[name] = {"peak_rss_mb": round(peaks.get(name, 0) / 1024, 1),
                     "training_peak_rss_mb": round(peaks.get(name + ":training", 0) / 1024, 1)}
    if trace:
        out["rss_mb_every_0.5s"] = series
    return out


def copies(big: dict[str, Any], small: dict[str, Any]) -> None:
    """Per process, in ``big``: (peak RSS - the small model's peak RSS) / (parameter bytes - the
    small model's): what grows with the model, in model sizes (start-up costs cancel out)."""
    size = big["param_mb"] - small["param_mb"]
    for name, opt in (("trainer", 0), ("aggregator", 2)):
        grow = (big[name]["peak_rss_mb"] - small[name]["peak_rss_mb"]) / size
        train = (big[name]["training_peak_rss_mb"] - small[name]["training_peak_rss_mb"]) / size
        big[name].update(small_peak_rss_mb=small[name]["peak_rss_mb"], copies=round(grow, 2),
                         optimizer_copies=opt, param_copies=round(grow - opt, 2),
                         training_copies=round(train, 2), training_param_copies=round(train - opt, 2))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=5000)
    ap.add_argument("--small-hidden", type=int, default=500, help="the model whose peaks are subtracted")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--compression", default="none", choices=["none", "fp16", "topk"])
    ap.add_argument("--trace", action="store_true", help="add each process's RSS every 0.5 s")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the job's processes")
    args = ap.parse_args(argv)
    env = dict(e.split("=", 1) for e in args.env)
    small = one_run(args.small_hidden, args.steps, args.compression, False, env)
    result = one_run(args.hidden, args.steps, args.compression, args.trace, env)
    copies(result, small)
    result.update(compression=args.compression, env=env, machine=machine())
    emit(result)
    return result


if __name__ == "__main__":
    main()
