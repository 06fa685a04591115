"""``aiaas serve MODEL.onnx --name N``: infrastructure, registration, K workers and a bridge in one go.

The supervisor starts the local broker and Redis (``infra/up.sh``) when they do not answer,
registers the ONNX file as the production version of ``N``, starts ``replicas`` inference worker
processes and one bridge process, prints where to send requests, and on SIGINT/SIGTERM (or when a
child dies) stops them all: SIGTERM first, SIGKILL after a grace period. On Linux the children also
get SIGTERM if the supervisor itself is killed, so they never outlive it.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from agents.bridge.keys import KeyStore
from agents.bridge.rediskeys import RedisKeys
from agents.bridge.testing import ROOT, child_env, wait_http_ready
from schemas.errors import AiaasError, Unavailable
from schemas.registry import ModelVersion
from streams.admin import wait_for_broker
from streams.registry import Registry
from streams.settings import Settings

log = logging.getLogger(__name__)
GRACE_S = 15.0
PR_SET_PDEATHSIG = 1


@dataclass
class ServePlan:
    model_path: Path
    name: str
    port: int = 8080
    host: str = "127.0.0.1"
    replicas: int = 1
    auth: bool = True
    tenant: str = "local"
    children: list[asyncio.subprocess.Process] = field(default_factory=list)


async def infrastructure(settings: Settings) -> None:
    """Start Kafka and Redis with the project's scripts unless both already answer."""
    if await _reachable(settings):
        return
    log.info("starting local infrastructure (infra/up.sh)")
    proc = await asyncio.create_subprocess_exec(str(ROOT / "infra" / "up.sh"), stdin=subprocess.DEVNULL)
    if await proc.wait() != 0:
        raise Unavailable("infra/up.sh failed", returncode=proc.returncode)
    await wait_for_broker(settings, timeout_s=120)


async def _reachable(settings: Settings) -> bool:
    client = aioredis.from_url(settings.redis_url, socket_connect_timeout=2)
    try:
        await client.ping()
        await wait_for_broker(settings, timeout_s=3)
        return True
    except (AiaasError, OSError, aioredis.RedisError):
        return False
    finally:
        await client.aclose()


async def register(settings: Settings, plan: ServePlan) -> ModelVersion:
    data = await asyncio.to_thread(plan.model_path.read_bytes)
    async with Registry(settings) as reg:
        return await reg.publish(plan.name, data, stage="production")


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the supervisor dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


async def _spawn(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, env=child_env(env), stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


async def start_children(
    settings: Settings, plan: ServePlan, bridge_env: dict[str, str] | None = None
) -> str:
    """K workers following the production version, then the bridge; returns the bridge URL."""
    threads = str(max(1, (os.cpu_count() or 1) // max(1, plan.replicas)))
    for _ in range(plan.replicas):
        plan.children.append(await _spawn(
            ["-m", "agents.inference", "--model", plan.name, "--stage", "production", "--threads", threads],
            {"OMP_NUM_THREADS": threads},
        ))
    env = {"AIAAS_BRIDGE_PORT": str(plan.port), "AIAAS_BRIDGE_HOST": plan.host,
           "AIAAS_BRIDGE_AUTH": "true" if plan.auth else "false", **(bridge_env or {})}
    bridge = await _spawn(["-m", "agents.bridge.main"], env)
    plan.children.append(bridge)
    host = "127.0.0.1" if plan.host in ("0.0.0.0", "::") else plan.host
    url = f"http://{host}:{plan.port}"
    await wait_http_ready(f"{url}/v2/health/ready", 120, bridge)
    return url


async def stop_children(plan: ServePlan, grace_s: float = GRACE_S) -> None:
    """SIGTERM every child, wait, SIGKILL the ones still running."""
    for proc in plan.children:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    waits = [asyncio.ensure_future(p.wait()) for p in plan.children]
    if waits:
        await asyncio.wait(waits, timeout=grace_s)
    for proc in plan.children:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def supervise(settings: Settings, plan: ServePlan) -> int:
    """Run everything until a signal (exit 0) or a child's death (exit 1)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await infrastructure(settings)
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
        key, _, tenant = await KeyStore(client, RedisKeys(settings)).create(plan.tenant)
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
