"""Codec round trips and junk input: tensor records, JSON envelopes, headers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.training import DataBatch, GradientMessage
from aiaas.streams import codecs
from aiaas.streams import headers as h

DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.int32, np.uint8, np.bool_])


@given(arrays=st.dictionaries(
    st.text("abcdefgh.", min_size=1, max_size=8),
    hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, max_side=6)),
    min_size=1, max_size=4,
))
@settings(max_examples=60, deadline=None)
def test_pack_unpack_round_trip(arrays: dict[str, np.ndarray]) -> None:
    header = GradientMessage(job_id="j", worker_id="w", step=1, base_version=0, samples=3)
    got_header, got = codecs.unpack(codecs.pack(header, arrays), GradientMessage)
    assert got_header == header
    assert set(got) == set(arrays)
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape
        np.testing.assert_array_equal(got[k], v)


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_junk_bytes_never_escape_as_bare_errors(junk: bytes) -> None:
    with pytest.raises(InvalidMessage):
        codecs.unpack(junk, DataBatch)


def test_truncated_tensor_record_is_invalid() -> None:
    value = codecs.pack(DataBatch(job_id="j", batch_index=0, rows=2), {"x": np.ones((2, 3), np.float32)})
    for cut in (5, 12, len(value) - 7):
        with pytest.raises(InvalidMessage):
            codecs.unpack(value[:cut], DataBatch)


def test_header_for_other_kind_is_rejected() -> None:
    value = codecs.pack(DataBatch(job_id="j", batch_index=0, rows=1), {"x": np.zeros(1, np.float32)})
    with pytest.raises(InvalidMessage, match="kind does not match"):
        codecs.unpack(value, GradientMessage)


def test_headers_helpers() -> None:
    encoded = h.encode({h.TENANT: "acme", h.DEADLINE: 123, "skip": None})
    assert encoded == [("tenant", b"acme"), ("deadline", b"123")]
    values = h.decode([*encoded, ("bad", b"\xff")])
    assert values["tenant"] == "acme" and values["bad"] == "\ufffd"
    assert h.expired({h.DEADLINE: "1000"}, now_ms=2000)
    assert not h.expired({h.DEADLINE: "3000"}, now_ms=2000)
    assert not h.expired({h.DEADLINE: "soon"}, now_ms=2000)
    assert not h.expired({}, now_ms=2000)


def test_unpack_gives_aligned_views_safetensors_can_read() -> None:
    """One copy each way: the record's tensors are views of it, each aligned to its dtype, and the
    body is plain safetensors (the library reads it too)."""
    from safetensors.numpy import load

    arrays = {"b": np.ones(3, np.float16), "a": np.arange(6, dtype=np.float64).reshape(2, 3),
              "i": np.arange(5, dtype=np.int32), "s": np.array(2.5, np.float32)}
    value = codecs.pack(GradientMessage(job_id="j", worker_id="w", step=1, base_version=0, samples=1), arrays)
    _, got = codecs.unpack(value, GradientMessage)
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype and np.array_equal(got[k], v)
        assert got[k].base is not None and got[k].flags.aligned and not got[k].flags.writeable
    body = codecs.split_header(value, GradientMessage)[1]
    assert {k: v.tolist() for k, v in load(bytes(body)).items()} == {k: v.tolist() for k, v in arrays.items()}


def test_pack_pieces_are_the_record_with_views_of_the_arrays() -> None:
    """A sender's record as pieces: the same bytes as ``pack``, the arrays' own memory (no copy)."""
    big = np.arange(1000, dtype=np.float32)
    arrays = {"big": big, "h": np.ones(3, np.float16)}
    head = GradientMessage(job_id="j", worker_id="w", step=1, base_version=0, samples=1)
    pieces = codecs.pack_pieces(head, arrays)
    assert pieces.join() == codecs.pack(head, arrays) and len(pieces) == len(pieces.join())
    assert any(np.shares_memory(np.frombuffer(p, np.uint8), big) for p in pieces.parts)


@pytest.mark.parametrize("meta", [
    b'{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}',   # size does not fit the shape
    b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',   # a gap before the tensor
    b'{"x":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}}',    # unknown dtype
    b'{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}',  # negative dimension
    b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"F32","shape":[1],'
    b'"data_offsets":[0,4]}}',                                   # overlapping tensors
    b'[1]',                                                      # not an object
])
def test_view_tensors_rejects_bad_headers(meta: bytes) -> None:
    body = len(meta).to_bytes(8, "little") + meta + bytes(8)
    with pytest.raises(InvalidMessage, match="not valid safetensors"):
        codecs.view_tensors(memoryview(body))
