"""The one binary frame (aiaas.streams.frame), with hypothesis: random frames of requests and replies
round-trip exactly, and corrupt frames (truncated, bad heads, lengths past the end, wrong counts)
raise InvalidMessage with a reason, never another exception."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiaas.schemas.errors import InvalidMessage
from aiaas.streams import frame
from aiaas.streams import headers as h

FIXED = ["bool", "uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float16",
         "float32", "float64"]
ids = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20)
shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3)
# Strategies built once, not per draw: hypothesis validates every new strategy object, which was
# about a third of this module's time (the examples drawn are the same).
bytes_or_not = st.integers(0, 6)
fixed_types = st.sampled_from(FIXED)
item_bytes = st.binary(max_size=8)
row_ids = st.lists(ids, min_size=1, max_size=5, unique=True)
tensor_names = st.lists(st.text(max_size=6), max_size=4, unique=True)
frame_headers = st.dictionaries(st.sampled_from([h.DEADLINE, h.TENANT, "x-other"]), st.text(max_size=8))
reply_fields = st.sampled_from([{}, {"status": 200, "model_name": "m", "model_version": "3"},
                                {"status": 400, "error": {"error": "bad", "code": "bad_request"}},
                                {"parameters": {"a": 1}, "outputs": [{"name": "label"}]}])


@st.composite
def arrays(draw: Any, rows: int | None = None) -> np.ndarray:
    shape = draw(shapes)
    if rows is not None:
        shape = [rows, *shape]
    if draw(bytes_or_not) == 0:  # BYTES
        n = int(np.prod(shape))
        items = draw(st.lists(item_bytes, min_size=n, max_size=n))
        out = np.empty(n, dtype=object)
        out[:] = items
        return out.reshape(shape)
    dtype = np.dtype(draw(fixed_types))
    raw = draw(st.binary(min_size=int(np.prod(shape)) * dtype.itemsize,
                         max_size=int(np.prod(shape)) * dtype.itemsize))
    arr = np.frombuffer(raw, np.uint8).copy().view(dtype).reshape(shape)
    got: np.ndarray = (arr.view(np.uint8) & 1).view(dtype) if dtype.kind == "b" else arr
    return got


@st.composite
def entries(draw: Any) -> frame.Entry:
    rows = draw(st.booleans())
    rids = draw(row_ids) if rows else [draw(ids)]
    names = draw(tensor_names)
    tensors = {n: draw(arrays(len(rids) if rows else None)) for n in names}
    headers = draw(frame_headers)
    fields = draw(reply_fields)
    return frame.Entry(rids, tensors, headers, fields, rows)


def _same(a: frame.Entry, b: frame.Entry) -> None:
    assert (a.ids, a.headers, a.fields, a.rows) == (b.ids, b.headers, b.fields, b.rows)
    assert list(a.tensors) == list(b.tensors)
    for name, arr in a.tensors.items():
        got = b.tensors[name]
        assert got.shape == arr.shape and frame.datatype_of(got) == frame.datatype_of(arr)
        assert got.tobytes() == arr.tobytes() if arr.dtype != object else list(got.flat) == list(arr.flat)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entries(), min_size=1, max_size=12))
def test_frames_round_trip(items: list[frame.Entry]) -> None:
    value, headers = frame.encode(items)
    hd = h.decode(headers)
    assert frame.is_frame(hd) and hd[h.WIRE_VERSION] == "1"
    got = frame.decode(value, hd)
    assert len(got) == len(items)
    for a, b in zip(items, got, strict=True):
        _same(a, b)
    assert frame.ids_of(value, hd) == [i for e in items for i in e.ids]


def test_a_frame_of_one_request_reads_like_the_docs_say() -> None:
    x = np.arange(6, dtype=np.float32).reshape(1, 6)
    value, headers = frame.encode([frame.Entry(["r1"], {"input": x}, {h.DEADLINE: "99"})])
    hd = h.decode(headers)
    n = int(hd[h.INFERENCE_HEADER_LENGTH])
    head = json.loads(value[:n])
    assert head == {"entries": [{"id": "r1", "headers": {h.DEADLINE: "99"}, "tensors": [
        {"name": "input", "datatype": "FP32", "shape": [1, 6], "offset": 0, "length": 24}]}]}
    assert value[n:] == x.astype("<f4").tobytes()
    [e] = frame.decode(value, hd)
    assert not e.tensors["input"].flags.writeable  # a view of the record, no copy


def test_non_native_and_strided_arrays_travel_little_endian() -> None:
    big = np.arange(4, dtype=">i4")
    strided = np.arange(8, dtype=np.float64)[::2]
    value, headers = frame.encode([frame.Entry(["a"], {"big": big, "strided": strided})])
    [e] = frame.decode(value, h.decode(headers))
    assert e.tensors["big"].tolist() == [0, 1, 2, 3] and e.tensors["strided"].tolist() == [0, 2, 4, 6]


GOOD_VALUE, GOOD_HEADERS = frame.encode([
    frame.Entry(["a", "b"], {"x": np.ones((2, 3), np.float32)}, rows=True),
    frame.Entry(["c"], {"s": np.array([b"hi", b""], dtype=object)}),
])
GOOD = h.decode(GOOD_HEADERS)
N = int(GOOD[h.INFERENCE_HEADER_LENGTH])


def _head(**change: Any) -> dict[str, Any]:
    head: dict[str, Any] = json.loads(GOOD_VALUE[:N])
    for path, new in change.items():
        entry, key = path.split("__")
        e = head["entries"][int(entry[1:])]
        if key.startswith("t_"):
            e["tensors"][0][key[2:]] = new
        elif new is None:
            del e[key]
        else:
            e[key] = new
    return head


def _framed(head: Any, tail: bytes = GOOD_VALUE[N:]) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(head).encode()
    return raw + tail, {**GOOD, h.INFERENCE_HEADER_LENGTH: str(len(raw))}


CORRUPT = {
    "not an object": ([1, 2], "entries list"),
    "no entries": ({"entries": []}, "entries list"),
    "extra key": ({"entries": _head()["entries"], "more": 1}, "entries list"),
    "id and ids": (_head(e0__id="z"), "either an id or ids"),
    "no id": (_head(e1__id=None), "either an id or ids"),
    "empty id": (_head(e1__id=""), "1 to 128"),
    "long id": (_head(e1__id="x" * 129), "1 to 128"),
    "duplicate ids": (_head(e0__ids=["a", "a"]), "duplicate ids"),
    "headers not strings": (_head(e1__headers={"deadline": 5}), "object of strings"),
    "no tensors": (_head(e1__tensors=None), "tensors list"),
    "tensor keys": (_head(e1__t_extra=1), "exactly name"),
    "datatype": (_head(e1__t_datatype="FP128"), "unknown tensor datatype"),
    "shape": (_head(e1__t_shape=[-1]), "non-negative"),
    "offset past end": (_head(e1__t_offset=10_000), "outside the frame"),
    "length past end": (_head(e1__t_length=10_000), "outside the frame"),
    "negative length": (_head(e1__t_length=-1), "outside the frame"),
    "wrong rows": (_head(e0__ids=["a", "b", "c"]), "one row per id"),
    "wrong size": (_head(e0__t_shape=[2, 2]), "does not match"),
    "bytes truncated": (_head(e1__t_shape=[3]), "truncated"),
    "bytes trailing": (_head(e1__t_shape=[1]), "trailing"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_corrupt_head_is_refused_with_its_reason(case: str) -> None:
    head, reason = CORRUPT[case]
    value, hd = _framed(head)
    with pytest.raises(InvalidMessage, match=reason):
        frame.decode(value, hd)


def test_wrong_lengths_and_versions_are_refused() -> None:
    with pytest.raises(InvalidMessage, match="has no value"):
        frame.decode(None, GOOD)
    for length in ("", "0", "-1", "\u00b2", "9" * 40, str(len(GOOD_VALUE) + 1)):
        with pytest.raises(InvalidMessage, match="inference-header-content-length"):
            frame.decode(GOOD_VALUE, {**GOOD, h.INFERENCE_HEADER_LENGTH: length})
    with pytest.raises(InvalidMessage, match="not JSON"):
        frame.decode(b"{nope" + GOOD_VALUE[N:], {**GOOD, h.INFERENCE_HEADER_LENGTH: "5"})
    with pytest.raises(InvalidMessage, match="do not add up"):
        frame.decode(GOOD_VALUE + b"xyz", GOOD)
    with pytest.raises(InvalidMessage, match="unsupported wire-version") as err:
        frame.decode(GOOD_VALUE, {**GOOD, h.WIRE_VERSION: "2"})
    assert err.value.details["got"] == "2"
    assert frame.ids_of(b"{nope", {h.INFERENCE_HEADER_LENGTH: "5"}) == []


_NESTED = b"[" * 100_000


@pytest.mark.parametrize("head", [  # each once escaped as ValueError or RecursionError
    _NESTED,
    json.dumps({"entries": [{"id": "a", "tensors": [  # zero elements, so no byte check; reshape refuses
        {"name": "x", "datatype": "FP32", "shape": [0, 10**30], "offset": 0, "length": 0}]}]}).encode(),
    json.dumps({"entries": [{"id": "a", "tensors": [  # every dimension allowed, their product overflows
        {"name": "x", "datatype": "FP32", "shape": [0, 2**30, 2**30, 2**30], "offset": 0,
         "length": 0}]}]}).encode(),
])
def test_hostile_heads_raise_invalid_message(head: bytes) -> None:
    with pytest.raises(InvalidMessage):
        frame.decode(head, {**GOOD, h.INFERENCE_HEADER_LENGTH: str(len(head))})
    assert frame.ids_of(head, {h.INFERENCE_HEADER_LENGTH: str(len(head))}) in ([], ["a"])


@settings(max_examples=300)
@given(st.data())
def test_any_corruption_raises_only_invalid_message(data: st.DataObject) -> None:
    value = bytearray(GOOD_VALUE)
    hd = dict(GOOD)
    how = data.draw(st.sampled_from(["truncate", "flip", "length", "splice"]))
    if how == "truncate":
        value = value[: data.draw(st.integers(0, len(value) - 1))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            value[data.draw(st.integers(0, len(value) - 1))] = data.draw(st.integers(0, 255))
    elif how == "length":
        hd[h.INFERENCE_HEADER_LENGTH] = str(data.draw(st.integers(-5, len(value) + 5)))
    else:
        value[N // 2 : N // 2] = data.draw(st.binary(min_size=1, max_size=20))
    try:
        frame.decode(bytes(value), hd)
    except InvalidMessage as exc:
        assert exc.reason
    frame.ids_of(bytes(value), hd)  # never raises
