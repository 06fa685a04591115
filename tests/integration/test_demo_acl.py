"""``aiaas demo`` with access control on (docs/operations.md, "Access control"): on the session's
secured broker (``sasl-broker.sh start --acl``) the admin runs ``aiaas acl apply``, then the demo
runs with ``AIAAS_ROLE_USERS=true``: the aggregator, the trainer, the inference worker and the
bridge each log in as their role's SCRAM user, the Kafka caller as tenant ``demo``; the CLI itself
(data push, registry, topics) is the admin. Trimmed to fit the suite (one trainer, one worker, a
one epoch, 60 rows called) but the same code path as ``make demo``. The broker's authorizer log
says who did what: each role wrote its own topics, under its own name.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import uuid
from pathlib import Path

import pytest

from tests.infra import ROOT, SecuredBroker
from tests.spawn import run_to_end

pytestmark = pytest.mark.timeout(400)


async def _aiaas(env: dict[str, str], *args: str, timeout_s: float) -> tuple[int, str]:
    code, out, _ = await run_to_end(sys.executable, "-m", "aiaas.cli.main", *args, cwd=str(ROOT), env=env,
                                    merge_stderr=True, timeout_s=timeout_s)
    return code, out.decode(errors="replace")


async def test_demo_passes_with_every_role_under_its_own_user(
    acl_broker: SecuredBroker, prefix: str, infra: None, tmp_path: Path
) -> None:
    job = f"demo{uuid.uuid4().hex[:6]}"
    env = {**os.environ, **acl_broker.env(), "AIAAS_TOPIC_PREFIX": prefix, "PYTHONPATH": str(ROOT)}
    code, out = await _aiaas(env, "acl", "apply", "--tenant", "demo=digits", "--job", job, timeout_s=60)
    assert code == 0 and "tenant-demo: " in out and "aiaas-aggregator: " in out, out

    env["AIAAS_ROLE_USERS"] = "true"
    code, text = await _aiaas(env, "demo", "--out", str(tmp_path / "out"), "--job-id", job, "--epochs", "1",
                              "--trainers", "1", "--workers", "1", "--rows", "60", timeout_s=360)
    assert code == 0, text[-4000:]
    result = json.loads(text.strip().splitlines()[-1])
    assert result["errors"] == 0 and result["failure"] is None, result
    assert result["requests"] == 60 and result["job_id"] == job
    # served on 60 rows: the trained accuracy within three standard errors of a 60-row sample
    p = result["trained_accuracy"]
    assert result["served_accuracy"] == pytest.approx(p, abs=3 * math.sqrt(p * (1 - p) / 60) + 0.01)
    assert result["served_accuracy"] >= 0.8

    log = acl_broker.authorizer_log()
    produced = r"User:(\S+) is Allowed operation = WRITE .*?Topic:LITERAL:(\S+) for request = Produce"
    wrote = {(user, topic.removeprefix(prefix)) for user, topic in re.findall(produced, log)
             if topic.startswith(prefix)}
    assert ("aiaas-trainer", f"train.{job}.grads") in wrote
    assert ("aiaas-aggregator", f"train.{job}.params") in wrote and ("aiaas-aggregator", "models") in wrote
    assert ("aiaas-bridge", "infer.digits.requests") in wrote  # the HTTP callers' requests
    assert ("tenant-demo", "infer.digits.requests") in wrote  # the Kafka caller's
    assert any(user == "aiaas-inference" and t.startswith("replies.demo-") for user, t in wrote)  # replies
    # each topic was written only by the roles whose job it is, not by the admin (the CLI) for them;
    # the registry by the aggregator (the export) and the admin (the demo promotes a missed target)
    writers = {topic: {u for u, t in wrote if t == topic} for _, topic in wrote}
    assert writers[f"train.{job}.grads"] == {"aiaas-trainer"}
    assert writers[f"train.{job}.params"] == {"aiaas-aggregator"}
    assert "aiaas-aggregator" in writers["models"] <= {"aiaas-aggregator", acl_broker.admin}
    assert writers["infer.digits.requests"] == {"aiaas-bridge", "tenant-demo"}
