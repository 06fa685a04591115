"""aiaas against the server users would pick instead: ``aiaas serve`` vs MLServer 1.7.1, side by side.

    python -m benchmarks.peers [--quick] [--repeat N] [--seconds S] [--profile S]

Both serve the same ONNX file, an MLP 784-2048-2048-10 (FP32, random weights, seed 0): MLServer
1.7.1 (its own venv under ``~/.cache/aiaas/peers``, onnxruntime behind its MLModel, adaptive
batching) and ``aiaas serve FILE --name ...`` (auth on, a key from ``aiaas keys create``). The same
load generator (``benchmarks.httpload``, one process, keep-alive HTTP/1.1) sends the same Open
Inference Protocol JSON body (one 784-float row) at concurrency 1, 8, 32 and 64 (``--quick``: 1 and
32), in timed rounds; each repeat measures every concurrency on both servers, the order alternating
(MLServer first on even repeats, aiaas first on odd ones). Replies are checked first: both servers
give the same argmax as onnxruntime in this process on a few rows.

Last stdout line, one JSON object: ``peers.<mlserver|aiaas>.c<N>`` with ``req_per_s``, ``p50_ms``,
``p99_ms`` (medians over the repeats, ``_min``/``_max`` beside each), ``ratio_vs_mlserver_c32`` and
``ratio_vs_mlserver_c1`` (medians of the per-repeat aiaas/MLServer throughput ratios, _min/_max beside) and
``machine``. Each round's line on stderr also gives the server's own CPU time per request (all its
processes; aiaas's Kafka broker not counted), steadier than rates on a shared machine. A server
that cannot be installed or started is reported on stderr, exit 2, and no figure is printed.
``--profile S`` then records py-spy on aiaas's bridge and one worker for S seconds under
concurrency-32 load and prints their hot spots to stderr (files in ``--profile-dir``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from aiaas.schemas.errors import AiaasError, InferenceError
from aiaas.streams.runtime import run
from benchmarks import common, hotspots
from benchmarks.common import add_repeat, cpu_seconds, emit, fresh_prefix, machine, percentile, spread
from benchmarks.httpload import Round, post_json, request_bytes, run_round
from benchmarks.peerservers import Server, ensure_mlserver, start_aiaas, start_mlserver
from tests import examples

MODEL = "mlp-large"
SIZES = [784, 2048, 2048, 10]
FULL, QUICK = (1, 8, 32, 64), (1, 32)
HOST = "127.0.0.1"


def body_of(row: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "input", "shape": [1, row.size], "datatype": "FP32",
                        "data": row.ravel().tolist()}]}


def argmax_of(reply: Any) -> int:
    """The predicted class of a one-row OIP reply (its ``logits`` output)."""
    out = next(o for o in reply["outputs"] if o["name"] == "logits")
    return int(np.argmax(np.asarray(out["data"], dtype=np.float64)))


async def check_replies(servers: list[Server], onnx_file: Path, rows: np.ndarray) -> None:
    """Every server's argmax equals onnxruntime's here, row by row: a fast wrong answer is no answer."""
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    expected = np.argmax(session.run(None, {"input": rows})[0], axis=1).tolist()
    for server in servers:
        got = []
        for row in rows:
            status, reply = await post_json(HOST, server.port, server.path, body_of(row), server.headers)
            if status != 200:
                raise InferenceError("a check request failed", server=server.name, status=status,
                                     reply=str(reply)[:300])
            got.append(argmax_of(reply))
        if got != expected:
            raise InferenceError("replies differ from onnxruntime's", server=server.name,
                                 argmax=got, expected=expected)
        print(f"peers: {server.name} replies checked on {len(rows)} rows (argmax {got})", file=sys.stderr)


async def measure(servers: list[Server], payload: dict[str, bytes], levels: tuple[int, ...],
                  repeat: int, seconds: float) -> dict[str, dict[int, list[Round]]]:
    """``repeat`` passes over every concurrency on every server, the server order alternating."""
    rounds: dict[str, dict[int, list[Round]]] = {s.name: {c: [] for c in levels} for s in servers}
    for server in servers:  # warm-up: onnxruntime's arenas, connection pools, JIT-less caches
        await run_round(HOST, server.port, payload[server.name], 32, min(seconds, 3.0))
    cpu: dict[str, dict[int, list[float]]] = {s.name: {c: [] for c in levels} for s in servers}
    for rep in range(repeat):
        order = servers if rep % 2 == 0 else servers[::-1]
        for c in levels:
            for server in order:
                cpu0 = server.cpu_seconds()
                r = await run_round(HOST, server.port, payload[server.name], c, seconds)
                cpu[server.name][c].append(1e6 * (server.cpu_seconds() - cpu0) / max(1, r.requests))
                rounds[server.name][c].append(r)
                p50, p99 = percentile(r.latencies_ms, 50), percentile(r.latencies_ms, 99)
                print(f"peers: repeat {rep + 1}/{repeat} c{c} {server.name}: {r.req_per_s:.1f} req/s "
                      f"p50 {p50:.2f} ms p99 {p99:.2f} ms, server CPU {cpu[server.name][c][-1]:.0f} us/req",
                      file=sys.stderr)
    for name, by_c in cpu.items():  # stderr only: the result object's keys are fixed (see the docstring)
        medians = {f"c{c}": round(common.median(v)) for c, v in by_c.items()}
        print(f"peers: {name} server CPU per request (us, median; Kafka broker not counted): {medians}",
              file=sys.stderr)
    return rounds


def summarize(rounds: dict[str, dict[int, list[Round]]]) -> dict[str, Any]:
    """The result object: per server and concurrency min/median/max, and the median ratios."""
    peers: dict[str, Any] = {}
    for name, by_c in rounds.items():
        peers[name] = {f"c{c}": {
            **spread("req_per_s", [r.req_per_s for r in rs], 1),
            **spread("p50_ms", [percentile(r.latencies_ms, 50) for r in rs], 2),
            **spread("p99_ms", [percentile(r.latencies_ms, 99) for r in rs], 2),
        } for c, rs in by_c.items()}
    result: dict[str, Any] = {"peers": peers}
    for c in (32, 1):
        ratios = [a.req_per_s / m.req_per_s
                  for a, m in zip(rounds["aiaas"][c], rounds["mlserver"][c], strict=True)]
        result |= spread(f"ratio_vs_mlserver_c{c}", ratios, 3)
    result["machine"] = machine()
    return result


async def profile(server: Server, py_spy: Path, seconds: float, payload: bytes, out: Path) -> None:
    """py-spy on the bridge and the first worker while concurrency-32 load runs; hot spots to stderr."""
    targets = {"bridge": server.pids["bridge"][0], "worker": server.pids["workers"][0]}
    load = asyncio.ensure_future(run_round(HOST, server.port, payload, 32, seconds + 3))
    await asyncio.sleep(1.0)
    cpu0 = {role: cpu_seconds(pid) for role, pid in targets.items()}
    spies = [await asyncio.create_subprocess_exec(
        str(py_spy), "record", "--nonblocking", "--rate", "200", "--duration", str(int(seconds)),
        "--format", "raw", "--pid", str(pid), "--output", str(out / f"{role}.txt"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE) for role, pid in targets.items()]
    for role, spy in zip(targets, spies, strict=True):
        _, err = await spy.communicate()
        if spy.returncode != 0:
            print(f"peers: py-spy on the {role} failed: {err.decode()[-500:]}", file=sys.stderr)
    used = {role: cpu_seconds(pid) - cpu0[role] for role, pid in targets.items()}
    done = await load
    rate = done.req_per_s
    per_request = {role: round(1e6 * cpu / (rate * seconds)) for role, cpu in used.items()}
    print(f"peers: CPU per request at c32 (us, over {seconds:g} s): {per_request}", file=sys.stderr)
    for role in targets:
        if (out / f"{role}.txt").exists():
            text = hotspots.summary(out / f"{role}.txt", f"aiaas {role}, c32 ({rate:.0f} req/s)")
            (out / f"{role}-top.txt").write_text(text + "\n")
            print(text, file=sys.stderr)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    python = ensure_mlserver()
    levels = QUICK if args.quick else FULL
    rows = np.random.default_rng(1).normal(size=(4, SIZES[0])).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="aiaas-peers-") as tmp:
        work = Path(tmp)
        onnx_file = work / f"{MODEL}.onnx"
        onnx_file.write_bytes(examples.mlp(SIZES, seed=0))
        servers = [await start_mlserver(python, work, onnx_file, MODEL, args.mlserver_workers,
                                        args.max_batch, args.max_batch_time, not args.mlserver_no_spin)]
        try:
            servers.append(await start_aiaas(work, onnx_file, MODEL, args.replicas, fresh_prefix("peers")))
            await check_replies(servers, onnx_file, rows)
            body = json.dumps(body_of(rows[0])).encode()
            payload = {s.name: request_bytes(HOST, s.port, s.path, body, s.headers) for s in servers}
            result = summarize(await measure(servers, payload, levels, args.repeat, args.seconds))
            if args.profile:
                await profile(servers[1], python.parent / "py-spy", args.profile, payload["aiaas"],
                              Path(args.profile_dir))
            return result
        finally:
            for server in servers:
                server.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="concurrency 1 and 32 only, shorter rounds")
    add_repeat(parser)
    parser.add_argument("--seconds", type=float, help="seconds per round (default 8, quick 4)")
    parser.add_argument("--replicas", type=int, default=1, help="aiaas inference workers (default 1)")
    parser.add_argument("--mlserver-workers", type=int, default=1, help="MLServer parallel_workers")
    parser.add_argument("--max-batch", type=int, default=64, help="MLServer max_batch_size")
    parser.add_argument("--max-batch-time", type=float, default=0.002, help="MLServer max_batch_time (s)")
    parser.add_argument("--mlserver-no-spin", action="store_true",
                        help="MLServer's onnxruntime threads do not spin (default: they do, as in aiaas)")
    parser.add_argument("--profile", type=float, default=0.0, metavar="S",
                        help="then py-spy the aiaas bridge and a worker for S seconds at c32")
    parser.add_argument("--profile-dir", default=".run/peers-profile")
    args = parser.parse_args()
    args.seconds = args.seconds or (4.0 if args.quick else 8.0)
    if args.profile:
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
    try:
        result = run(main(args))
    except AiaasError as exc:  # no figure is printed for a server that could not be measured
        print(f"peers: error: {exc.reason}", file=sys.stderr)
        for name, value in exc.details.items():
            print(f"  {name}: {value}", file=sys.stderr)
        raise SystemExit(2) from None
    emit(result)


if __name__ == "__main__":
    cli()
