"""Audit records on the ``audit`` topic: who did what, to what, when, and whether it worked.

Every control-plane action, from the CLI or the HTTP bridge, is one record (docs/operations.md,
"Audit"): ``actor`` is who (an API key id at the bridge, ``user@host`` from the CLI), ``action``
what (one of ``ACTIONS`` for control-plane actions; the bridge also writes ``infer`` summaries),
``target`` on what (a model, a job, a key), ``ts`` when, ``outcome`` whether it worked and
``error`` why not.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from aiaas.schemas.envelope import Envelope

Outcome = Literal["ok", "failed"]
Source = Literal["bridge", "cli", "agent"]

MODEL_PUSH = "model.push"
MODEL_PROMOTE = "model.promote"
MODEL_ROLLBACK = "model.rollback"
MODEL_CANARY = "model.canary"
MODEL_MASK = "model.mask"  # a model's personal request fields (docs/security.md, "Masking")
JOB_START = "job.start"
JOB_STOP = "job.stop"
KEY_CREATE = "key.create"
KEY_REVOKE = "key.revoke"
ACTIONS = (MODEL_PUSH, MODEL_PROMOTE, MODEL_ROLLBACK, MODEL_CANARY, MODEL_MASK, JOB_START, JOB_STOP,
           KEY_CREATE, KEY_REVOKE)


class AuditRecord(Envelope):
    """One audited action (keyed by tenant on the topic; operator actions have no tenant)."""

    KIND: ClassVar[str] = "audit"

    tenant: str = ""
    actor: str
    action: str
    target: str
    ts: float
    source: Source = "bridge"
    outcome: Outcome = "ok"
    error: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
