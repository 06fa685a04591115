"""What payload encryption costs: Kafka inference throughput with sealed requests and replies over
clear ones, measured side by side (docs/security.md, "Payload encryption").

    python -m benchmarks.encryption [--quick] [--repeat 5] [--requests 20000] [--window 256]

Per payload size, one inference worker process (``python -m aiaas.agents.inference`` on a small
ONNX MLP) holds tenant acme's data key; two clients in this process take turns against it, one in
clear and one sealing under acme's key (it opens the sealed replies too). A turn is ``--requests``
single-row requests pipelined with ``--window`` in flight (``infer_many``), after a warm-up; the
turns of a repeat go clear, sealed, sealed, clear (so drift in the machine's load hits both alike)
and a repeat's ratio is sealed / clear requests per second. ``encrypt_overhead`` is the median
ratio of the small payload (the workload ``benchmarks.autoscale`` measures: 16 float32 features),
with min and max; the ``large`` row (4096 features, 16 KiB a request) shows the cost per byte.
Target (issue 19): ``encrypt_overhead`` >= 0.85.
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
from benchmarks.common import add_repeat, emit, fresh_prefix, machine, spread
from tests import examples
from tests.spawn import spawn_workers

SIZES = {"small": 16, "large": 4096}
PARTITIONS = 4


async def _turn(client: InferenceClient, model: str, x: np.ndarray, n: int, window: int) -> float:
    """Requests per second of ``n`` pipelined requests (every one must succeed)."""
    began = time.perf_counter()
    bad = 0
    async for _, r in client.infer_many(model, ({"input": x} for _ in range(n)), window=window, timeout=120):
        bad += not isinstance(r, InferResult)
    if bad:
        raise RuntimeError(f"{bad} of {n} requests failed")
    return n / (time.perf_counter() - began)


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
    clear_rates, sealed_rates, ratios = [], [], []
    async with spawn_workers(settings, model, 1, env={"AIAAS_DATA_KEYS": key_file_json([key])}), \
            InferenceClient(settings) as clear, \
            InferenceClient(settings, sealer=Sealer(Keyring([key]), "acme")) as sealed:
        for client in (clear, sealed):  # the worker up, both paths warm
            await client.infer(model, {"input": x}, timeout=180)
            await _turn(client, model, x, max(200, n // 10), args.window)
        for _ in range(args.repeat):
            c1 = await _turn(clear, model, x, n, args.window)
            s1 = await _turn(sealed, model, x, n, args.window)
            s2 = await _turn(sealed, model, x, n, args.window)
            c2 = await _turn(clear, model, x, n, args.window)
            clear_rates.append((c1 + c2) / 2)
            sealed_rates.append((s1 + s2) / 2)
            ratios.append(sealed_rates[-1] / clear_rates[-1])
    return {"features": features, "request_bytes": x.nbytes, "requests_per_turn": n,
            **spread("clear_req_s", clear_rates, 1), **spread("sealed_req_s", sealed_rates, 1),
            **spread("ratio", ratios, 3), "ratios": [round(r, 3) for r in ratios]}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """``encrypt_overhead`` (and its min/max) plus a row per payload size."""
    rows = {name: await measure_size(features, args) for name, features in SIZES.items()}
    small = rows["small"]
    return {"encrypt_overhead": small["ratio"], "encrypt_overhead_min": small["ratio_min"],
            "encrypt_overhead_max": small["ratio_max"], "encrypt_repeats": args.repeat,
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
