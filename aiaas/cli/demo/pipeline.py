"""The demo's steps, in order; every process it starts is stopped on the way out."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis.asyncio as aioredis
from rich.console import Console

from aiaas.agents.bridge.keys import KeyStore
from aiaas.agents.bridge.rediskeys import RedisKeys
from aiaas.agents.bridge.serve import ServePlan, infrastructure, start_children, stop_children
from aiaas.agents.launcher import LocalJob
from aiaas.agents.processes import free_port
from aiaas.cli.demo.callers import CONCURRENCY, CallResults, call_http_async, call_http_sync, call_kafka
from aiaas.cli.demo.progress import follow_training
from aiaas.cli.demo.receiver import Receiver
from aiaas.cli.demo.report import Summary, report
from aiaas.data.datasets import raw_split
from aiaas.registry.store import Registry
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.records import JobStatus
from aiaas.streams.acls import login_as, tenant_user
from aiaas.streams.admin import Admin
from aiaas.streams.lifecycle import cancel
from aiaas.streams.settings import Settings

console = Console()
MODEL = "digits"
TENANT = "demo"  # its HTTP API key, and with access control on its Kafka user (tenant-demo)


@dataclass
class DemoPlan:
    out: Path
    epochs: float = 40
    port: int = 0
    trainers: int = 2
    workers: int = 2
    rows: int | None = None  # only the first rows of the test split are called (a short demo)
    job_id: str = field(default_factory=lambda: time.strftime("demo-%Y%m%d-%H%M%S"))


def job_spec(plan: DemoPlan) -> JobSpec:
    return JobSpec.model_validate({
        "job_id": plan.job_id,
        "model": {"input_dim": 64, "hidden": [256, 256], "output_dim": 10},
        "loss": "cross_entropy",
        "optimizer": {"name": "adam", "lr": 2e-3},
        "batch_size": 64, "epochs": plan.epochs, "eval_interval": 5, "checkpoint_interval": 25,
        "sync": {"mode": "sync", "straggler_deadline_ms": 1000},
        "target": {"metric": "test_accuracy", "value": 0.97},
        "trainers": plan.trainers,
        "data": {"source": "digits", "partitions": plan.trainers, "strategy": "stratified"},
        "export": {"model_name": MODEL, "stage": "production"},
    })


async def run_demo(plan: DemoPlan) -> bool:
    """Run every step; print the summary and the JSON line; True when all went well."""
    os.environ.setdefault("AIAAS_LOG_LEVEL", "WARNING")  # the agents we start keep the console readable
    settings = Settings()
    summary = Summary(job_id=plan.job_id)
    try:
        await step("infrastructure (Kafka KRaft + Redis)", infrastructure(settings))
        spec = job_spec(plan)
        status = await train(settings, spec, plan, summary)
        summary.trained(status)
        x, y = test_split(spec)
        x, y = x[:plan.rows], y[:plan.rows]
        async with serving(settings, plan) as (url, key, secret, receiver):
            summary.calls = await call_everything(settings, url, key, secret, receiver, x, y)
    except Exception as exc:  # the demo reports any failure and exits non-zero
        summary.failure = f"{type(exc).__name__}: {exc}"
        console.print(f"[red]demo failed:[/] {summary.failure}")
        console.print(traceback.format_exc(), markup=False)
    return report(summary, plan.out, console)


async def step(title: str, coro: object) -> object:
    with console.status(title):
        started = time.perf_counter()
        result = await coro  # type: ignore[misc]
    console.print(f"[green]✓[/] {title} ({time.perf_counter() - started:.1f} s)")
    return result


async def train(settings: Settings, spec: JobSpec, plan: DemoPlan, summary: Summary) -> JobStatus:
    """Push digits, run the aggregator and the trainers, follow progress until the final status."""
    logs = plan.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    async with LocalJob(settings, spec, trainers=plan.trainers, log_dir=logs) as job:
        console.print(f"[green]✓[/] pushed digits to Kafka and started the aggregator + "
                      f"{plan.trainers} trainers (sync mode, job {spec.job_id})")
        follower = asyncio.create_task(follow_training(settings, spec.job_id, summary, console))
        try:
            status = await job.wait(timeout_s=480)
        finally:
            await cancel(follower, quiet=True)
    if status.state == "missed_target":  # held in staging; the demo serves it all the same, and says so
        console.print(f"[yellow]![/] {status.error}")
        if status.model_version is not None:
            async with Registry(settings) as registry:
                await registry.promote(MODEL, status.model_version)
            console.print(f"[yellow]![/] promoted {MODEL} v{status.model_version} for the demo")
    elif status.state != "succeeded":
        raise RuntimeError(f"training {status.state}: {status.error}")
    console.print(f"[green]✓[/] trained: test accuracy {status.metrics.get('test_accuracy', 0):.4f}, "
                  f"registered {status.model_name} v{status.model_version}")
    return status


def test_split(spec: JobSpec) -> tuple[np.ndarray, np.ndarray]:
    """The same held-out rows the aggregator evaluated on (same DataSpec, same seed), as a caller
    holds them: raw features (the served model scales them itself) and the digits' values."""
    raw = raw_split(spec.data)
    return raw.x_test.astype(np.float32), raw.test_values.astype(np.int64)


