"""The servers ``benchmarks.peers`` compares: MLServer in its own virtual environment, and ``aiaas serve``.

MLServer 1.7.1 is installed with ``uv`` into ``~/.cache/aiaas/peers/mlserver-1.7.1`` (reused when it
is there; never the project's venv), with uvloop 0.21 (newer crashes its workers) and the same
onnxruntime version as aiaas's venv. Each server runs in its own process group, logs to a file and
is stopped by its group id; a server that cannot be installed or started raises ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import httpx

from aiaas.agents.processes import free_port
from aiaas.schemas.errors import Unavailable
from tests.infra import distinct_free_ports

MLSERVER_VERSION = "1.7.1"
RUNTIME = Path(__file__).with_name("mlserver_runtime.py")


@dataclass
class Server:
    """A running server: where to send requests, its process group, its log, its serving pids."""

    name: str
    port: int
    path: str
    proc: subprocess.Popen[bytes]
    log: Path
    headers: dict[str, str] = field(default_factory=dict)
    pids: dict[str, list[int]] = field(default_factory=dict)

    def stop(self, grace_s: float = 20.0) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def cpu_seconds(self) -> float:
        """CPU time of every live process of this server's session (started with ``start_new_session``),
        with their waited-for children's (a child that ended still counts): the server's own cost per
        request, which others' load on a shared machine moves far less than rates."""
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            if int(fields[3]) == self.proc.pid:
                total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # u, s, cu, cs
        return total

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def peers_dir() -> Path:
    return Path(os.environ.get("AIAAS_PEERS_DIR", Path.home() / ".cache" / "aiaas" / "peers"))


def ensure_mlserver(venv: Path | None = None) -> Path:
    """The python of a venv holding MLServer 1.7.1 + onnxruntime (aiaas's version) + py-spy."""
    venv = venv or peers_dir() / f"mlserver-{MLSERVER_VERSION}"
    python = venv / "bin" / "python"
    want = f"{MLSERVER_VERSION} {version('onnxruntime')}"
    if python.exists() and _probe(python) == want:
        return python
    uv = shutil.which("uv")
    if uv is None:
        raise Unavailable("uv is not installed: it is needed to install MLServer into its own venv")
    base = getattr(sys, "_base_executable", sys.executable)  # the interpreter under aiaas's venv
    steps = [] if python.exists() else [[uv, "venv", "-q", "--python", base, str(venv)]]
    steps.append([uv, "pip", "install", "-q", "--python", str(python), f"mlserver=={MLSERVER_VERSION}",
                  "uvloop>=0.21,<0.22", f"onnxruntime=={version('onnxruntime')}", "py-spy"])
    for step in steps:
        print(f"peers: {' '.join(step)}", file=sys.stderr)
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            why = done.stderr.strip()[-800:]
            raise Unavailable("could not install MLServer", version=MLSERVER_VERSION, stderr=why)
    if (got := _probe(python)) != want:
        raise Unavailable("the MLServer venv has other versions", venv=str(venv), got=got, wanted=want)
    return python


def _probe(python: Path) -> str:
    code = "import mlserver, uvloop, onnxruntime; print(mlserver.__version__, onnxruntime.__version__)"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    return done.stdout.strip() if done.returncode == 0 else f"import failed: {done.stderr.strip()[-300:]}"


def _spawn(
    argv: list[str], log: Path, env: dict[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env},
                                cwd=cwd, start_new_session=True)


async def wait_ready(server: Server, url: str, timeout_s: float) -> None:
    """Poll ``url`` until 200; a server that exits or stays unready raises Unavailable."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                raise Unavailable("the server exited before it was ready", server=server.name,
                                  returncode=server.proc.returncode, log=server.tail())
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise Unavailable("the server did not become ready", server=server.name, url=url,
                      timeout_s=timeout_s, log=server.tail())


async def start_mlserver(python: Path, workdir: Path, onnx_file: Path, model: str, workers: int,
                         max_batch: int, max_batch_time_s: float, spin: bool = True) -> Server:
    """MLServer serving ``onnx_file`` as ``model`` with adaptive batching, ``workers`` parallel workers."""
    folder = workdir / "mlserver"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(RUNTIME, folder / "mlserver_runtime.py")
    shutil.copy(onnx_file, folder / "model.onnx")
    port, grpc, metrics = distinct_free_ports(3)
    settings = {"host": "127.0.0.1", "http_port": port, "grpc_port": grpc, "metrics_port": metrics,
                "parallel_workers": workers, "debug": False}
    model_settings = {"name": model, "implementation": "mlserver_runtime.OnnxModel",
                      "parameters": {"uri": "./model.onnx"},
                      "max_batch_size": max_batch, "max_batch_time": max_batch_time_s}
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    (folder / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    threads = str(max(1, (os.cpu_count() or 1) // max(1, workers)))
    proc = _spawn([str(python.parent / "mlserver"), "start", str(folder)], workdir / "mlserver.log",
                  {"PEER_THREADS": threads, "OMP_NUM_THREADS": threads, "PEER_SPIN": "1" if spin else "0"},
                  cwd=folder)
    server = Server("mlserver", port, f"/v2/models/{model}/infer", proc, workdir / "mlserver.log")
    await _ready_or_stop(server, f"http://127.0.0.1:{port}/v2/models/{model}/ready", 180)
    server.pids = {"server": [proc.pid]}
    return server


async def start_aiaas(workdir: Path, onnx_file: Path, model: str, replicas: int, prefix: str) -> Server:
    """``aiaas serve FILE --name MODEL`` (auth on) and an API key made with ``aiaas keys create``."""
    env = {"AIAAS_TOPIC_PREFIX": prefix, "AIAAS_LOG_LEVEL": "WARNING"}
    port = free_port()
    log = workdir / "aiaas.log"
    proc = _spawn([sys.executable, "-m", "aiaas.cli.main", "serve", str(onnx_file), "--name", model,
                   "--port", str(port), "--replicas", str(replicas)], log, env)
    server = Server("aiaas", port, f"/v2/models/{model}/infer", proc, log)
    await _ready_or_stop(server, f"http://127.0.0.1:{port}/v2/health/ready", 240)
    pids = await _serving_pids(server, 60)
    server.pids = {"workers": pids[:-1], "bridge": pids[-1:]}
    created = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiaas.cli.main", "keys", "create", "--tenant", "bench-peers",
        "--rate", "1000000", "--burst", "1000000", env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(created.communicate(), 120)
    if created.returncode != 0:
        server.stop()
        raise Unavailable("aiaas keys create failed", stderr=err.decode().strip()[-500:])
    server.headers = {"Authorization": f"Bearer {json.loads(out)['api_key']}"}
    return server


async def _ready_or_stop(server: Server, url: str, timeout_s: float) -> None:
    try:
        await wait_ready(server, url, timeout_s)
    except BaseException:
        server.stop()
        raise


async def _serving_pids(server: Server, timeout_s: float) -> list[int]:
    """The pids ``aiaas serve`` prints on its "serving ..." line: the workers, then the bridge."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(r"pids ([\d ]+)\)", server.log.read_text(errors="replace"))
        if found:
            return [int(p) for p in found.group(1).split()]
        await asyncio.sleep(0.2)
    server.stop()
    raise Unavailable("aiaas serve printed no pids", log=server.tail())
