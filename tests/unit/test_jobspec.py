"""Bad job specs are rejected with a message that names the field."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from aiaas.schemas.envelope import validation_errors
from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.jobs import JobSpec

GOOD: dict[str, Any] = {
    "job_id": "digits-1",
    "model": {"input_dim": 64, "hidden": [256, 256], "output_dim": 10},
    "epochs": 5,
    "sync": {"mode": "sync"},
    "data": {"source": "digits", "strategy": "label", "partitions": 2},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    """GOOD with one dotted field replaced (or removed when value is ...)."""
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    *parents, leaf = path.split(".")
    node = spec
    for p in parents:
        node = node.setdefault(p, {})
    if value is ...:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return spec


def _fields(spec: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as err:
        JobSpec.model_validate(spec)
    return " ".join(e["field"] + ": " + e["message"] for e in validation_errors(err.value))


def test_good_spec_from_yaml_round_trips() -> None:
    spec = JobSpec.model_validate(yaml.safe_load(yaml.safe_dump(GOOD)))
    assert spec.model.output_dim == 10 and spec.data.strategy == "label"
    assert JobSpec.from_record(spec.to_record()) == spec


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("job_id", ..., "job_id"),
        ("job_id", "bad id/with slash", "job_id"),
        ("optimizer.lr", 0, "optimizer.lr"),
        ("optimizer.name", "rmsprop", "optimizer.name"),
        ("loss", "hinge", "loss"),
        ("sync.mode", "gossip", "sync.mode"),
        ("sync.staleness", -1, "sync.staleness"),
        ("sync.straggler_deadline_ms", 1, "sync.straggler_deadline_ms"),
        ("compression.kind", "zip", "compression.kind"),
        ("compression.ratio", 0, "compression.ratio"),
        ("batch_size", 0, "batch_size"),
        ("model.hidden", [64, 0], "model.mlp.hidden.1"),
        ("model.dropout", 1.0, "model.mlp.dropout"),
        ("model.layers", [3], "model.mlp.layers"),  # unknown field: extra=forbid names it
        ("data.strategy", "zigzag", "data.strategy"),
        ("data.partitions", 0, "data.partitions"),
        ("data.test_fraction", 1.0, "data.test_fraction"),
        ("data.task", "ranking", "data.task"),
        ("schedule.kind", "linear", "schedule.kind"),
        ("target.value", ..., "target.value"),
    ],
)
def test_bad_field_is_named(path: str, value: Any, field: str) -> None:
    assert field in _fields(_with(path, value))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"steps": 100}, "epochs"),  # both epochs and steps
        ({"epochs": None}, "epochs"),  # neither
        ({"model": {"input_dim": 64, "output_dim": 1}}, "model.output_dim"),  # cross_entropy, one logit
        ({"trainers": 4}, "data.partitions"),  # fewer partitions than trainers
        ({"data": {"source": "csv"}}, "data.path"),
        ({"model": {"kind": "module", "import_path": "not a path", "input_dim": 1, "output_dim": 2}},
         "import_path"),
    ],
)
def test_cross_field_rules_name_the_field(change: dict[str, Any], words: str) -> None:
    spec = yaml.safe_load(yaml.safe_dump(GOOD)) | change
    spec = {k: v for k, v in spec.items() if v is not None}
    assert words in _fields(spec)


def test_wire_decode_reports_fields() -> None:
    bad = JobSpec.model_validate(GOOD).to_record().replace(b'"lr":0.001', b'"lr":-1')
    with pytest.raises(InvalidMessage) as err:
        JobSpec.from_record(bad)
    assert [e["field"] for e in err.value.details["errors"]] == ["optimizer.lr"]
