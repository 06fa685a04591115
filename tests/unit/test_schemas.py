"""Schemas: envelope round trips, OIP tensor checks, and junk input gives InvalidMessage."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiaas.schemas.errors import AiaasError, ErrorCode, InvalidMessage
from aiaas.schemas.inference import Datatype, InferenceRequest, Tensor
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.records import DeadLetter, JobStatus

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@given(JSON)
@settings(max_examples=200, deadline=None)
def test_junk_json_is_invalid_message(value: object) -> None:
    for model in (InferenceRequest, JobSpec, DeadLetter, JobStatus):
        try:
            model.from_record(json.dumps(value).encode())
        except InvalidMessage as exc:
            assert exc.status_code == 400 and not exc.retriable


@given(st.binary(max_size=64))
@settings(max_examples=100, deadline=None)
def test_junk_bytes_are_invalid_message(value: bytes) -> None:
    with pytest.raises(InvalidMessage):
        InferenceRequest.from_record(value)


def test_inference_request_round_trip_and_nested_data() -> None:
    req = InferenceRequest(id="r1", inputs=[
        Tensor(name="x", shape=[2, 2], datatype=Datatype.FP32, data=[[1.0, 2.0], [3.0, 4.0]]),
        Tensor(name="m", shape=[2], datatype=Datatype.BOOL, data=[True, False]),
    ])
    assert req.inputs[0].data == [1.0, 2.0, 3.0, 4.0]
    assert InferenceRequest.from_record(req.to_record()) == req


@pytest.mark.parametrize(("tensor", "message"), [
    ({"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 2.0, 3.0]}, "needs 4 elements"),
    ({"name": "x", "shape": [2], "datatype": "INT8", "data": [1, 300]}, "not a valid INT8"),
    ({"name": "x", "shape": [1], "datatype": "FP32", "data": ["a"]}, "not a number"),
    ({"name": "x", "shape": [1], "datatype": "BOOL", "data": [1]}, "true/false"),
    ({"name": "x", "shape": [-1], "datatype": "FP32", "data": []}, "negative"),
    ({"name": "x", "shape": [1], "datatype": "FP33", "data": [1.0]}, "datatype"),
])
def test_bad_tensors_name_the_problem(tensor: dict[str, object], message: str) -> None:
    body = json.dumps({"inputs": [tensor]}).encode()
    with pytest.raises(InvalidMessage) as info:
        InferenceRequest.from_record(body)
    assert message in json.dumps(info.value.to_dict())


def test_future_version_and_wrong_kind_are_refused() -> None:
    with pytest.raises(InvalidMessage, match="version"):
        JobStatus.from_record(b'{"v": 99, "job_id": "j", "state": "running"}')
    with pytest.raises(InvalidMessage, match="kind"):
        JobStatus.from_record(b'{"kind": "dead_letter", "job_id": "j", "state": "running"}')


def test_errors_carry_status_and_retriable() -> None:
    err = AiaasError("slow down", code=ErrorCode.RATE_LIMITED, tenant="t")
    assert err.status_code == 429 and err.retriable
    assert err.to_dict() == {"error": "slow down", "code": "rate_limited", "tenant": "t"}


def test_jobspec_names_the_bad_field() -> None:
    with pytest.raises(InvalidMessage) as info:
        JobSpec.from_record(json.dumps({
            "job_id": "j", "model": {"input_dim": 64, "output_dim": 10}, "epochs": 1,
            "sync": {"mode": "gossip"},
        }).encode())
    fields = [e["field"] for e in info.value.details["errors"]]
    assert fields == ["sync.mode"]
