"""The demo's callers: HTTP sync, HTTP async with signed callbacks, and the Kafka client.

Each records, per test row, the predicted class (the model's ``label`` output; the argmax of its
first output for a model without one) or an error and, where it is defined, the latency from send
to answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import httpx
import numpy as np

from aiaas.cli.demo.receiver import Receiver
from aiaas.client.inference import InferenceClient
from aiaas.client.webhooks import SIGNATURE_HEADER, verify_signature
from aiaas.streams.settings import Settings

MODEL = "digits"
CONCURRENCY = 16


@dataclass
class CallResults:
    labels: np.ndarray
    predictions: dict[int, int] = field(default_factory=dict)  # row -> predicted class
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)  # path -> latencies
    seconds: dict[str, float] = field(default_factory=dict)  # path -> wall time
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    model_versions: set[str] = field(default_factory=set)

    def record(self, path: str, row: int, outputs: dict[str, list[float]], latency_ms: float | None) -> None:
        label = outputs.get("label")
        self.predictions[row] = int(label[0]) if label else int(np.argmax(next(iter(outputs.values()))))
        self.counts[path] = self.counts.get(path, 0) + 1
        if latency_ms is not None:
            self.latencies_ms.setdefault(path, []).append(latency_ms)


def _by_name(outputs: list[dict[str, object]]) -> dict[str, list[float]]:
    """OIP v2 response outputs by name (the model's first output first)."""
    return {str(o["name"]): list(o["data"]) for o in outputs}  # type: ignore[call-overload]


def oip_body(row: np.ndarray, **parameters: object) -> dict[str, object]:
    body: dict[str, object] = {"inputs": [{
        "name": "input", "shape": [1, int(row.shape[0])], "datatype": "FP32",
        "data": [float(v) for v in row],
    }]}
    if parameters:
        body["parameters"] = parameters
    return body


async def bounded(n: int, jobs: list[object]) -> None:
    sem = asyncio.Semaphore(n)

    async def one(job: object) -> None:
        async with sem:
            await job  # type: ignore[misc]

    await asyncio.gather(*(one(j) for j in jobs))


async def call_http_sync(url: str, key: str, x: np.ndarray, rows: np.ndarray, out: CallResults) -> None:
    """POST /v2/models/digits/infer per row, 16 at a time."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        async def one(i: int) -> None:
            t0 = time.perf_counter()
            resp = await http.post(f"/v2/models/{MODEL}/infer", json=oip_body(x[i]))
            ms = (time.perf_counter() - t0) * 1000
            if resp.status_code != 200:
                out.errors.append(f"http sync row {i}: {resp.status_code} {resp.text[:200]}")
                return
            body = resp.json()
            out.model_versions.add(str(body.get("model_version")))
            out.record("http_sync", i, _by_name(body["outputs"]), ms)

        started = time.perf_counter()
        await bounded(CONCURRENCY, [one(int(i)) for i in rows])
        out.seconds["http_sync"] = time.perf_counter() - started


async def call_http_async(settings: Settings, url: str, key: str, secret: str, receiver: Receiver,
                          x: np.ndarray, rows: np.ndarray, out: CallResults) -> None:
    """POST with a callback URL (202 + request id), then check every signed callback that arrives."""
    headers = {"Authorization": f"Bearer {key}"}
    ids: dict[str, tuple[int, float]] = {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        async def one(i: int) -> None:
            t0 = time.perf_counter()
            body = oip_body(x[i], callback_url=receiver.url)
            resp = await http.post(f"/v2/models/{MODEL}/infer", json=body)
            if resp.status_code != 202:
                out.errors.append(f"http async row {i}: {resp.status_code} {resp.text[:200]}")
                return
            ids[resp.json()["id"]] = (i, t0)

        started = time.perf_counter()
        await bounded(CONCURRENCY, [one(int(i)) for i in rows])
        await receiver.wait_for(len(ids), timeout_s=120)
        out.seconds["http_async"] = time.perf_counter() - started
    for got in receiver.received:
        verify_signature(secret, got.headers.get(SIGNATURE_HEADER.lower()), got.body, 300)
        body = json.loads(got.body)
        row, _ = ids.pop(body["id"])
        if body.get("status") != "succeeded":
            out.errors.append(f"http async row {row}: {body.get('status')} {body.get('error')}")
            continue
        out.record("http_async_callback", row, _by_name(body["response"]["outputs"]), None)
    out.errors.extend(f"http async: no callback for {rid}" for rid in ids)


async def call_kafka(settings: Settings, x: np.ndarray, rows: np.ndarray, out: CallResults) -> None:
    """The Python Kafka client, many requests in flight, binary tensor encoding."""
    async with InferenceClient(settings) as client:
        await client.infer(MODEL, {"input": x[:1]}, timeout=30, binary=True)  # warm-up, not counted

        async def one(i: int) -> None:
            t0 = time.perf_counter()
            try:
                res = await client.infer(MODEL, {"input": x[i : i + 1]}, timeout=30, binary=True)
            except Exception as exc:  # an error reply is a demo error, not a crash
                out.errors.append(f"kafka row {i}: {exc}")
                return
            ms = (time.perf_counter() - t0) * 1000
            out.model_versions.add(str(res.model_version))
            flat = {k: np.asarray(v).reshape(-1).tolist() for k, v in res.outputs.items()}
            out.record("kafka_client", i, flat, ms)

        started = time.perf_counter()
        await bounded(CONCURRENCY, [one(int(i)) for i in rows])
        out.seconds["kafka_client"] = time.perf_counter() - started
