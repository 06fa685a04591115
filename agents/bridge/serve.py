"""``aiaas serve MODEL.onnx --name N`` or ``aiaas serve --model N``: infrastructure, registration,
K workers and a bridge in one go.

The supervisor checks that Kafka and Redis answer; when they do not and the settings point at the
local ones (``AIAAS_KAFKA_PORT``/``AIAAS_REDIS_PORT`` on loopback) it starts them with the shipped
``infra/up.sh`` (state in ``AIAAS_STATE_DIR``, so it works from any directory) and waits up to
``infra_timeout_s``; otherwise it fails at once with one line.
It registers the ONNX file as the production version of ``N`` (or checks that the registered
model ``N`` exists), starts ``replicas`` inference worker processes and one bridge process, prints
where to send requests, and on SIGINT/SIGTERM (or when a child dies) stops them all: SIGTERM
first, SIGKILL after a grace period. On Linux the children also get SIGTERM if the supervisor
itself is killed, so they never outlive it. Children start through aiaas.agents.processes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from aiaas.agents.bridge.keys import KeyStore
from aiaas.agents.bridge.rediskeys import RedisKeys
from aiaas.agents.processes import run_infra, spawn_module, terminate, wait_http_ready
from aiaas.registry.store import Registry
from aiaas.schemas.audit import KEY_CREATE, MODEL_PUSH
from aiaas.schemas.errors import AiaasError, NotFound, Unavailable
from aiaas.schemas.registry import ModelVersion
from aiaas.streams.admin import wait_for_broker
from aiaas.streams.audit import audited
from aiaas.streams.settings import Settings

log = logging.getLogger(__name__)
GRACE_S = 15.0


@dataclass
class ServePlan:
    """What to serve: ``model_path`` registered as ``name``, or (no path) the registered ``name``."""

    model_path: Path | None
    name: str
    port: int = 8080
    host: str = "127.0.0.1"
    replicas: int = 1
    auth: bool = True
    tenant: str = "local"
    infra_timeout_s: float = 60.0
    children: list[asyncio.subprocess.Process] = field(default_factory=list)


async def infrastructure(settings: Settings, timeout_s: float = 60.0) -> None:
    """Start Kafka and Redis with the project's scripts unless both already answer; only the local
    ones are started (a remote address that does not answer fails at once)."""
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # each refused connection would log an ERROR line
    try:
        down = await _unreachable(settings)
        if not down:
            return
        if not _local(settings):
            raise Unavailable("cannot reach Kafka/Redis (not the local ones, so not started here)", **down)
        log.info("starting local infrastructure (infra/up.sh, state in %s)", settings.state_dir)
        try:
            returncode = await run_infra("up.sh", settings.state_dir, timeout_s)
        except TimeoutError:
            raise Unavailable("infra/up.sh did not finish in time", seconds=timeout_s) from None
        if returncode != 0:
            raise Unavailable("infra/up.sh failed; see its output above", returncode=returncode)
        await wait_for_broker(settings, timeout_s=timeout_s)
    finally:
        quiet.setLevel(level)


def _local(settings: Settings) -> bool:
    """Whether the settings name the broker and Redis that infra/up.sh runs on this machine."""
    kafka = os.environ.get("AIAAS_KAFKA_PORT", "19092")
    redis_port = os.environ.get("AIAAS_REDIS_PORT", "16379")
    hosts = ("127.0.0.1", "localhost")
    return (settings.bootstrap_servers in {f"{h}:{kafka}" for h in hosts}
            and any(f"//{h}:{redis_port}" in settings.redis_url for h in hosts))


async def _unreachable(settings: Settings) -> dict[str, Any]:
    """The addresses (``bootstrap``, ``redis``) that do not answer within a few seconds."""
    down: dict[str, Any] = {}
    client = aioredis.from_url(settings.redis_url, socket_connect_timeout=2)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError):
        down["redis"] = settings.redis_url
    finally:
        await client.aclose()
    try:
        await wait_for_broker(settings, timeout_s=3)
    except (AiaasError, OSError):
        down["bootstrap"] = settings.bootstrap_servers
    return down


async def register(settings: Settings, plan: ServePlan) -> ModelVersion:
    """Register the plan's file as production, or find the registered model it names."""
    async with Registry(settings) as reg:
        if plan.model_path is None:
            everything = await reg.list()
            if not any(mv.name == plan.name for mv in everything):
                raise NotFound("no such model", model=plan.name,
                               known=sorted({mv.name for mv in everything}) or "none yet")
            return await reg.get(plan.name)
        data = await asyncio.to_thread(plan.model_path.read_bytes)
        async with audited(settings, MODEL_PUSH, plan.name, producer=reg.producer,
                           file=plan.model_path.name, requested_stage="production") as extra:
            mv = await reg.publish(plan.name, data, stage="production")
            extra.update(version=mv.version, stage=mv.stage)
        return mv


