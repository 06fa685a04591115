"""The product's one way to start, watch and stop its child processes.

Every process of ours that starts another goes through here: the training launcher (aggregator and
trainers), ``aiaas serve`` (inference workers and the bridge), the autoscaler (its workers) and the
infrastructure scripts behind ``aiaas infra`` and ``aiaas serve``. So every child

- imports our packages as this process does: ``child_env`` puts the directory that holds ``aiaas``
  on ``PYTHONPATH`` (a clone run without installing, or an install), and the child runs in the
  caller's directory (what it writes goes under the state dir, docs/operations.md);
- reads no stdin and writes its output to a log file (appended) or to ours;
- can be tied to us (Linux: SIGTERM when we die, even by SIGKILL) or kept out of our terminal's
  process group (a ^C to a supervisor is not delivered to its workers twice);
- is stopped the same way: SIGTERM, a grace period, then SIGKILL;
- with access control on (``AIAAS_ROLE_USERS``, docs/operations.md "Access control"), an agent
  logs in to Kafka as its role's user, not as us.

The infrastructure scripts ship inside the package (``aiaas/infra``, package data), so ``aiaas
infra up`` and ``aiaas serve`` work from any directory after a plain install. Tests and benchmarks
have their own spawner (tests/spawn.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import random
import signal
import socket
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path

import aiaas

Process = asyncio.subprocess.Process
# The directory holding the ``aiaas`` package (not resolved: its design folders are symlinks in a clone).
CODE_ROOT = Path(aiaas.__file__).parent.parent
# The infrastructure scripts: ``aiaas/infra`` (a link to the clone's infra/, package data when installed).
INFRA = Path(aiaas.__file__).parent / "infra"
PR_SET_PDEATHSIG = 1


SERVICE_PORTS = range(21000, 32000)  # below Linux's ephemeral range (32768-60999) and our fixed ports


def free_port(taken: Collection[int] = ()) -> int:
    """A TCP port on loopback nobody listens on right now, below the ephemeral range: a service
    restarted on it cannot find it held by a client connection's own end, and a readiness probe
    cannot connect to itself there (TCP self-connect: a restarted test broker looked up)."""
    for _ in range(200):
        port = random.choice(SERVICE_PORTS)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # the range is full: any port the kernel gives
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment plus ``extra``, with our packages importable in the child."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CODE_ROOT), env.get("PYTHONPATH")) if p)
    return env


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when its parent dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


async def spawn(argv: Sequence[str], *, env: Mapping[str, str] | None = None, log: Path | None = None,
                die_with_parent: bool = False, own_session: bool = False) -> Process:
    """Start ``argv`` with ``child_env(env)``; its output is appended to ``log`` (stdout and stderr
    together) or, without one, goes where ours goes."""
    out = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = log.open("ab")  # the child writes it; we close our copy
    tie = die_with_parent and sys.platform == "linux"
    try:
        return await asyncio.create_subprocess_exec(
            *argv, env=child_env(env), stdin=asyncio.subprocess.DEVNULL, stdout=out,
            stderr=asyncio.subprocess.STDOUT if out is not None else None,
            preexec_fn=_die_with_parent if tie else None, start_new_session=own_session)
    finally:
        if out is not None:
            out.close()


# The agents whose processes log in as their role's user when AIAAS_ROLE_USERS is on.
ROLE_OF_MODULE = {"aiaas.agents.aggregator": "aggregator", "aiaas.agents.trainer": "trainer",
                  "aiaas.agents.inference": "inference", "aiaas.agents.bridge": "bridge",
                  "aiaas.agents.bridge.main": "bridge"}


def role_login(module: str, args: Sequence[str], env: Mapping[str, str]) -> dict[str, str]:
    """With ``AIAAS_ROLE_USERS`` on in ``env`` (the child's settings), the ``AIAAS_*`` login of the
    agent's role (``aiaas acl apply``'s credentials under the state dir; a scoring worker is the
    inference agent with ``--score``); else nothing: the child logs in as we do."""
    role = ROLE_OF_MODULE.get(module)
    if role is None or env.get("AIAAS_ROLE_USERS", "").lower() not in ("1", "true", "yes", "on"):
        return {}
    from aiaas.streams.acls import role_user, user_env
    from aiaas.streams.settings import default_state_dir

    state = env.get("AIAAS_STATE_DIR")
    role = "scoring" if role == "inference" and "--score" in args else role
    return user_env(Path(state) if state else default_state_dir(), role_user(role))


async def spawn_module(module: str, *args: str, env: Mapping[str, str] | None = None,
                       log: Path | None = None, die_with_parent: bool = False,
                       own_session: bool = False) -> Process:
    """``python -m module args...`` with this interpreter (see ``spawn``); an agent logs in as its
    role's user when access control says so (``role_login``)."""
    env = {**(env or {}), **role_login(module, args, child_env(env))}
    return await spawn([sys.executable, "-m", module, *args], env=env, log=log,
                       die_with_parent=die_with_parent, own_session=own_session)


async def terminate(procs: Iterable[Process], grace_s: float = 15.0) -> None:
    """SIGTERM every process still running, give them ``grace_s`` together to exit (our agents
    finish their batch and commit on it), SIGKILL the ones left; all are reaped."""
    procs = list(procs)
    for proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
    if procs:
        await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs], timeout=grace_s)
    for proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def wait_http_ready(url: str, timeout_s: float, proc: Process | None = None) -> None:
    """Poll ``url`` until it answers 200 (fails early, RuntimeError, when ``proc`` exits)."""
    import httpx  # the serve extra's; the base install runs ``aiaas infra`` through this module

    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client, asyncio.timeout(timeout_s):
        while True:
            if proc is not None and proc.returncode is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before {url} was ready")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)


def infra_script(name: str) -> Path:
    """One of the shipped infrastructure scripts (``up.sh``, ``down.sh``, ``status.sh``...)."""
    return INFRA / name


async def run_infra(name: str, state_dir: Path, timeout_s: float | None = None) -> int:
    """Run an infrastructure script to its end with its state in ``state_dir`` (AIAAS_STATE_DIR);
    its output goes where ours goes. Run through bash, so the scripts need no executable bit."""
    proc = await spawn(["bash", str(infra_script(name))], env={"AIAAS_STATE_DIR": str(state_dir)})
    try:
        async with asyncio.timeout(timeout_s):
            return await proc.wait()
    finally:
        if proc.returncode is None:
            await terminate([proc], grace_s=5.0)
