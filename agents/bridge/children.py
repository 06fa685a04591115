"""What ``aiaas serve`` needs to run its children: their environment, a free port, readiness.

``aiaas serve`` starts workers and the bridge as ``python -m aiaas.agents...`` processes with the same
interpreter; ``child_env`` puts the directory that holds our packages on ``PYTHONPATH`` so those
modules import in the child as they do here (a clone run without installing, or an install).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping
from pathlib import Path

import httpx

import aiaas

# The directory holding the ``aiaas`` package (not resolved: its design folders are symlinks in a clone).
CODE_ROOT = Path(aiaas.__file__).parent.parent


def free_port() -> int:
    """A TCP port on loopback nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment plus ``extra``, with our packages importable in the child."""
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CODE_ROOT), env.get("PYTHONPATH")) if p)
    return env


async def wait_http_ready(
    url: str, timeout_s: float, proc: asyncio.subprocess.Process | None = None
) -> None:
    """Poll ``url`` until it answers 200 (fails early when ``proc`` exits)."""
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
