"""A newcomer's first hour, end to end on the real broker, only through the ``aiaas`` command:
a CSV file -> ``aiaas data push`` -> ``aiaas train`` -> ``aiaas models pull`` -> ``aiaas serve FILE``
-> HTTP with raw features. The served accuracy is the training run's test accuracy within 1 point.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import signal
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from sklearn.datasets import load_digits

from aiaas.agents.processes import child_env, free_port
from aiaas.data.datasets import raw_split
from aiaas.registry.store import Registry
from aiaas.schemas.jobs import JobSpec
from aiaas.streams.settings import Settings
from tests.infra import ROOT
from tests.spawn import run_to_end

pytestmark = pytest.mark.timeout(300)


def _digits_csv(path: Path) -> None:
    x, y = load_digits(return_X_y=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"pixel{i}" for i in range(64)] + ["digit"])
        w.writerows([*(int(v) for v in row), int(t)] for row, t in zip(x, y, strict=True))


def _spec(path: Path, csv_path: Path) -> JobSpec:
    raw = {"job_id": "newcomer", "trainers": 1, "batch_size": 32, "steps": 80, "eval_interval": 40,
           "optimizer": {"name": "adam", "lr": 3e-3}, "sync": {"mode": "sync"},
           "model": {"input_dim": 64, "hidden": [32], "output_dim": 10},
           "data": {"source": "csv", "path": str(csv_path), "target_column": "digit", "partitions": 1},
           "export": {"model_name": "mydigits", "stage": "production"}}
    path.write_text(yaml.safe_dump(raw))
    return JobSpec.model_validate(raw)


async def _aiaas(env: dict[str, str], *args: str, timeout_s: float = 200) -> str:
    rc, out, err = await run_to_end(sys.executable, "-m", "aiaas.cli.main", *args, timeout_s=timeout_s,
                                    cwd=ROOT, env=env)
    assert rc == 0, (args, out.decode()[-2000:], err.decode()[-2000:])
    return out.decode()


async def _serve_and_ask(env: dict[str, str], model: Path, x: np.ndarray) -> np.ndarray:
    """``aiaas serve FILE`` (no auth), the raw rows over HTTP in a few requests; the labels back."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiaas.cli.main", "serve", str(model), "--name", "mydigits", "--port",
        str(port), "--no-auth", cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    labels: list[float] = []
    try:
        async with asyncio.timeout(120):
            while not (line := (await proc.stdout.readline()).decode()).startswith("serving "):
                assert line, "serve exited early"
        url = line.split(" at ")[1].split()[0]  # "serving mydigits v1 at http://.../infer (...)"
        async with httpx.AsyncClient(timeout=60, trust_env=False) as http:
            for rows in np.array_split(x, 4):
                body = {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                                    "data": rows.ravel().tolist()}]}
                resp = await http.post(url, json=body)
                assert resp.status_code == 200, resp.text
                (label,) = [o for o in resp.json()["outputs"] if o["name"] == "label"]
                labels += label["data"]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
    return np.array(labels)


async def test_csv_to_served_answers_on_raw_features(settings: Settings, tmp_path: Path) -> None:
    env = child_env({"AIAAS_TOPIC_PREFIX": settings.topic_prefix, "AIAAS_LOG_LEVEL": "WARNING"})
    _digits_csv(tmp_path / "digits.csv")
    spec = _spec(tmp_path / "job.yaml", tmp_path / "digits.csv")
    await _aiaas(env, "data", "push", "--spec", str(tmp_path / "job.yaml"))
    await _aiaas(env, "train", "--spec", str(tmp_path / "job.yaml"))
    (status,) = json.loads(await _aiaas(env, "jobs", "status", "newcomer", "--json"))
    assert status["state"] == "succeeded", status["error"]
    out = await _aiaas(env, "models", "pull", "mydigits", "-o", str(tmp_path / "model.onnx"))
    async with Registry(settings) as reg:
        mv = await reg.get("mydigits")
    assert hashlib.sha256((tmp_path / "model.onnx").read_bytes()).hexdigest() == mv.sha256 in out
    raw = raw_split(spec.data)  # the held-out rows, as the CSV has them (pixels 0..16)
    served = float(np.mean(await _serve_and_ask(env, tmp_path / "model.onnx", raw.x_test) == raw.test_values))
    assert served == pytest.approx(status["metrics"]["test_accuracy"], abs=0.01)
    assert served >= 0.85
