"""Inference benchmark: onnxruntime in-process (compute limit), a bare aiokafka echo (transport
limit), and end to end through Kafka with 2 worker processes and the pipelined client.

    python -m benchmarks.inference [--quick] [--repeat N] [--models mlp-large,digits] [--workers 2]

Per model, under ``models.<name>``: raw_ort_per_s, echo_per_s, kafka_per_s (binary tensors),
kafka_json_per_s, ratio_kafka_vs_limit = kafka_per_s / min(raw_ort_per_s, echo_per_s),
per_request_per_s (same workers with batching off and a client that sends one record per request:
one request per poll, per onnxruntime call and per reply, as a one-request-per-call server does),
speedup_vs_per_request, ratio_kafka_vs_raw_ort (kafka_per_s / raw_ort_per_s, given as well because
the Kafka path packs requests as rows of frames, see aiaas.streams.frame, while the echo moves one
record per request), and p50/p99 latency in ms at 50 requests/s. Everything runs side by side in
one run on this machine (broker included): raw onnxruntime, echo and Kafka rounds alternate (one
round per ``--repeat``), so load from other processes hits all sides alike. raw_ort_per_s,
echo_per_s, kafka_per_s and ratio_kafka_vs_limit (per round: that round's rates) are the medians
over the rounds, each with ``_min`` and ``_max``; ``ratio_kafka_vs_limit_best`` and
``kafka_per_s_best`` are the best rounds' (what this benchmark printed before 2026-12-07), and
kafka_json_per_s and per_request_per_s are best rounds too. The batch-size sweep
that comes first only picks raw onnxruntime's batch size: it runs before the workers, the echo
process and the clients exist, so it is printed (raw_ort_sweep_per_s) but not counted. The echo
(``benchmarks.inference_echo``) sends uncompressed records like the inference client and workers
(float tensors do not compress; lz4 only cost CPU), so both sides move the same bytes the same way.
``cpu_us_per_request`` says where the CPU time of the Kafka path goes: the client process, the
worker processes, and the broker when it runs on this machine (it is shared: other traffic on it
counts too).
Models: ``mlp-large`` (784-2048-2048-10 FP32, random weights) and ``digits`` (64-128-10, trained on
scikit-learn's digits through the training area's torch -> ONNX export, or tests.examples
when torch is missing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from aiaas.client.inference import InferenceClient, InferResult
from aiaas.registry.store import Registry
from aiaas.streams import frame
from aiaas.streams.admin import ensure, wait_for_broker
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from benchmarks.common import add_repeat, emit, fresh_prefix, machine, percentile, spread
from benchmarks.inference_echo import EchoProcess, echo_client
from tests import examples
from tests.spawn import spawn_workers, until_processes_balanced

PARTITIONS = 8


def digits_model() -> tuple[bytes, int]:
    """The training area's digits MLP (torch, exported with its standardisation), else ours."""
    try:
        import torch
        from sklearn.datasets import load_digits

        from aiaas.ml.export import export_onnx
        from aiaas.ml.models import mlp, set_threads
        from aiaas.schemas.jobs import MLPSpec
    except ImportError:
        return examples.digits_mlp()[0], 64
    set_threads(1)
    x, y = load_digits(return_X_y=True)
    mean, std = x.mean(0), x.std(0) + 1e-6
    module = mlp(MLPSpec(input_dim=64, hidden=[128], output_dim=10))
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    xt, yt = torch.tensor((x - mean) / std, dtype=torch.float32), torch.tensor(y)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(module(xt), yt).backward()  # type: ignore[no-untyped-call]
        opt.step()
    return export_onnx(module, 64, (mean, std)), 64


MODELS: dict[str, Callable[[], tuple[bytes, int]]] = {
    "mlp-large": lambda: (examples.mlp([784, 2048, 2048, 10], seed=0), 784),
    "digits": digits_model,
}


# ---------------------------------------------------------------------------------- compute limit


