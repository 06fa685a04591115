"""Open Inference Protocol v2 routes (health, server and model metadata, infer) plus async polling."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from agents.bridge.core import Bridge
from agents.bridge.keys import Principal
from agents.bridge.service import Accepted, Call, InferService
from schemas.errors import AiaasError, NotFound
from schemas.registry import ModelVersion, TensorSignature

router = APIRouter()
SERVER = {"name": "aiaas", "version": "0.1.0",
          "extensions": ["binary_tensor_data", "async_callbacks", "idempotency", "tenants"]}

OptHeader = Annotated[str | None, Header()]


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
    bridge = bridge_of(request)
    ok = bridge.started
    if ok:
        try:
            await bridge.redis.ping()
        except Exception:  # not ready is the answer, not an error
            ok = False
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


def _sig(s: TensorSignature) -> dict[str, Any]:
    return {"name": s.name, "datatype": s.datatype.value, "shape": [-1 if d is None else d for d in s.shape]}


def _metadata(bridge: Bridge, who: Principal, mv: ModelVersion) -> dict[str, Any]:
    versions = [str(v.version) for v in bridge.visible_models(who) if v.name == mv.name]
    return {"name": mv.name, "versions": versions, "platform": "onnxruntime_onnx",
            "inputs": [_sig(s) for s in mv.inputs], "outputs": [_sig(s) for s in mv.outputs],
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
    mv = await bridge.model_for(who, model, version)
    is_ready = mv.stage != "archived" or version is None
    body = {"name": mv.name, "version": str(mv.version), "ready": is_ready}
    return JSONResponse(body, status_code=200 if is_ready else 400)


INFER_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {
        "200": {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/InferenceResponse"}}}},
        "202": {"description": "accepted for async processing; poll Location"},
    },
}


async def infer(
    request: Request,
    model: str,
    version: str | None = None,
    callback: Annotated[str | None, Query(max_length=2048, description="webhook URL: answer 202")] = None,
    timeout_s: Annotated[float | None, Query(alias="timeout", gt=0, le=86_400, description="seconds")] = None,
    prefer: OptHeader = None,
    idempotency_key: OptHeader = None,
    inference_header_content_length: OptHeader = None,
    traceparent: OptHeader = None,
) -> Response:
    bridge = bridge_of(request)
    t0 = time.perf_counter()
    status = 500
    try:
        who = await principal(request)
        who.require("infer")
        await bridge.limiter.take(who.tenant)
        call = Call(
            who=who, model=model, version=version, path=request.url.path, body=await request.body(),
            header_length=inference_header_content_length, callback=callback,
            prefer_async="respond-async" in (prefer or "").lower(), idempotency_key=idempotency_key,
            timeout_s=timeout_s, traceparent=traceparent,
        )
        out = await InferService(bridge).handle(call)
        if isinstance(out, Accepted):
            status = 202
            location = f"/v2/requests/{out.request_id}"
            return JSONResponse({"id": out.request_id, "status": out.state.status, "location": location},
                                status_code=202, headers={"Location": location})
        status = out.status
        return Response(out.content, status_code=out.status, headers=out.headers, media_type=out.media_type)
    except AiaasError as exc:
        status = exc.status_code
        raise
    finally:
        bridge.metrics.requests.labels(model=model, status=str(status)).inc()
        bridge.metrics.latency.labels(model=model).observe(time.perf_counter() - t0)


for _path in ("/v2/models/{model}/infer", "/v2/models/{model}/versions/{version}/infer"):
    router.add_api_route(_path, infer, methods=["POST"], tags=["oip"], openapi_extra=INFER_DOC,
                         response_class=Response, summary="Infer (sync, or async with a callback)")


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