async def start_children(
    settings: Settings, plan: ServePlan, bridge_env: dict[str, str] | None = None
) -> str:
    """K workers following the production version, then the bridge; returns the bridge URL."""
    threads = str(max(1, (os.cpu_count() or 1) // max(1, plan.replicas)))
    # A file is registered as production; a registered model is served as production, else latest.
    stage = ["--stage", "production"] if plan.model_path is not None else []
    for _ in range(plan.replicas):
        plan.children.append(await spawn_module(
            "aiaas.agents.inference", "--model", plan.name, *stage, "--threads", threads,
            env={"OMP_NUM_THREADS": threads}, die_with_parent=True,
        ))
    env = {"AIAAS_BRIDGE_PORT": str(plan.port), "AIAAS_BRIDGE_HOST": plan.host,
           "AIAAS_BRIDGE_AUTH": "true" if plan.auth else "false", **(bridge_env or {})}
    bridge = await spawn_module("aiaas.agents.bridge.main", env=env, die_with_parent=True)
    plan.children.append(bridge)
    host = "127.0.0.1" if plan.host in ("0.0.0.0", "::") else plan.host
    url = f"http://{host}:{plan.port}"
    try:
        await wait_http_ready(f"{url}/v2/health/ready", 120, bridge)
    except RuntimeError:
        raise Unavailable("the bridge exited before it was ready (its log is above)",
                          returncode=bridge.returncode, port=plan.port) from None
    except TimeoutError:
        raise Unavailable("the bridge did not become ready in time", url=url) from None
    return url


async def stop_children(plan: ServePlan, grace_s: float = GRACE_S) -> None:
    """SIGTERM every child, wait, SIGKILL the ones still running."""
    await terminate(plan.children, grace_s)


async def supervise(settings: Settings, plan: ServePlan) -> int:
    """Run everything until a signal (exit 0) or a child's death (exit 1)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await infrastructure(settings, plan.infra_timeout_s)
        mv = await register(settings, plan)
        url = await start_children(settings, plan)
        pids = " ".join(str(p.pid) for p in plan.children)
        print(f"serving {mv.name} v{mv.version} at {url}/v2/models/{mv.name}/infer "
              f"({plan.replicas} worker(s); pids {pids})", flush=True)
        if plan.auth:
            await _print_key(settings, plan)
        return await _until_stopped(plan, stop)
    finally:
        await stop_children(plan)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _print_key(settings: Settings, plan: ServePlan) -> None:
    client = aioredis.from_url(settings.redis_url)
    try:
        async with audited(settings, KEY_CREATE, plan.tenant, tenant=plan.tenant, scopes="all") as extra:
            key, record, tenant = await KeyStore(client, RedisKeys(settings)).create(plan.tenant)
            extra["key_id"] = record.key_id  # never the key itself
    finally:
        await client.aclose()
    print(f"API key (tenant {tenant.name}): {key}", flush=True)
    print(f"webhook signing secret: {tenant.secret}", flush=True)


async def _until_stopped(plan: ServePlan, stop: asyncio.Event) -> int:
    stopper = asyncio.ensure_future(stop.wait())
    deaths = [asyncio.ensure_future(p.wait()) for p in plan.children]
    done, _ = await asyncio.wait([stopper, *deaths], return_when=asyncio.FIRST_COMPLETED)
    for fut in [stopper, *deaths]:
        fut.cancel()
    if stopper in done:
        print("stopping", flush=True)
        return 0
    dead = [p.pid for p in plan.children if p.returncode is not None]
    log.error("a child process exited (pids %s); stopping the rest", dead)
    return 1
