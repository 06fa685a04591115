"""Bridge parts that need no broker: SSRF policy, backoff, OIP parsing, auth config, error bodies."""

from __future__ import annotations

import ipaddress
import json

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st

from aiaas.agents.bridge import errors
from aiaas.agents.bridge.auth import check_bind, presented_key
from aiaas.agents.bridge.callbacks import CallbackPolicy
from aiaas.agents.bridge.dispatcher import backoff, webhook_body
from aiaas.agents.bridge.keys import Principal, Tenant
from aiaas.agents.bridge.oip import ParsedRequest, encode_response, json_result, parse_request, reply_to_http
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.agents.bridge.state import RequestState
from aiaas.schemas.errors import AiaasError, CallbackRefused, InsecureConfig, InvalidMessage, RateLimited
from aiaas.streams.replywire import InferResult, Reply

X = np.arange(8, dtype=np.float32).reshape(2, 4)
JSON_BODY = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}


# --------------------------------------------------------------------------- SSRF policy


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/", "http://172.16.5.4/", "http://192.168.0.1/", "http://127.0.0.1:8080/",
    "http://169.254.169.254/latest", "http://[::1]/", "http://[fe80::1]/", "http://0.0.0.0/",
    "http://100.64.0.1/", "http://224.0.0.1/", "http://[::ffff:127.0.0.1]/", "http://[fc00::1]/",
    "http://localhost:9/",
])
async def test_private_loopback_link_local_are_refused(url: str) -> None:
    with pytest.raises(CallbackRefused):
        await CallbackPolicy([]).check(url)


@pytest.mark.parametrize("url", [
    "ftp://8.8.8.8/", "file:///etc/passwd", "gopher://8.8.8.8/", "http:///nohost", "http://u:p@8.8.8.8/",
    "http://8.8.8.8:99999/", "x" * 3000, "", "javascript:alert(1)",
])
async def test_bad_schemes_and_shapes_are_refused(url: str) -> None:
    with pytest.raises(CallbackRefused):
        await CallbackPolicy([]).check(url)


async def test_public_addresses_pass_and_allowlist_opens_private_ones() -> None:
    assert await CallbackPolicy([]).check("https://8.8.8.8/hook") == "https://8.8.8.8/hook"
    policy = CallbackPolicy(["127.0.0.1/32", "10.0.0.0/8", "internal.example"])
    assert await policy.check("http://127.0.0.1:5000/x")
    assert await policy.check("http://10.9.8.7/x")
    assert await policy.check("http://internal.example/x")
    with pytest.raises(CallbackRefused):
        await policy.check("http://127.0.0.2/x")  # outside the allowlisted /32
    assert policy.allowed_address(ipaddress.ip_address("::ffff:10.1.1.1"))  # mapped v4 follows v4 rules


# --------------------------------------------------------------------------- webhooks


@given(st.integers(min_value=1, max_value=30))
def test_backoff_grows_exponentially_with_jitter_and_is_capped(attempt: int) -> None:
    full = min(60.0, 0.5 * 2 ** (attempt - 1))
    delay = backoff(attempt, 0.5, 60.0)
    assert full / 2 <= delay <= full


def test_backoff_has_jitter() -> None:
    assert len({backoff(4, 1.0, 60.0) for _ in range(20)}) > 1


def test_webhook_body_carries_id_status_and_response() -> None:
    state = RequestState(id="r1", tenant="t", model="m", version="2", created=0, deadline=1,
                         status="succeeded")
    body = json.loads(webhook_body(state, b'{"model_name":"m","outputs":[]}'))
    assert body == {"id": "r1", "status": "succeeded", "model_name": "m", "model_version": "2",
                    "response": {"model_name": "m", "outputs": []}}


def test_orphaned_pending_request_reads_as_failed() -> None:
    state = RequestState(id="r", tenant="t", model="m", created=0, deadline=10)
    assert state.orphaned(now=100) and state.public()["status"] == "failed"
    assert not state.orphaned(now=11)


# --------------------------------------------------------------------------- OIP parsing


def test_json_request_parses_and_strips_bridge_parameters() -> None:
    body = {**JSON_BODY, "parameters": {"callback_url": "http://8.8.8.8/", "timeout": 2, "keep": 1}}
    parsed = parse_request(json.dumps(body).encode(), None)
    assert parsed.callback == "http://8.8.8.8/" and parsed.timeout_s == 2.0
    assert parsed.parameters == {"keep": 1} and not parsed.binary_in and parsed.outputs is None
    np.testing.assert_array_equal(parsed.inputs["input"], X)
    assert parsed.inputs["input"].dtype == np.float32


