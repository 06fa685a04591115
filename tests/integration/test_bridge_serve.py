"""``aiaas serve``: one command brings up workers and a bridge; SIGTERM stops every child."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import numpy as np

from aiaas.agents.processes import child_env, free_port
from aiaas.streams.audit import tail
from aiaas.streams.settings import Settings
from tests import examples
from tests.infra import ROOT


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and ") Z " not in Path(f"/proc/{pid}/stat").read_text()


async def _lines_until_key(proc: asyncio.subprocess.Process) -> list[str]:
    """What ``aiaas serve`` printed, up to its last start-up line (the API key)."""
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(120):
        while not any(line.startswith("API key") for line in lines):
            raw = await proc.stdout.readline()
            assert raw, f"serve exited early: {lines}"
            lines.append(raw.decode())
    return lines


async def test_serve_brings_up_workers_and_bridge_and_stops_them_all(
    settings: Settings, tmp_path: Path
) -> None:
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(examples.mlp([4, 6, 2], seed=2))
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiaas.cli.main", "serve", str(onnx_file), "--name", "served",
        "--port", str(port), "--replicas", "2", cwd=ROOT,
        env=child_env({"AIAAS_TOPIC_PREFIX": settings.topic_prefix, "AIAAS_LOG_LEVEL": "WARNING"}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    pids: list[int] = []
    try:
        lines = await _lines_until_key(proc)
        found = re.search(r"pids ([\d ]+)\)", "".join(lines))
        assert found, lines
        pids = [int(p) for p in found.group(1).split()]
        key = lines[-1].split(": ", 1)[1].strip()
        assert len(pids) == 3 and all(_alive(p) for p in pids)
        body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as http:
            resp = await http.post("/v2/models/served/infer", json=body, headers={"X-API-Key": key})
        assert resp.status_code == 200, resp.text
        assert np.array(resp.json()["outputs"][0]["data"]).shape == (2,)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert not any(_alive(p) for p in pids)
    audited = [(r.action, r.target, r.outcome) async for r in tail(settings)]  # docs/operations.md
    assert audited[0] == ("model.push", "served", "ok") and audited[1][::2] == ("key.create", "ok"), audited


async def test_serve_model_serves_a_registered_model_by_name(settings: Settings) -> None:
    """``aiaas serve --model NAME``: no file; a model with no production version serves its latest."""
    from aiaas.registry.store import Registry

    async with Registry(settings) as reg:
        await reg.publish("named", examples.mlp([4, 6, 3], seed=5))
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiaas.cli.main", "serve", "--model", "named", "--port", str(port), cwd=ROOT,
        env=child_env({"AIAAS_TOPIC_PREFIX": settings.topic_prefix, "AIAAS_LOG_LEVEL": "WARNING"}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        lines = await _lines_until_key(proc)
        assert lines[0].startswith("serving named v1 at "), lines
        key = lines[-1].split(": ", 1)[1].strip()
        body = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": list(range(8))}]}
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) as http:
            resp = await http.post("/v2/models/named/infer", json=body, headers={"X-API-Key": key})
        assert resp.status_code == 200, resp.text
        assert resp.json()["model_version"] == "1" and resp.json()["outputs"][0]["shape"] == [2, 3]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 60) == 0


async def test_bridge_says_listening_only_once_it_answers(settings: Settings) -> None:
    """The port is bound before Kafka connections open, and "listening" is logged once it serves."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiaas.agents.bridge", "--port", str(port), cwd=ROOT,
        env=child_env({"AIAAS_TOPIC_PREFIX": settings.topic_prefix, "AIAAS_LOG_LEVEL": "INFO"}),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(60):
            while b"bridge listening on" not in (line := await proc.stderr.readline()):
                assert line, "the bridge exited before listening"
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            resp = await http.get(f"http://127.0.0.1:{port}/v2/health/ready")  # at once: no retry
        assert resp.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught
        assert await asyncio.wait_for(proc.wait(), 60) in (0, -signal.SIGTERM)
