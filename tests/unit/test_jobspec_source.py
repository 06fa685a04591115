"""JobSpec's source:/mode: fields (no broker): what is refused up front, with the field named."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from aiaas.schemas.jobs import JobSpec

SOURCE = {"topic": "events", "features": [{"path": "image.pixels[]", "width": 64}], "label": "label"}


def spec(**over: Any) -> JobSpec:
    base: dict[str, Any] = {"job_id": "j", "model": {"input_dim": 64, "output_dim": 10}, "source": SOURCE}
    return JobSpec.model_validate(base | over)


def test_a_continuous_job_needs_no_budget_but_a_source() -> None:
    job = spec(mode="continuous")
    assert job.steps is None and job.epochs is None and job.continuous.tolerance == 0.02
    with pytest.raises(ValidationError, match="needs a source"):
        spec(mode="continuous", source=None, steps=10)
    with pytest.raises(ValidationError, match="no epochs"):
        spec(mode="continuous", epochs=3)


def test_a_bounded_source_job_still_needs_its_budget() -> None:
    assert spec(epochs=3).mode == "bounded"
    with pytest.raises(ValidationError, match="exactly one"):
        spec()


@pytest.mark.parametrize(("source", "why"), [
    (SOURCE | {"features": ["a", "b"]}, "give 2 columns"),
    ({k: v for k, v in SOURCE.items() if k != "label"}, "needs a label"),
])
def test_a_source_that_cannot_train_the_model_is_refused(source: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        spec(epochs=1, source=source)


def test_a_cadence_is_required() -> None:
    with pytest.raises(ValidationError, match="publish_every"):
        spec(mode="continuous", continuous={"publish_every_records": None, "publish_every_s": None})
