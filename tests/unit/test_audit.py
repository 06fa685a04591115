"""Audit records without a broker: what a failure says, who the CLI is, how a line reads, and that
records written before outcome/source existed still decode."""

from __future__ import annotations

import asyncio
import json

import pytest
from typer.testing import CliRunner

from aiaas.cli.audit import line
from aiaas.cli.main import app
from aiaas.schemas.audit import AuditRecord
from aiaas.schemas.errors import NotFound
from aiaas.streams.audit import cli_actor, error_text, record


def test_error_text_names_code_reason_and_details() -> None:
    assert error_text(NotFound("unknown model version", model="m", version=9)) == (
        'not_found: unknown model version {"model": "m", "version": 9}')
    assert error_text(TimeoutError()) == "TimeoutError"
    assert error_text(ValueError("bad")) == "ValueError: bad"
    assert error_text(asyncio.CancelledError()) == "interrupted"
    assert len(error_text(ValueError("x" * 5000))) == 1000  # one line, bounded


def test_record_is_ok_or_failed_with_why() -> None:
    ok = record("model.promote", "m", actor="a", version=2)
    assert (ok.outcome, ok.error, ok.source, ok.details) == ("ok", None, "cli", {"version": 2})
    failed = record("key.revoke", "k1", actor="a", error=NotFound("no such key", key_id="k1"))
    assert failed.outcome == "failed" and failed.error is not None and failed.error.startswith("not_found")
    stopped = record("job.stop", "j", actor="a", error="missed_target: 0.8 < 0.9")
    assert stopped.outcome == "failed" and stopped.error == "missed_target: 0.8 < 0.9"


def test_the_cli_actor_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIAAS_AUDIT_ACTOR", "ci-bot")
    assert cli_actor() == "ci-bot"
    monkeypatch.delenv("AIAAS_AUDIT_ACTOR")
    assert "@" in cli_actor()  # user@host


def test_a_line_says_when_where_who_what_and_the_outcome() -> None:
    rec = AuditRecord(tenant="acme", actor="k1", action="job.start", target="j1", ts=0.0, source="bridge",
                      outcome="failed", error="conflict: a job with this id exists", details={"model": "m"})
    assert line(rec) == ("1970-01-01 00:00:00  bridge k1 (acme)  job.start j1  "
                         "failed: conflict: a job with this id exists  model=m")


def test_records_from_before_outcome_and_source_still_decode() -> None:
    old = {"kind": "audit", "v": 1, "tenant": "acme", "actor": "k1", "action": "submit_job", "target": "j1",
           "ts": 1.0, "details": {"model": "m"}}
    rec = AuditRecord.from_record(json.dumps(old).encode())
    assert (rec.outcome, rec.source, rec.error) == ("ok", "bridge", None)


def test_audit_tail_is_a_command() -> None:
    result = CliRunner().invoke(app, ["audit", "tail", "--help"])
    assert result.exit_code == 0 and "--follow" in result.output and "--json" in result.output
