"""Request intake without a broker: a layout checked once for a version is not checked again, and
what the layout does not fix (id length, version, deadline) still is; a frame's entry and the OIP
JSON request give the same work; an OIP binary-extension record is refused with the forms that work."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from aiaas.agents.inference.intake import Intake, unpack
from aiaas.agents.inference.sessions import Loaded
from aiaas.agents.inference.settings import WorkerSettings
from aiaas.registry.store import signature
from aiaas.schemas.errors import AiaasError, InvalidMessage
from aiaas.schemas.inference import InferenceRequest
from aiaas.schemas.registry import ModelVersion
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams import tensorcodec as tc
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


def record(rid: str, x: np.ndarray, *, framed: bool = False, **extra: str) -> Record:
    """An OIP JSON request, or (``framed``) the request split from a frame of one."""
    if framed:
        value, hd = frame.encode([frame.Entry([rid], {"input": x}, dict(extra))])
        [rec] = unpack(Record("t", 0, 7, b"k", value, h.decode(hd)))
        return rec
    enc = encode_request({"input": x}, request_id=rid)
    return Record("t", 0, 7, rid.encode(), enc.value, {**enc.headers, h.CORRELATION_ID: rid, **extra})


@pytest.fixture
def intake() -> Intake:
    return Intake(WorkerSettings(model="m"), OneVersion(loaded(1)))  # type: ignore[arg-type]


async def test_known_layouts_skip_the_checks_and_give_the_same_work(intake: Intake) -> None:
    x = np.ones((1, 4), np.float32)
    works = [await intake.work(record(f"r{i}", x * i, framed=i % 2 == 1), f"r{i}") for i in range(4)]
    model = intake.sessions.default
    assert len(model.checked) == 1  # the layout's verdict, remembered for this version
    for i, w in enumerate(works):
        framed = i % 2 == 1
        assert (w.request_id, w.response_id, w.rows, w.outputs) == (
            f"r{i}", None if framed else f"r{i}", 1, None)
        assert frame.is_frame(w.record.headers) is framed
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
    for framed in (False, True):
        with pytest.raises(AiaasError) as info:
            await intake.work(record("late", x, framed=framed, deadline="1000"), "late")
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
    assert not new.checked
    w = await intake.work(record("after", x), "after")
    assert w.model is new and w.rows == 1  # checked afresh for the new version, and remembered there
    assert len(new.checked) == 1 and len(old.checked) == 1


async def test_an_oip_binary_record_is_refused_with_the_forms_that_work(intake: Intake) -> None:
    """The OIP binary extension is an HTTP form (the bridge's edge); on Kafka a record of it gets a
    400 that names what is accepted: one OIP JSON request, or a frame."""
    enc = tc.encode_body(InferenceRequest.KIND, {"id": "b"}, "inputs", {"input": np.ones((1, 4), np.float32)},
                         binary=True)
    assert enc.headers[h.CONTENT_TYPE] == tc.BINARY
    rec = Record("t", 0, 7, b"b", enc.value, {**enc.headers, h.CORRELATION_ID: "b"})
    with pytest.raises(InvalidMessage) as info:
        await intake.work(rec, "b")
    assert info.value.status_code == 400 and info.value.details["content_type"] == tc.BINARY
    assert tc.JSON in info.value.reason and frame.CONTENT_TYPE in info.value.reason
    json_rec = record("j", np.ones((1, 4), np.float32))  # a charset parameter is still JSON
    json_rec.headers[h.CONTENT_TYPE] = "application/json; charset=utf-8"
    assert (await intake.work(json_rec, "j")).rows == 1
