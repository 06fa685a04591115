"""Tensor codec: OIP JSON round-trips every datatype (and the HTTP binary extension, through the
bridge's parser); junk is refused with a reason."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from aiaas.agents.bridge.oip import parse_request
from aiaas.client.inference import encode_request
from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.inference import Datatype, InferenceRequest, InferenceResponse, Tensor
from aiaas.streams import headers as h
from aiaas.streams import tensorcodec as tc
from aiaas.streams.replywire import InferResult

ARRAYS = {
    "f32": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
    "f16": np.array([[0.5, -2.0]], dtype=np.float16),
    "f64": np.array([1e-300, 3.5]),
    "i64": np.array([[-(2**62), 5, 2**62]], dtype=np.int64),
    "i8": np.array([-128, 127], dtype=np.int8),
    "u16": np.array([0, 65535], dtype=np.uint16),
    "b": np.array([[True, False], [False, True]]),
    "s": np.array([b"hello", "wörld".encode()], dtype=object),
}


def _decoded(enc: tc.Encoded) -> tuple[str | None, dict[str, np.ndarray]]:
    """A request's id and arrays: a JSON record through the codec, a binary body through the bridge."""
    if tc.HEADER_LENGTH not in enc.headers:
        req, arrays = tc.decode(enc.value, InferenceRequest, "inputs")
        return req.id, arrays
    parsed = parse_request(enc.value, enc.headers[tc.HEADER_LENGTH])
    return parsed.request_id, parsed.inputs


@pytest.mark.parametrize("binary", [False, True])
def test_request_round_trip_every_datatype(binary: bool) -> None:
    enc = tc.encode_body(InferenceRequest.KIND, {"id": "r1"}, "inputs", ARRAYS, binary=binary)
    assert enc.headers[h.CONTENT_TYPE] == (tc.BINARY if binary else tc.JSON)
    if not binary:
        assert enc.value == encode_request(ARRAYS, request_id="r1").value
    rid, arrays = _decoded(enc)
    assert rid == "r1" and list(arrays) == list(ARRAYS)
    for name, want in ARRAYS.items():
        got = arrays[name]
        assert got.shape == want.shape, name
        if want.dtype == object:
            assert list(got.reshape(-1)) == list(want.reshape(-1))
        else:
            assert got.dtype == want.dtype, name
            np.testing.assert_array_equal(got, want)


def test_binary_is_json_head_plus_little_endian_bytes() -> None:
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    enc = tc.encode_body(InferenceRequest.KIND, {"id": "r"}, "inputs", {"x": x}, binary=True)
    n = int(enc.headers[tc.HEADER_LENGTH])
    head = json.loads(enc.value[:n])
    assert head["inputs"][0] == {"name": "x", "shape": [1, 2], "datatype": "FP32",
                                 "parameters": {"binary_data_size": 8}}
    assert enc.value[n:] == x.astype("<f4").tobytes()
    big_endian = tc.encode_body(InferenceRequest.KIND, {"id": "r"}, "inputs", {"x": x.astype(">f4")},
                                binary=True)
    assert big_endian.value == enc.value
    np.testing.assert_array_equal(_decoded(big_endian)[1]["x"], x)


def test_nested_json_data_and_response_decoding() -> None:
    body = {"kind": "inference_response", "model_name": "m", "model_version": "2",
            "outputs": [{"name": "y", "shape": [2, 2], "datatype": "INT32", "data": [[1, 2], [3, 4]]}]}
    resp, arrays = tc.decode(json.dumps(body).encode(), InferenceResponse, "outputs")
    assert resp.model_version == "2"
    np.testing.assert_array_equal(arrays["y"], np.array([[1, 2], [3, 4]], dtype=np.int32))


def test_json_data_is_flat_row_major() -> None:
    enc = tc.encode_body("k", {}, "outputs", {"x": np.array([[1, 2], [3, 4]], dtype=np.int64)}, binary=False)
    [t] = [Tensor.model_validate(o) for o in json.loads(enc.value)["outputs"]]
    assert t.datatype is Datatype.INT64 and t.data == [1, 2, 3, 4] and t.shape == [2, 2]
    assert tc.to_numpy(t).tolist() == [[1, 2], [3, 4]]
    for n in (0, 1, 5, 12):  # over slices of 5 elements: the same list
        x = np.arange(n, dtype=np.float32) / 3
        assert json.loads(tc.json_text(x, Datatype.FP32, "x", slice_elements=5)) == x.tolist()


