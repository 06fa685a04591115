"""The promotion gate (agents/aggregator/gate.py) without a broker: rows that arrive while a
candidate is scored and promoted count as new for the next candidate (a restarted job catching up
while a drift arrives), and on a stream idle since then candidates are still scored by time but
promoted only for a gain over the tolerance (a model that kept learning after the drift's last
record replaces one that had not caught up; the same concept is not registered again and again)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from aiaas.agents.aggregator import gate as gate_module
from aiaas.agents.aggregator.gate import Gate
from aiaas.agents.aggregator.state import ServerState
from aiaas.ml import export
from tests.sourcestreams import source_spec


class Reader:
    def __init__(self) -> None:
        self.read = 0
        self.positions = {0: 0}
        self.settings = None


class Holdout:
    """The held-out window as the gate sees it: arrays of rows and the reader's count of records."""

    def __init__(self, spec: Any) -> None:
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(50, spec.model.input_dim)).astype(np.float32)
        self.y = rng.integers(0, spec.model.output_dim, 50).astype(np.float32)
        self.reader = Reader()

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.x, self.y

    def lineage(self) -> None:
        return None


class Registry:
    async def load_bytes(self, mv: Any) -> bytes:
        return b"onnx"


def gate_with(arriving_during_promotion: int,
              monkeypatch: pytest.MonkeyPatch) -> tuple[Gate, Holdout, ServerState]:
    """A gate whose promotion registers nothing (that needs a broker) but lets rows arrive meanwhile."""
    spec = source_spec("gate", "topic", mode="continuous", continuous={
        "publish_every_records": 1000, "publish_every_s": 0.001, "tolerance": 0.02, "holdout_rows": 50})
    holdout = Holdout(spec)

    async def register(*args: Any, **kwargs: Any) -> tuple[None, Any]:
        holdout.reader.read += arriving_during_promotion  # e.g. a drift lands while exporting
        return None, SimpleNamespace(version=1)

    monkeypatch.setattr(gate_module, "export_and_register", register)
    monkeypatch.setattr(export, "session", lambda onnx: object())
    gate = Gate(spec, None, holdout, Registry())  # type: ignore[arg-type]  # no production: data unused
    return gate, holdout, ServerState(spec)


@pytest.mark.parametrize("arriving", [0, 500])
async def test_rows_read_during_a_promotion_are_new_for_the_next_candidate(
        arriving: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next candidate, scoring what production scores: promoted when rows arrived since the
    promoted one was taken (during its promotion counts), kept out on a stream idle since then."""
    gate, holdout, state = gate_with(arriving, monkeypatch)
    holdout.reader.read = 1500
    assert gate.due()
    first = await gate.consider(state, {})
    assert first.promoted and first.model_version == 1
    monkeypatch.setattr(gate_module, "_score_onnx", lambda *a: first.candidate)  # production's score
    gate._since_t -= 1.0  # publish_every_s (1 ms) has passed: on a fast machine it had not always yet
    assert gate.due()  # the time rule, idle or not: trainers go on learning
    again = await gate.consider(state, {})
    assert again.production == first.candidate and again.candidate == first.candidate
    assert again.promoted is (arriving > 0)


async def test_an_idle_stream_promotes_only_a_gain_over_the_tolerance(
        monkeypatch: pytest.MonkeyPatch) -> None:
    gate, holdout, state = gate_with(0, monkeypatch)
    holdout.reader.read = 1500
    first = await gate.consider(state, {})
    for prod, promoted in ((first.candidate - 0.05, True), (first.candidate - 0.01, False)):
        monkeypatch.setattr(gate_module, "_score_onnx", lambda *a, p=prod: p)
        assert (await gate.consider(state, {})).promoted is promoted, prod
