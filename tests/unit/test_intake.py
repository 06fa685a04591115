"""Request intake without a broker: a layout checked once for a version is not checked again, and
what the layout does not fix (id length, version, deadline) still is."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from aiaas.agents.inference.intake import Intake
from aiaas.agents.inference.sessions import Loaded
from aiaas.agents.inference.settings import WorkerSettings
from aiaas.registry.store import signature
from aiaas.schemas.errors import AiaasError
from aiaas.schemas.registry import ModelVersion
from aiaas.streams import headers as h
from aiaas.streams.record import Record
from aiaas.streams.replywire import encode_request
from tests import examples


def loaded(version: int) -> Loaded:
    data = examples.mlp([4, 8, 2], seed=version)
    inputs, outputs = signature(data)
    mv = ModelVersion(name="m", version=version, sha256="0" * 64, size_bytes=len(data), inputs=inputs,
                      outputs=outputs)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return Loaded(mv, session, [o.name for o in session.get_outputs()])


class OneVersion:
    """The part of Sessions that intake uses: every unpinned request goes to ``default``."""

    def __init__(self, model: Loaded) -> None:
        self.default = model

    def route(self, request_id: str) -> Loaded:
        return self.default


def record(rid: str, x: np.ndarray, **extra: str) -> Record:
    enc = encode_request({"input": x}, request_id=rid, binary=True)
    return Record("t", 0, 7, rid.encode(), enc.value, {**enc.headers, h.CORRELATION_ID: rid, **extra})


@pytest.fixture
def intake() -> Intake:
    return Intake(WorkerSettings(model="m"), OneVersion(loaded(1)))  # type: ignore[arg-type]


async def test_known_layouts_skip_the_checks_and_give_the_same_work(intake: Intake) -> None:
    x = np.ones((1, 4), np.float32)
    works = [await intake.work(record(f"r{i}", x * i), f"r{i}") for i in range(4)]
    model = intake.sessions.default
    assert len(model.known) == 1  # remembered after the layout cache first served it
    for i, w in enumerate(works):
        assert (w.request_id, w.response_id, w.rows, w.binary, w.outputs) == (f"r{i}", f"r{i}", 1, True, None)
        np.testing.assert_array_equal(w.inputs["input"], x * i)
    assert works[-1].sig == works[0].sig and works[-1].model is model


async def test_what_a_layout_does_not_fix_is_still_checked(intake: Intake) -> None:
    x = np.ones((1, 4), np.float32)
    for i in range(3):
        await intake.work(record(f"r{i}", x), f"r{i}")
    long_id = "i" * 129
    with pytest.raises(AiaasError) as info:  # same layout, but an id over 128 characters
        await intake.work(record(long_id, x), long_id)
    assert info.value.status_code == 400
    with pytest.raises(AiaasError) as info:
        await intake.work(record("late", x, deadline="1000"), "late")
    assert info.value.status_code == 504
    with pytest.raises(AiaasError) as info:  # another layout: checked, and refused
        await intake.work(record("wide", np.ones((1, 5), np.float32)), "wide")
    assert info.value.status_code == 400 and "shape" in info.value.reason


async def test_a_new_version_checks_its_layouts_again(intake: Intake) -> None:
    x = np.ones((1, 4), np.float32)
    for i in range(3):
        await intake.work(record(f"r{i}", x), f"r{i}")
    old = intake.sessions.default
    new = intake.sessions.default = loaded(2)  # type: ignore[misc]
    assert not new.known
    w = await intake.work(record("after", x), "after")
    assert w.model is new and w.rows == 1  # checked afresh for the new version, and remembered there
    assert len(new.known) == 1 and len(old.known) == 1