def test_a_result_prints_as_the_oip_response() -> None:
    outputs = {"y": np.array([[1.5, 2]], np.float32), "t": np.array([b"a"], object)}
    resp = InferResult("r1", "m", "3", outputs, {"truncated": False}).to_response()
    assert (resp.id, resp.model_name, resp.model_version) == ("r1", "m", "3")
    assert resp.parameters == {"truncated": False}
    assert [(t.name, t.data) for t in resp.outputs] == [("y", [1.5, 2.0]), ("t", ["a"])]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x00\xffjunk", "not JSON"),
        (b'{"inputs": []}', "does not match"),
        (b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0]}]}', "match"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", '
         b'"parameters": {"binary_data_size": 4}}]}', "no JSON data"),  # binary tensors: HTTP only
        (None, "no value"),
    ],
)
def test_junk_is_refused_with_a_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        tc.decode(value, InferenceRequest, "inputs")
    assert reason in info.value.reason + json.dumps(info.value.details)
    assert info.value.status_code == 400


@pytest.mark.parametrize("length", ["", "0", "99", "x"])
def test_a_binary_body_needs_a_valid_header_length(length: str) -> None:
    with pytest.raises(InvalidMessage, match="inference-header-content-length"):
        tc.split_value(b"{}", length)
    assert tc.split_value(b"{}", None)[0] == b"{}"


def _binary(head: dict[str, object], tail: bytes) -> tuple[bytes, str]:
    raw = json.dumps(head).encode()
    return raw + tail, str(len(raw))


@pytest.mark.parametrize(
    ("size", "tail", "reason"),
    [
        (8, b"\x00" * 4, "do not match binary_data_size"),  # truncated
        (4, b"\x00" * 4, "does not match its shape"),
        (8, b"\x00" * 12, "do not match binary_data_size"),  # trailing bytes
    ],
)
def test_binary_sizes_are_checked(size: int, tail: bytes, reason: str) -> None:
    tensor = {"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": size}}
    head = {"inputs": [tensor]}
    value, length = _binary(head, tail)
    with pytest.raises(InvalidMessage, match=reason):
        parse_request(value, length)


def test_bool_bytes_must_be_0_or_1_and_nan_needs_binary() -> None:
    tensor = {"name": "m", "shape": [2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}}
    head = {"inputs": [tensor]}
    value, length = _binary(head, b"\x01\x07")
    with pytest.raises(InvalidMessage, match="BOOL"):
        parse_request(value, length)
    with pytest.raises(InvalidMessage, match="NaN"):
        tc.json_text(np.array([np.nan], dtype=np.float32), Datatype.FP32, "x")
    enc = tc.encode_body("k", {}, "outputs", {"x": np.array([np.nan], dtype=np.float32)}, binary=True)
    head = json.loads(enc.value[:int(enc.headers[tc.HEADER_LENGTH])])
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 4}


def test_the_workers_oip_encoder_matches_the_validated_codec() -> None:
    """``encode_body`` (the worker's OIP replies, no pydantic) reads back through the validating
    decoder as the same message and arrays; the binary form (HTTP), through the bridge's parser."""
    x = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([[7]], dtype=np.int64)}
    for rid in ("r-1", 'q"uote', "ünï"):
        enc = tc.encode_body("inference_response", {"model_name": "m", "id": rid}, "outputs", x, binary=False)
        resp, arrays = tc.decode(enc.value, InferenceResponse, "outputs")
        assert resp.id == rid and resp.model_name == "m" and list(arrays) == ["a", "b"]
        request = tc.encode_body(InferenceRequest.KIND, {"id": rid}, "inputs", x, binary=True)
        got_id, binary = _decoded(request)
        assert got_id == rid and list(binary) == ["a", "b"]
        for name, arr in x.items():
            np.testing.assert_array_equal(arrays[name], arr)
            np.testing.assert_array_equal(binary[name], arr)


def test_the_json_writer_without_msgspec_writes_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client-only install (no msgspec) writes the same replies with json.dumps."""
    outs = {"y": np.array([[0.1, 1e-7, 3.0]], np.float32), "t": np.array([b"a", "é".encode()], dtype=object),
            "n": np.arange(3)}
    fast = tc.encode_body("k", {"model_name": "m", "id": "r"}, "outputs", outs, binary=False).value
    monkeypatch.setitem(sys.modules, "msgspec", None)  # import msgspec raises ImportError
    monkeypatch.setattr(tc, "_dumps", tc._encoder())
    slow = tc.encode_body("k", {"model_name": "m", "id": "r"}, "outputs", outs, binary=False).value
    assert json.loads(fast) == json.loads(slow) and json.loads(slow)["outputs"][1]["data"] == ["a", "é"]
