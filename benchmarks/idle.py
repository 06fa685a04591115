"""Cost at rest: the CPU an idle inference worker and an idle bridge use, from /proc, no traffic.

    python -m benchmarks.idle [--seconds 20] [--repeat 3]

Starts ``aiaas serve`` (one worker, auth on, a small MLP) on the configured broker, sends a few
requests so every path is set up, lets it settle, then reads each process's user + system CPU
time (``/proc/<pid>/stat``, every thread) at the start and the end of a quiet window. The share of
one core is CPU seconds / wall seconds. The target (README, issue 18 item 5) is < 0.005 each.

Last stdout line, one JSON object: ``idle_worker_core_share`` and ``idle_bridge_core_share`` (the
medians over the repeats, ``_min``/``_max`` beside each), ``seconds``, ``machine``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from aiaas.streams.runtime import run
from benchmarks.common import add_repeat, cpu_seconds, emit, fresh_prefix, machine, spread
from benchmarks.httpload import post_json
from benchmarks.peers import body_of
from benchmarks.peerservers import Server, start_aiaas
from tests import examples

MODEL = "idle-mlp"
SIZES = [784, 64, 10]
SETTLE_S = 3.0  # after the warm-up requests: replies, commits and timers started by traffic end


async def warm_up(server: Server, rows: np.ndarray) -> None:
    for row in rows:
        status, reply = await post_json("127.0.0.1", server.port, server.path, body_of(row), server.headers)
        if status != 200:
            raise RuntimeError(f"warm-up request failed: {status} {str(reply)[:200]}")


async def window(pids: dict[str, list[int]], seconds: float) -> dict[str, float]:
    """Share of one core per role (the largest among its processes) over ``seconds`` of quiet."""
    before = {pid: cpu_seconds(pid) for group in pids.values() for pid in group}
    start = time.monotonic()
    await asyncio.sleep(seconds)  # the measurement window itself, not a synchronisation
    wall = time.monotonic() - start
    return {role: max((cpu_seconds(pid) - before[pid]) / wall for pid in group)
            for role, group in pids.items()}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    rows = np.random.default_rng(1).normal(size=(4, SIZES[0])).astype(np.float32)
    shares: dict[str, list[float]] = {"workers": [], "bridge": []}
    with tempfile.TemporaryDirectory(prefix="aiaas-idle-") as tmp:
        onnx_file = Path(tmp) / f"{MODEL}.onnx"
        onnx_file.write_bytes(examples.mlp(SIZES, seed=0))
        server = await start_aiaas(Path(tmp), onnx_file, MODEL, 1, fresh_prefix("idle"))
        try:
            for i in range(args.repeat):
                await warm_up(server, rows)
                await asyncio.sleep(SETTLE_S)  # let traffic-started work finish before the window
                got = await window(server.pids, args.seconds)
                print(f"idle: repeat {i + 1}: worker {got['workers']:.4f}, bridge {got['bridge']:.4f} "
                      f"of a core over {args.seconds:.0f} s", file=sys.stderr)
                for role, share in got.items():
                    shares[role].append(share)
        finally:
            server.stop()
    return {**spread("idle_worker_core_share", shares["workers"], 4),
            **spread("idle_bridge_core_share", shares["bridge"], 4),
            "seconds": args.seconds, "machine": machine()}


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="quiet window per repeat (default 20)")
    add_repeat(parser)
    emit(run(main(parser.parse_args())))


if __name__ == "__main__":
    cli()
