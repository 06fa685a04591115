"""Run a command to its end in a test: output captured, killed if it overruns or the test fails."""

from __future__ import annotations

import asyncio
from typing import Any


async def run_to_end(*argv: str, timeout_s: float, merge_stderr: bool = False,
                     **kwargs: Any) -> tuple[int, bytes, bytes]:
    """``(returncode, stdout, stderr)`` of ``argv`` (stderr folded into stdout with ``merge_stderr``);
    the process never outlives the call."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE, **kwargs)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, out, err or b""
