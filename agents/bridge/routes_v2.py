"""Open Inference Protocol v2 routes (health, server and model metadata) plus async polling.

The infer route lives in ``routes_infer`` (it is the hot path and is matched first)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from aiaas.agents.bridge.core import Bridge
from aiaas.agents.bridge.keys import Principal
from aiaas.schemas.errors import NotFound
from aiaas.schemas.registry import ModelVersion, TensorSignature

router = APIRouter()
SERVER = {"name": "aiaas", "version": "0.1.0",
          "extensions": ["binary_tensor_data", "async_callbacks", "idempotency", "tenants"]}


def bridge_of(request: Request) -> Bridge:
    bridge: Bridge = request.app.state.bridge
    return bridge


async def principal(request: Request) -> Principal:
    hdrs = request.headers
    return await bridge_of(request).auth.principal(hdrs.get("authorization"), hdrs.get("x-api-key"))


@router.get("/v2", tags=["oip"])
async def server_metadata() -> dict[str, Any]:
    return SERVER


@router.get("/v2/health/live", tags=["oip"])
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/v2/health/ready", tags=["oip"])
async def ready(request: Request) -> JSONResponse:
    """Ready while started and the last background probe reached both Kafka and Redis (a cached
    answer: probes must not cost a broker round trip each, nor hang on a broker that is gone)."""
    bridge = bridge_of(request)
    health = bridge.health
    health.asked()  # probed at full pace while someone asks
    ok = bridge.started and health.ok
    body = {"ready": ok, "kafka": health.kafka_ok, "redis": health.redis_ok}
    return JSONResponse(body, status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "1"})


def _sig(s: TensorSignature) -> dict[str, Any]:
    return {"name": s.name, "datatype": s.datatype.value, "shape": [-1 if d is None else d for d in s.shape]}


def _metadata(bridge: Bridge, who: Principal, mv: ModelVersion) -> dict[str, Any]:
    versions = [str(v.version) for v in bridge.visible_models(who) if v.name == mv.name]
    inputs = [_sig(s) for s in mv.inputs]
    if any(f.name == "tokenizer.json" for f in mv.files):  # a text bundle takes text (docs/transformers.md)
        inputs.insert(0, {"name": "text", "datatype": "BYTES", "shape": [-1]})
    return {"name": mv.name, "versions": versions, "platform": "onnxruntime_onnx",
            "inputs": inputs, "outputs": [_sig(s) for s in mv.outputs],
            "parameters": {"version": str(mv.version), "stage": mv.stage}}


@router.get("/v2/models/{model}", tags=["oip"])
@router.get("/v2/models/{model}/versions/{version}", tags=["oip"])
async def model_metadata(request: Request, model: str, version: str | None = None) -> dict[str, Any]:
    bridge, who = bridge_of(request), await principal(request)
    who.require("models")
    return _metadata(bridge, who, await bridge.model_for(who, model, version))


@router.get("/v2/models/{model}/ready", tags=["oip"])
@router.get("/v2/models/{model}/versions/{version}/ready", tags=["oip"])
async def model_ready(request: Request, model: str, version: str | None = None) -> JSONResponse:
    bridge, who = bridge_of(request), await principal(request)
    who.require("models")
    mv = await bridge.model_for(who, model, version)
    is_ready = mv.stage != "archived" or version is None
    body = {"name": mv.name, "version": str(mv.version), "ready": is_ready}
    return JSONResponse(body, status_code=200 if is_ready else 400)


@router.get("/v2/requests/{request_id}", tags=["async"])
async def poll(request: Request, request_id: str) -> JSONResponse:
    """State of an async (or idempotent) request; 202 while pending, 200 with the result after."""
    bridge, who = bridge_of(request), await principal(request)
    got = await bridge.states.get(request_id) if len(request_id) <= 64 else None
    if got is None or got[0].tenant != who.tenant.name:
        raise NotFound("unknown request", id=request_id)
    state, result = got
    body = state.public()
    if result is not None:
        body["response"] = json.loads(result)
    if body["status"] == "pending":
        return JSONResponse(body, status_code=202, headers={"Location": f"/v2/requests/{request_id}",
                                                            "Retry-After": "1"})
    return JSONResponse(body)


__all__ = ["bridge_of", "principal", "router"]
