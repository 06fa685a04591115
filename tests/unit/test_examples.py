"""The example job specs shipped in examples/ stay valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiaas.streams.jobs import load_spec_file

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_spec_is_valid(path: Path) -> None:
    spec = load_spec_file(path)
    assert spec.job_id and spec.model.input_dim > 0


def test_there_are_examples() -> None:
    assert EXAMPLES
