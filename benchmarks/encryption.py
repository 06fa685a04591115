"""What payload encryption costs: Kafka inference throughput with sealed requests and replies over
clear ones, measured side by side (docs/security.md, "Payload encryption").

    python -m benchmarks.encryption [--quick] [--repeat 5] [--requests 20000] [--window 256]

Per payload size, one inference worker process (``python -m aiaas.agents.inference`` on a small
ONNX MLP) holds tenant acme's data key; two clients in this process take turns against it, one in
clear and one sealing under acme's key (it opens the sealed replies too). A turn is ``--requests``
single-row requests pipelined with ``--window`` in flight (``infer_many``), after a warm-up; the
turns of a repeat go clear, sealed, sealed, clear (so drift in the machine's load hits both alike)
and a repeat's ratio is sealed / clear requests per second. The CPU time of the worker and this
process per request is taken over the same turns (``encrypt_overhead_cpu``: clear / sealed CPU per
request), a figure other processes' load moves far less than throughput on a shared machine.
``encrypt_overhead`` is the median ratio of the small payload (the workload of
``benchmarks.autoscale``: 16 float32 features), with min and max; the ``large`` row (4096
features, 16 KiB a request) shows the cost per byte. Target (issue 19): ``encrypt_overhead`` >= 0.85.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Any

import numpy as np

from aiaas.client.inference import InferenceClient, InferResult
from aiaas.registry.store import Registry
from aiaas.streams.admin import Admin
from aiaas.streams.envelope import Sealer
from aiaas.streams.keyring import Keyring, key_file_json, new_key
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from benchmarks.common import add_repeat, cpu_seconds, emit, fresh_prefix, machine, spread
from tests import examples
from tests.spawn import spawn_workers

SIZES = {"small": 16, "large": 4096}
PARTITIONS = 4


class Turns:
    """Turns against one worker process: requests per second, and CPU microseconds per request of
    the worker and of this process (the client), which the machine's load moves far less."""

    def __init__(self, model: str, x: np.ndarray, window: int, worker_pid: int) -> None:
        self.model, self.x, self.window, self.pid = model, x, window, worker_pid
        self.rates: dict[str, list[float]] = {"clear": [], "sealed": []}
        self.cpu: dict[str, list[float]] = {"clear": [], "sealed": []}

    async def run(self, client: InferenceClient, n: int, kind: str | None = None) -> None:
        """``n`` pipelined requests (every one must succeed); recorded under ``kind`` when given."""
        began, cpu0 = time.perf_counter(), time.process_time() + cpu_seconds(self.pid)
        bad = 0
        async for _, r in client.infer_many(self.model, ({"input": self.x} for _ in range(n)),
                                            window=self.window, timeout=120):
            bad += not isinstance(r, InferResult)
        if bad:
            raise RuntimeError(f"{bad} of {n} requests failed")
        if kind is not None:
            self.rates[kind].append(n / (time.perf_counter() - began))
            self.cpu[kind].append((time.process_time() + cpu_seconds(self.pid) - cpu0) / n * 1e6)


async def measure_size(features: int, args: argparse.Namespace) -> dict[str, Any]:
    """Clear and sealed throughput against one worker, ``args.repeat`` times, side by side."""
    settings = Settings(topic_prefix=fresh_prefix(f"encrypt{features}"))
    model = f"enc{features}"
    async with Registry(settings) as reg:
        await reg.publish(model, examples.mlp([features, 16, 4], seed=1), stage="production")
    async with Admin(settings) as admin:
        await admin.ensure_topics([Topics(settings).infer_requests(model, PARTITIONS)])
    key = new_key("acme", "acme-1")
    x = np.random.default_rng(0).normal(size=(1, features)).astype(np.float32)
    n = (args.requests_large if features > 1000 else args.requests) // (4 if args.quick else 1)
    async with spawn_workers(settings, model, 1, env={"AIAAS_DATA_KEYS": key_file_json([key])}) as procs, \
            InferenceClient(settings) as clear, \
            InferenceClient(settings, sealer=Sealer(Keyring([key]), "acme")) as sealed:
        turns = Turns(model, x, args.window, procs[0].proc.pid)
        for client in (clear, sealed):  # the worker up, both paths warm
            await client.infer(model, {"input": x}, timeout=180)
            await turns.run(client, max(200, n // 10))
        for _ in range(args.repeat):  # clear, sealed, sealed, clear
            for client, kind in ((clear, "clear"), (sealed, "sealed"), (sealed, "sealed"), (clear, "clear")):
                await turns.run(client, n, kind)
    pair = {k: [(a + b) / 2 for a, b in zip(v[::2], v[1::2], strict=True)] for k, v in turns.rates.items()}
    cpu = {k: [(a + b) / 2 for a, b in zip(v[::2], v[1::2], strict=True)] for k, v in turns.cpu.items()}
    ratios = [s / c for s, c in zip(pair["sealed"], pair["clear"], strict=True)]
    cpu_ratios = [c / s for s, c in zip(cpu["sealed"], cpu["clear"], strict=True)]
    return {"features": features, "request_bytes": x.nbytes, "requests_per_turn": n,
            **spread("clear_req_s", pair["clear"], 1), **spread("sealed_req_s", pair["sealed"], 1),
            **spread("ratio", ratios, 3), "ratios": [round(r, 3) for r in ratios],
            **spread("clear_cpu_us_per_req", cpu["clear"], 1),
            **spread("sealed_cpu_us_per_req", cpu["sealed"], 1),
            **spread("cpu_ratio", cpu_ratios, 3)}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """``encrypt_overhead`` (and its min/max) plus a row per payload size."""
    rows = {name: await measure_size(features, args) for name, features in SIZES.items()}
    small = rows["small"]
    return {"encrypt_overhead": small["ratio"], "encrypt_overhead_min": small["ratio_min"],
            "encrypt_overhead_max": small["ratio_max"],
            "encrypt_overhead_cpu": small["cpu_ratio"], "encrypt_overhead_cpu_min": small["cpu_ratio_min"],
            "encrypt_overhead_cpu_max": small["cpu_ratio_max"], "encrypt_repeats": args.repeat,
            "encrypt_window": args.window, "encrypt_sizes": rows,
            "encrypt_meets_target": small["ratio"] >= 0.85}


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--requests", type=int, default=20000, help="small requests per turn")
    p.add_argument("--requests-large", type=int, default=1000, help="large requests per turn")
    p.add_argument("--window", type=int, default=256, help="requests in flight")


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a quarter of the requests per turn")
    add_repeat(p, default=5)
    add_args(p)
    with contextlib.suppress(KeyboardInterrupt):
        args = p.parse_args()
        emit({"benchmark": "encryption", "machine": machine(), "quick": args.quick, **run(measure(args))})


if __name__ == "__main__":
    cli()