class RawOrt:
    """In-process onnxruntime on all cores: the compute limit, at its best batch size."""

    def __init__(self, data: bytes, dim: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = os.cpu_count() or 1
        # no spin-waiting: idle pool threads would burn the cores the Kafka rounds measure next
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name
        self.dim = dim
        self.best_batch = 1

    def rate(self, batch: int, seconds: float) -> float:
        x = np.random.default_rng(0).normal(size=(batch, self.dim)).astype(np.float32)
        self.session.run(None, {self.name: x})
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.session.run(None, {self.name: x})
            n += batch
        return n / (time.perf_counter() - start)

    def sweep(self, seconds: float) -> float:
        """Try batch sizes; remember the best."""
        rates = {bs: self.rate(bs, seconds) for bs in (1, 8, 32, 128, 512)}
        self.best_batch = max(rates, key=lambda bs: rates[bs])
        return rates[self.best_batch]


# ---------------------------------------------------------------------------------- through Kafka


async def pipelined(client: InferenceClient, model: str, xs: np.ndarray, n: int, binary: bool,
                    window: int) -> float:
    """Requests/s for ``n`` requests (rows of ``xs``, cycled) through the pipelined client."""
    got, start = 0, time.perf_counter()
    rows = ({"input": xs[i % len(xs)]} for i in range(n))
    async for _, r in client.infer_many(model, rows, binary=binary, window=window, timeout=120):
        if not isinstance(r, InferResult):
            raise r
        got += 1
    return got / (time.perf_counter() - start)


async def low_load(client: InferenceClient, model: str, x: np.ndarray, rate: float,
                   count: int) -> list[float]:
    """Latencies (ms) of ``count`` requests sent at ``rate``/s on a fixed schedule (after a warm-up:
    the first calls of a fresh worker set up onnxruntime for batch size 1)."""
    for i in range(20):
        await client.infer(model, {"input": x[i]}, timeout=30, binary=True)
    lat: list[float] = []

    async def one(i: int) -> None:
        t0 = time.perf_counter()
        await client.infer(model, {"input": x[i % len(x)]}, timeout=30, binary=True)
        lat.append((time.perf_counter() - t0) * 1000)

    tasks = []
    start = time.perf_counter()
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))  # the load schedule
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    return lat


async def sized(measure: Callable[[int], Awaitable[float]], seconds: float, warm: int = 1024) -> int:
    """Warm up, then the request count that takes about ``seconds`` at the warm-up rate (at least
    ``warm``: fewer than two windows' worth would measure the pipeline's fill, not its rate)."""
    rate = await measure(warm)
    return int(min(50_000, max(warm, rate * seconds)))