def test_nested_data_texts_and_outputs_parse_to_arrays() -> None:
    body = {"id": "mine", "inputs": [
        {"name": "a", "shape": [2, 2], "datatype": "INT64", "data": [[1, 2], [3, 4]]},
        {"name": "t", "shape": [2, 1], "datatype": "BYTES", "data": [["x"], ["yz"]]}],
        "outputs": [{"name": "label"}, {"name": "p", "parameters": {"binary_data": True}}]}
    parsed = parse_request(json.dumps(body).encode(), None)
    np.testing.assert_array_equal(parsed.inputs["a"], [[1, 2], [3, 4]])
    assert parsed.inputs["t"].tolist() == [[b"x"], [b"yz"]] and parsed.request_id == "mine"
    assert parsed.outputs == ["label", "p"] and parsed.binary_outputs == {"p"}
    bad = {"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [{"no": 1}]}]}
    with pytest.raises(InvalidMessage):
        parse_request(json.dumps(bad).encode(), None)


def test_binary_request_parses_and_sizes_must_match() -> None:
    head = json.dumps({"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 32}}]}).encode()
    parsed = parse_request(head + X.tobytes(), str(len(head)))
    assert parsed.binary_in
    np.testing.assert_array_equal(parsed.inputs["input"], X)
    with pytest.raises(InvalidMessage):
        parse_request(head + X.tobytes()[:-4], str(len(head)))
    with pytest.raises(InvalidMessage):
        parse_request(head + X.tobytes(), "not-a-number")


@pytest.mark.parametrize("body", [
    b"", b"null", b"[]", b'{"inputs": []}', b'{"inputs": [{"name": "x"}]}',
    b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1]}]}',
    b'{"inputs": [{"name": "x", "shape": [1], "datatype": "INT9", "data": [3]}]}',
    b'{"inputs": [{"name": "x", "shape": [-1], "datatype": "INT8", "data": []}]}',
    b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], "extra": 1}',
    b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}',
    b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]},'
    b' {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}',
    b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], '
    b'"parameters": {"timeout": -1}}',
])
def test_invalid_bodies_are_400_class_errors(body: bytes) -> None:
    with pytest.raises(AiaasError) as info:
        parse_request(body, None)
    assert info.value.status_code == 400


@given(st.binary(max_size=300), st.one_of(st.none(), st.text(max_size=8)))
def test_parse_request_never_raises_anything_else(body: bytes, header_length: str | None) -> None:
    try:
        parse_request(body, header_length)
    except AiaasError as exc:
        assert exc.status_code == 400


def test_mixed_binary_and_json_outputs_encode() -> None:
    parsed = ParsedRequest({}, {}, None, False, binary_outputs={"a"})
    out = encode_response({"model_name": "m"}, {"a": X, "b": np.array([7], dtype=np.int64)}, parsed)
    n = int(out.headers["Inference-Header-Content-Length"])
    head = json.loads(out.content[:n])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 32 and head["outputs"][1]["data"] == [7]
    np.testing.assert_array_equal(np.frombuffer(out.content[n:], "<f4").reshape(2, 4), X)


def test_a_binary_reply_holding_nan_is_stored_as_its_error_not_raised() -> None:
    """What Redis keeps is JSON, which has no NaN: the stored outcome is a 400 naming the tensor."""
    arr = np.array([[1.0, np.nan]], dtype=np.float32)
    reply = Reply("r1", b"", {"status-code": "200"}, InferResult("r1", "m", "1", {"output": arr}))
    status, body = json_result(reply)
    assert status == 400 and "NaN" in json.loads(body)["error"]


def test_a_reply_entry_is_answered_in_the_encoding_asked_for() -> None:
    """The caller's body id is echoed; JSON by default, all binary, or binary per output."""
    outs: dict[str, np.ndarray] = {"a": X, "b": np.array([7], dtype=np.int64)}
    reply = Reply("r1", b"", {"status-code": "200"}, InferResult("r1", "m", "2", outs))
    plain = reply_to_http(reply, ParsedRequest({}, {}, None, False, request_id="mine"))
    body = json.loads(plain.content)
    assert plain.media_type == "application/json" and body["id"] == "mine" and body["model_version"] == "2"
    assert body["outputs"][0]["data"] == X.ravel().tolist() and body["outputs"][1]["data"] == [7]
    for parsed in (ParsedRequest({}, {}, None, False, binary_all=True),
                   ParsedRequest({}, {}, None, False, binary_outputs={"a"})):
        out = reply_to_http(reply, parsed)
        n = int(out.headers["Inference-Header-Content-Length"])
        np.testing.assert_array_equal(np.frombuffer(out.content[n:n + 32], "<f4").reshape(2, 4), X)
        assert json.loads(out.content[:n])["id"] == "r1"


# --------------------------------------------------------------------------- auth, settings, errors


def test_auth_off_is_refused_on_public_bind_unless_explicit() -> None:
    check_bind(BridgeSettings(auth=False, host="127.0.0.1"))
    check_bind(BridgeSettings(auth=True, host="0.0.0.0"))
    with pytest.raises(InsecureConfig):
        check_bind(BridgeSettings(auth=False, host="0.0.0.0"))
    check_bind(BridgeSettings(auth=False, host="0.0.0.0", insecure_public=True))


def test_presented_key_sources() -> None:
    assert presented_key("Bearer abc", None) == "abc"
    assert presented_key("bearer  abc ", None) == "abc"
    assert presented_key("Basic abc", None) is None
    assert presented_key(None, "k") == "k"
    assert presented_key(None, None) is None


def test_scopes_are_enforced() -> None:
    who = Principal(tenant=Tenant(name="t", secret="s"), key_id="k", scopes=["infer"])
    who.require("infer")
    with pytest.raises(AiaasError) as info:
        who.require("jobs")
    assert info.value.status_code == 403


async def test_error_bodies_are_oip_shaped_with_codes() -> None:
    app = FastAPI()
    errors.install(app)

    @app.get("/limited")
    async def limited() -> None:
        raise RateLimited("slow down", retry_after_s=2.2)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        r = await http.get("/limited")
        assert r.status_code == 429 and r.headers["retry-after"] == "3" and r.json()["error"] == "slow down"
        r = await http.get("/nowhere")
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        r = await http.get("/boom")
        assert r.status_code == 500 and r.json() == {"error": "internal error", "code": "internal",
                                                     "type": "RuntimeError"}
