"""Webhook signatures: sign/verify round trip, tampering, replay window, malformed headers."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiaas.client.webhooks import compute_signature, parse_header, sign, verify_signature
from aiaas.schemas.errors import SignatureError

SECRET = "s3cr3t"
BODY = b'{"id":"r1","status":"succeeded"}'


def test_round_trip_returns_timestamp() -> None:
    header = sign(SECRET, BODY, timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify_signature(SECRET, header, BODY, 300, now=1_700_000_010) == 1_700_000_000


def test_signature_is_hmac_over_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"42." + BODY, hashlib.sha256).hexdigest()
    assert compute_signature(SECRET, 42, BODY) == expected
    assert sign(SECRET, BODY, timestamp=42) == f"t=42,v1={expected}"


@pytest.mark.parametrize(
    ("secret", "body"), [("other", BODY), (SECRET, BODY + b" "), (SECRET, b"")]
)
def test_wrong_secret_or_tampered_body_is_refused(secret: str, body: bytes) -> None:
    header = sign(SECRET, BODY, timestamp=1000)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(secret, header, body, 300, now=1000)


def test_replay_outside_window_is_refused_even_with_valid_mac() -> None:
    header = sign(SECRET, BODY, timestamp=1000)
    with pytest.raises(SignatureError, match="tolerance"):
        verify_signature(SECRET, header, BODY, 300, now=1301)
    with pytest.raises(SignatureError, match="tolerance"):
        verify_signature(SECRET, header, BODY, 300, now=699)  # from the future, too
    assert verify_signature(SECRET, header, BODY, 300, now=1300) == 1000


def test_rotated_secrets_any_v1_matches() -> None:
    good = compute_signature(SECRET, 5, BODY)
    header = f"t=5,v1={'0' * 64},v1={good}"
    assert verify_signature(SECRET, header, BODY, 10, now=5) == 5


@pytest.mark.parametrize(
    "header", [None, "", "v1=abc", "t=12", "t=abc,v1=00", "garbage", "t=,v1="]
)
def test_malformed_headers_raise_signature_error(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify_signature(SECRET, header, BODY, 300, now=12)


def test_signature_error_is_an_unauthorized_aiaas_error() -> None:
    with pytest.raises(SignatureError) as info:
        verify_signature(SECRET, None, BODY)
    assert info.value.status_code == 401


@given(st.text(max_size=200))
def test_parse_header_never_raises_anything_but_signature_error(header: str) -> None:
    with contextlib.suppress(SignatureError):
        parse_header(header)


@given(st.binary(max_size=512), st.integers(min_value=0, max_value=2**40))
def test_any_body_round_trips(body: bytes, ts: int) -> None:
    assert verify_signature(b"k", sign(b"k", body, timestamp=ts), body, 0, now=ts) == ts