async def bench_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    data, dim = MODELS[name]()
    raw = RawOrt(data, dim)
    swept = await asyncio.to_thread(raw.sweep, 0.3 if args.quick else 1.0)  # picks the batch size
    settings = Settings(topic_prefix=fresh_prefix("inference"), client_id="bench-inference")
    await wait_for_broker(settings)
    single = f"{name}-single"
    async with Registry(settings) as reg:
        await reg.publish(name, data, stage="production")
        await reg.publish(single, data, stage="production")
    echo_topic = Topics(settings).infer_requests(f"{name}-echo", PARTITIONS)
    await ensure(settings, [echo_topic])
    out: dict[str, Any] = {}
    flags = ("--threads", str(max(1, (os.cpu_count() or 1) // args.workers)))
    async with EchoProcess(settings, echo_topic.name), \
            spawn_workers(settings, name, args.workers, *flags) as batched, \
            spawn_workers(settings, single, args.workers, *flags, "--no-batching") as one_by_one, \
            InferenceClient(settings) as client, InferenceClient(settings, pack_requests=1) as unpacked:
        await until_processes_balanced(batched, PARTITIONS)
        await until_processes_balanced(one_by_one, PARTITIONS)
        bench = Bench(settings, client, echo_topic.name, name, dim, args)
        bench.unpacked = unpacked
        bench.worker_pids = [p.proc.pid for p in batched]
        lat = await low_load(client, name, bench.xs, 50.0, 250 if args.quick else 500)
        out.update(await bench.throughputs(single, raw))
    out["raw_ort_sweep_per_s"] = round(swept, 1)
    out["p50_ms_low_load"] = round(percentile(lat, 50), 2)
    out["p99_ms_low_load"] = round(percentile(lat, 99), 2)
    out["ratio_kafka_vs_raw_ort"] = round(out["kafka_per_s"] / out["raw_ort_per_s"], 3)
    out["speedup_vs_per_request"] = round(out["kafka_per_s_best"] / out["per_request_per_s"], 2)
    return out


class Bench:
    """The Kafka-side measurements of one model, sized to take about the same time each."""

    def __init__(self, settings: Settings, client: InferenceClient, echo_topic: str, model: str, dim: int,
                 args: argparse.Namespace) -> None:
        self.settings, self.client, self.echo_topic, self.model = settings, client, echo_topic, model
        self.window = args.window
        self.seconds, self.rounds = (1.0 if args.quick else 3.0), args.repeat
        self.xs = np.random.default_rng(1).normal(size=(4096, 1, dim)).astype(np.float32)
        self.payload = frame.encode([frame.Entry(["x"], {"input": self.xs[0]})])[0]  # one request's frame
        self.worker_pids: list[int] = []
        self.unpacked = client  # the baseline's client: one request per record (no request batches)

    def echo(self, n: int) -> Awaitable[float]:
        return echo_client(self.settings, self.echo_topic, self.payload, n, self.window)

    def kafka(self, n: int, binary: bool = True, model: str | None = None) -> Awaitable[float]:
        client = self.client if model is None else self.unpacked
        return pipelined(client, model or self.model, self.xs, n, binary, self.window)

    async def throughputs(self, single: str, raw: RawOrt) -> dict[str, Any]:
        sizes = {
            "echo": await sized(self.echo, self.seconds),
            "kafka": await sized(self.kafka, self.seconds),
            "json": await sized(lambda n: self.kafka(n, False), self.seconds / 2, warm=256),
            "per_request": await sized(lambda n: self.kafka(n, model=single), self.seconds / 2, warm=256),
        }
        rates: dict[str, list[float]] = {k: [] for k in sizes}
        raw_rates: list[float] = []
        cpu = {"client": 0.0, "workers": 0.0, "broker": 0.0}
        broker = local_broker_pid(self.settings.bootstrap_servers)
        for _ in range(self.rounds):  # alternate, best of each: other load on the machine hits all
            raw_rates.append(await asyncio.to_thread(raw.rate, raw.best_batch, self.seconds / 2))
            rates["echo"].append(await self.echo(sizes["echo"]))
            me, them = time.process_time(), sum(proc_cpu(p) for p in self.worker_pids)
            bk = proc_cpu(broker) if broker else 0.0
            rates["kafka"].append(await self.kafka(sizes["kafka"]))
            cpu["client"] += time.process_time() - me
            cpu["workers"] += sum(proc_cpu(p) for p in self.worker_pids) - them
            cpu["broker"] += (proc_cpu(broker) - bk) if broker else 0.0
            rates["json"].append(await self.kafka(sizes["json"], False))
            rates["per_request"].append(await self.kafka(sizes["per_request"], model=single))
        best = {k: round(max(v), 1) for k, v in rates.items()}
        ratios = [k / min(r, e) for k, r, e in zip(rates["kafka"], raw_rates, rates["echo"], strict=True)]
        return {
            **spread("raw_ort_per_s", raw_rates, 1), "raw_ort_best_batch": raw.best_batch,
            **spread("echo_per_s", rates["echo"], 1), **spread("kafka_per_s", rates["kafka"], 1),
            **spread("ratio_kafka_vs_limit", ratios, 3),
            "ratio_kafka_vs_limit_best": round(best["kafka"] / min(max(raw_rates), best["echo"]), 3),
            "kafka_per_s_best": best["kafka"], "kafka_json_per_s": best["json"],
            "per_request_per_s": best["per_request"], "payload_bytes": len(self.payload),
            "cpu_us_per_request": {k: round(v / (sizes["kafka"] * self.rounds) * 1e6)
                                   for k, v in cpu.items() if k != "broker" or broker},
            "rounds": {"raw_ort_per_s": [round(r) for r in raw_rates],
                       **{f"{k}_per_s": [round(r) for r in v] for k, v in rates.items()},
                       "requests": sizes},
        }


def local_broker_pid(bootstrap: str) -> int | None:
    """The pid of the process listening on the bootstrap port on this machine (Linux /proc), if any."""
    port = int(bootstrap.split(",")[0].rsplit(":", 1)[1])
    sockets: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = [line.split() for line in f.readlines()[1:]]
        except OSError:
            continue
        listening = (r for r in rows if r[3] == "0A")  # 0A: LISTEN
        sockets |= {f"socket:[{r[9]}]" for r in listening if int(r[1].rsplit(":", 1)[1], 16) == port}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()) if sockets else ():
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in sockets for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:
            continue
    return None


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "inference", "quick": args.quick, "machine": machine(),
                              "workers": args.workers, "window": args.window, "models": {}}
    for name in args.models.split(","):
        print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
        load = os.getloadavg()[0]
        result["models"][name] = await bench_model(name, args)
        result["models"][name]["load_average"] = [round(load, 2), round(os.getloadavg()[0], 2)]
        print(f"{name}: {result['models'][name]}", file=sys.stderr, flush=True)
    return result


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short runs (under 3 minutes in all)")
    p.add_argument("--models", default="mlp-large,digits")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--window", type=int, default=512, help="requests in flight (pipelined client)")
    add_repeat(p)
    args = p.parse_args()
    emit(run(main(args)))


if __name__ == "__main__":
    cli()
