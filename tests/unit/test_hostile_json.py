"""Hostile bytes where a record's JSON or length header is read: JSON nested deeper than the parser's
recursion and length headers of thousands of digits are bad input like any other (InvalidMessage),
never a RecursionError or ValueError that would stop a loop."""

from __future__ import annotations

import pytest

from aiaas.schemas.envelope import json_loads
from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.inference import InferenceRequest
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams import tensorcodec as tc

NESTED = b"[" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000


@pytest.mark.parametrize("value", [NESTED, DEEP_OBJECT])
def test_json_loads_turns_deep_nesting_into_value_error(value: bytes) -> None:
    with pytest.raises(ValueError, match="nested too deep"):
        json_loads(value)


@pytest.mark.parametrize("value", [NESTED, DEEP_OBJECT])
def test_decoders_answer_deep_nesting_with_invalid_message(value: bytes) -> None:
    with pytest.raises(InvalidMessage, match="not JSON"):
        tc.decode(value, InferenceRequest, "inputs")
    with pytest.raises(InvalidMessage, match="not JSON"):
        InferenceRequest.from_record(value)
    length = {frame.LENGTH: str(len(value))}
    with pytest.raises(InvalidMessage, match="head is not JSON"):
        frame.decode(value, {"content-type": frame.CONTENT_TYPE, **length})
    assert frame.ids_of(value, length) == []
    assert tc.peek_kind(value) is None


def test_binary_oip_bodies_answer_deep_nesting_with_invalid_message() -> None:
    from aiaas.agents.bridge.oip import parse_request

    with pytest.raises(InvalidMessage):
        parse_request(NESTED, str(len(NESTED)))


@pytest.mark.parametrize(("raw", "want"), [
    ("12", 12), ("0", 0), ("9" * 18, int("9" * 18)), (None, None), ("", None), ("9" * 19, None),
    ("9" * 5000, None), ("\u00b2", None), ("-1", None), (" 1", None), ("1.0", None),
])
def test_count_headers(raw: str | None, want: int | None) -> None:
    assert h.count(raw) == want


def test_length_headers_of_thousands_of_digits_are_invalid() -> None:
    value = b'{"entries":[{"id":"a","tensors":[]}]}'
    with pytest.raises(InvalidMessage, match="valid inference-header-content-length"):
        frame.decode(value, {"content-type": frame.CONTENT_TYPE, frame.LENGTH: "9" * 5000})
    with pytest.raises(InvalidMessage, match="valid inference-header-content-length"):
        tc.split_value(value, "9" * 5000)


def test_the_bridge_answers_deep_nesting_with_invalid_message() -> None:
    from aiaas.agents.bridge.oip import parse_request

    with pytest.raises(InvalidMessage, match="not valid JSON"):  # a 400, not a 500 from RecursionError
        parse_request(NESTED, None)


def test_a_member_advertising_deep_nesting_weighs_one() -> None:
    from aiaas.streams.assignors import decode_weight

    assert decode_weight(DEEP_OBJECT) == 1.0