@contextlib.asynccontextmanager
async def serving(settings: Settings, plan: DemoPlan) -> AsyncIterator[tuple[str, str, str, Receiver]]:
    """2 inference workers + the bridge (auth on, loopback callbacks allowed) + a callback receiver."""
    port = plan.port or free_port()
    serve_plan = ServePlan(model_path=Path("-"), name=MODEL, port=port, replicas=plan.workers)
    async with Receiver() as receiver:
        try:
            with console.status(f"starting {plan.workers} inference workers and the bridge"):
                url = await start_children(settings, serve_plan, bridge_env={
                    "AIAAS_BRIDGE_CALLBACK_ALLOWLIST": '["127.0.0.1/32"]',
                })
                async with Admin(settings) as admin:  # measure after the group's rebalance, not during it
                    await admin.wait_group_stable(f"{settings.topic_prefix}inference.{MODEL}", plan.workers)
            console.print(f"[green]✓[/] serving {MODEL} at {url} ({plan.workers} workers)")
            key, secret = await api_key(settings)
            yield url, key, secret, receiver
        finally:
            await stop_children(serve_plan)


async def api_key(settings: Settings) -> tuple[str, str]:
    """A fresh API key of tenant ``demo`` (``TENANT``) and the tenant's webhook signing secret."""
    client = aioredis.from_url(settings.redis_url)
    try:
        key, _, tenant = await KeyStore(client, RedisKeys(settings)).create(TENANT)
    finally:
        await client.aclose()
    return key, tenant.secret


async def call_everything(settings: Settings, url: str, key: str, secret: str, receiver: Receiver,
                          x: np.ndarray, y: np.ndarray) -> CallResults:
    """A third of the test split each: HTTP sync, HTTP async with signed callbacks, Kafka client."""
    parts = np.array_split(np.arange(len(x)), 3)
    with console.status("warming up (connections, metadata; not counted)"):
        await call_http_sync(url, key, x, parts[0][:CONCURRENCY], CallResults(labels=y))
    results = CallResults(labels=y)
    with console.status("calling the model: HTTP sync"):
        await call_http_sync(url, key, x, parts[0], results)
    console.print(f"[green]✓[/] HTTP sync: {len(parts[0])} requests")
    with console.status("calling the model: HTTP async with signed callbacks"):
        await call_http_async(settings, url, key, secret, receiver, x, parts[1], results)
    console.print(f"[green]✓[/] HTTP async + signed callbacks: {len(parts[1])} requests")
    caller = login_as(settings, tenant_user(TENANT)) if settings.role_users else settings
    with console.status("calling the model: Kafka client (pipelined)"):
        await call_kafka(caller, x, parts[2], results)
    console.print(f"[green]✓[/] Kafka client: {len(parts[2])} requests")
    return results
