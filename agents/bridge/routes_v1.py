"""The aiaas API beside OIP: model registry listing and the thin jobs API."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from aiaas.agents.bridge.rediskeys import text
from aiaas.agents.bridge.routes_v2 import bridge_of, principal
from aiaas.schemas.audit import JOB_START
from aiaas.schemas.envelope import validation_errors
from aiaas.schemas.errors import Conflict, InvalidMessage, NotFound
from aiaas.schemas.jobs import JOB_ID, JobSpec
from aiaas.streams.jobs import shown_state

router = APIRouter()
JOB_BODY: dict[str, Any] = {
    "requestBody": {"required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobSpec"}}}},
}


@router.get("/v1/models", tags=["aiaas"])
async def list_models(request: Request) -> dict[str, Any]:
    """Every registered version this tenant may see (its own and shared ones)."""
    bridge, who = bridge_of(request), await principal(request)
    who.require("models")
    await bridge.registry.refresh()
    return {"models": [mv.model_dump(mode="json", exclude_none=True) for mv in bridge.visible_models(who)]}


async def submit_job(request: Request) -> JSONResponse:
    """Start training: the JobSpec goes to the ``jobs`` topic keyed by its job id."""
    bridge, who = bridge_of(request), await principal(request)
    who.require("jobs")
    await bridge.limiter.take(who.tenant)
    try:
        spec = JobSpec.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidMessage("invalid job spec", errors=validation_errors(exc)) from exc
    owner_key = bridge.rk.job_owner(spec.job_id)
    if not await bridge.redis.set(owner_key, who.tenant.name, nx=True):
        await bridge.audit.record(who, JOB_START, spec.job_id, error="conflict: a job with this id exists")
        raise Conflict("a job with this id exists", job_id=spec.job_id)
    try:
        await bridge.jobs.submit(spec, who.tenant.name)
    except BaseException:
        await bridge.redis.delete(owner_key)
        raise
    await bridge.audit.record(who, JOB_START, spec.job_id, model=spec.model_name)
    location = f"/v1/jobs/{spec.job_id}"
    return JSONResponse({"job_id": spec.job_id, "state": "submitted", "location": location},
                        status_code=201, headers={"Location": location})


router.add_api_route("/v1/jobs", submit_job, methods=["POST"], tags=["aiaas"], openapi_extra=JOB_BODY,
                     status_code=201)


@router.get("/v1/jobs/{job_id}", tags=["aiaas"])
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    """Status (from JobStatus records) and the latest metrics of one of this tenant's jobs."""
    bridge, who = bridge_of(request), await principal(request)
    who.require("jobs")
    owner = await bridge.redis.get(bridge.rk.job_owner(job_id)) if re.match(JOB_ID, job_id) else None
    if owner is None or text(owner) != who.tenant.name:
        raise NotFound("unknown job", job_id=job_id)
    spec, status = await bridge.jobs.get(job_id)
    body: dict[str, Any] = {"job_id": job_id, "state": "submitted"}
    if status is not None:  # the state `aiaas jobs status` shows: lost when heartbeats stopped
        body["state"], body["why"] = shown_state(status)
        body["status"] = status.model_dump(mode="json", exclude_none=True)
    if spec is not None:
        body["model_name"] = spec.model_name
    body["metrics"] = await bridge.jobs.latest_metrics(job_id)
    return body
