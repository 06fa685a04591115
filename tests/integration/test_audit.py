"""Audit on the real broker: every control-plane action of the CLI leaves one record saying who,
what, when and the outcome; a failed action is audited as failed, with why; ``aiaas audit tail``
shows them (lines, and ``--json``).

Each command runs as its own process (``python -m aiaas.cli.main``), as a shell would run it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from aiaas.schemas.audit import AuditRecord
from aiaas.streams.settings import Settings
from tests import examples
from tests.infra import ROOT
from tests.spawn import run_to_end

pytestmark = pytest.mark.timeout(240)
ACTOR = "auditor@test"

SPEC = """job_id: {job}
model: {{input_dim: 64, hidden: [8], output_dim: 10}}
optimizer: {{name: adam, lr: 0.01}}
steps: 3
trainers: 1
sync: {{mode: sync, straggler_deadline_ms: 1000}}
data: {{source: digits, partitions: 1}}
export: {{model_name: audited, stage: staging}}
"""


async def aiaas(settings: Settings, *args: str, timeout_s: float = 90) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIAAS_TOPIC_PREFIX": settings.topic_prefix,
           "AIAAS_DEBUG": "", "AIAAS_LOG_LEVEL": "WARNING", "AIAAS_AUDIT_ACTOR": ACTOR}
    rc, out, err = await run_to_end(sys.executable, "-m", "aiaas.cli.main", *args, timeout_s=timeout_s,
                                    cwd=ROOT, env=env)
    return rc, out.decode(), err.decode()


async def _records(settings: Settings) -> list[AuditRecord]:
    rc, out, err = await aiaas(settings, "audit", "tail", "--json", "-n", "100")
    assert rc == 0, err
    return [AuditRecord.model_validate_json(line) for line in out.splitlines()]


async def test_each_cli_action_leaves_one_audit_record(settings: Settings, tmp_path: Path) -> None:
    began = time.time()
    first, second = tmp_path / "m1.onnx", tmp_path / "m2.onnx"
    first.write_bytes(examples.mlp([4, 6, 2], seed=1))
    second.write_bytes(examples.mlp([4, 6, 2], seed=2))
    steps: list[tuple[tuple[str, ...], int]] = [
        (("models", "push", str(first), "--name", "m"), 0),
        (("models", "push", str(second), "--name", "m", "--job-id", "other"), 0),
        (("models", "promote", "m", "1"), 0),
        (("models", "promote", "m", "2"), 0),
        (("models", "rollback", "m"), 0),
        (("models", "canary", "m", "2", "--weight", "0.2"), 0),
        (("models", "promote", "m", "9"), 1),  # no version 9: fails, audited as failed
        (("keys", "create", "--tenant", "acme"), 0),
    ]
    for argv, want in steps:
        rc, out, err = await aiaas(settings, *argv)
        assert rc == want, (argv, out, err)
        if argv[0] == "keys":
            key_id = json.loads(out)["key_id"]
    for argv, want in [(("keys", "revoke", key_id), 0), (("keys", "revoke", "nosuchkey"), 1)]:
        rc, out, err = await aiaas(settings, *argv)
        assert rc == want, (argv, out, err)

    recs = await _records(settings)
    seen = [(r.action, r.target, r.outcome) for r in recs]
    assert seen == [
        ("model.push", "m", "ok"), ("model.push", "m", "ok"), ("model.promote", "m", "ok"),
        ("model.promote", "m", "ok"), ("model.rollback", "m", "ok"), ("model.canary", "m", "ok"),
        ("model.promote", "m", "failed"), ("key.create", "acme", "ok"), ("key.revoke", key_id, "ok"),
        ("key.revoke", "nosuchkey", "failed"),
    ], seen
    assert all(r.actor == ACTOR and r.source == "cli" and began <= r.ts <= time.time() for r in recs)
    assert [r.details["version"] for r in recs[:6]] == [1, 2, 1, 2, 1, 2]  # rollback: back to 1
    assert recs[5].details["weight"] == 0.2 and recs[5].details["stage"] == "canary"
    failed = recs[6]
    assert failed.error is not None and "not_found" in failed.error
    assert failed.details["requested_version"] == 9
    assert recs[7].tenant == "acme" and recs[7].details["key_id"] == key_id
    assert all("aiaas_" not in r.model_dump_json() for r in recs)  # the API key itself never
    assert recs[9].error is not None and "no such key" in recs[9].error

    rc, out, err = await aiaas(settings, "audit", "tail", "-n", "3")
    lines = out.splitlines()
    assert rc == 0 and len(lines) == 3, (out, err)
    assert "key.create acme  ok" in lines[0] and ACTOR in lines[0]
    assert f"key.revoke {key_id}  ok" in lines[1]
    assert "key.revoke nosuchkey  failed: not_found: no such key" in lines[2]


async def test_job_start_and_stop_are_audited(settings: Settings, tmp_path: Path) -> None:
    """A refused job is one failed job.start (nothing ran); a job that ran has a job.start and a
    job.stop whose outcome matches how ``aiaas train`` ended (here: stopped by its --timeout)."""
    refused, ran = tmp_path / "refused.yaml", tmp_path / "ran.yaml"
    refused.write_text(SPEC.format(job="refused-job"))
    ran.write_text(SPEC.format(job="timed-job"))
    rc, out, err = await aiaas(settings, "train", "--spec", str(refused), "--no-push")
    assert rc == 2, (out, err)  # no data pushed for it: refused before anything starts
    rc, out, err = await aiaas(settings, "train", "--spec", str(ran), "--timeout", "1", timeout_s=120)
    assert rc == 1 and "no final status within 1s" in out, (out, err)

    recs = await _records(settings)
    seen = [(r.action, r.target, r.outcome) for r in recs]
    assert seen == [("job.start", "refused-job", "failed"), ("job.start", "timed-job", "ok"),
                    ("job.stop", "timed-job", "failed")], seen
    assert recs[0].error is not None and "no pushed data" in recs[0].error
    assert recs[1].details["model"] == "audited" and recs[2].error == "TimeoutError"
    assert recs[1].ts <= recs[2].ts and all(r.actor == ACTOR for r in recs)
