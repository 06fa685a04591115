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
