"""Junk at every endpoint of a running bridge (real HTTP, broker, Redis, worker): never a 5xx,
except the intended 504 of an inference that gets no reply in time.

Hypothesis drives a synchronous HTTP client in a thread while the bridge, the worker and a webhook
receiver keep running on the test's event loop. Every route the app serves is fuzzed (taken from
the app itself, so new routes are covered too), with valid and invalid keys, path parameters,
query parameters, headers and bodies (random bytes, random JSON, mutated OIP requests).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Route

from aiaas.cli.demo.receiver import Receiver
from tests.integration import test_bridge
from tests.integration.test_bridge import BODY, MODEL, StackFactory

stack = test_bridge.stack  # the fixture: a model, a worker, a bridge on real HTTP, a key

SAFE = st.text(st.characters(codec="ascii", categories=["L", "N"], include_characters="-_.~"),
               min_size=0, max_size=20)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
JSON_TYPE = "application/json"
OPTIONAL_HEADERS = [
    ("Idempotency-Key", SAFE), ("Prefer", st.just("respond-async")),
    ("Inference-Header-Content-Length", st.sampled_from(["0", "5", "-3", "x", "99999"])),
    ("Content-Type", st.sampled_from([JSON_TYPE, "application/octet-stream"])),
]
DATATYPES = st.sampled_from(["FP32", "FP64", "INT64", "INT8", "UINT8", "BOOL", "BYTES", "FP16", "NOPE"])


@st.composite
def tensor(draw: st.DrawFn) -> dict[str, Any]:
    shape = draw(st.lists(st.integers(-1, 5), min_size=0, max_size=3))
    t: dict[str, Any] = {"name": draw(st.sampled_from(["input", "x", ""])), "shape": shape,
                         "datatype": draw(DATATYPES)}
    if draw(st.booleans()):
        t["data"] = draw(st.lists(st.one_of(st.floats(allow_nan=False, width=32), st.integers(-500, 500),
                                            st.booleans(), st.text(max_size=3)), max_size=12))
    else:
        t["parameters"] = {"binary_data_size": draw(st.integers(-2, 64))}
    return t


@st.composite
def infer_body(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"inputs": draw(st.lists(tensor(), min_size=0, max_size=2))}
    if draw(st.booleans()):
        body = json.loads(json.dumps(BODY))
    if draw(st.booleans()):
        body["parameters"] = draw(st.dictionaries(st.sampled_from(
            ["binary_data_output", "timeout", "callback_url", "x"]), JSON, max_size=3))
    if draw(st.booleans()):
        body["outputs"] = draw(st.lists(st.fixed_dictionaries({"name": st.text(max_size=6)}), max_size=2))
    return body


def bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        JSON.map(lambda v: json.dumps(v).encode()),
        infer_body().map(lambda v: json.dumps(v).encode()),
        st.just(json.dumps(BODY).encode()),
        st.fixed_dictionaries({"job_id": SAFE, "model": st.just({"input_dim": 4, "output_dim": 3}),
                               "steps": st.integers(-1, 3)}).map(lambda v: json.dumps(v).encode()),
    )


def routes(app: Any) -> list[tuple[str, str]]:
    """Every operation of the served OpenAPI document, plus the app's undocumented plain routes."""
    out = [(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops]
    for r in app.routes:
        if isinstance(r, Route):
            out += [(m, r.path) for m in sorted(r.methods or ()) if m != "HEAD"]
    return sorted(set(out))


# The event loop thread (aiokafka, redis) uses the global random while Hypothesis draws in the
# fuzzing thread; Hypothesis then warns about "random inside strategies", which is not the case.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
async def test_fuzz_every_endpoint_no_5xx_but_the_intended_504(stack: StackFactory) -> None:
    async with stack(max_body_bytes=64 * 1024) as s, Receiver() as rx:
        app_routes = [*routes(s.app), ("GET", "/nowhere"), ("DELETE", "/v2/models/{model}")]
        app_routes += [r for r in app_routes if r[1].endswith("/infer")] * 4  # the richest endpoint
        seen: list[int] = []
        callbacks = st.one_of(st.none(), st.just(rx.url), SAFE, st.sampled_from(
            ["http://10.0.0.1/", "http://169.254.169.254/", "ftp://1.2.3.4/", "http://[::1]/", "http://"]))
        timeouts = st.one_of(st.none(), st.sampled_from(["0.05", "-1", "abc", "1e9", "nan", "2"]))
        keys = st.sampled_from([s.key, s.key, "", "nope", "aiaas_x_y", s.key + "x"])

        @settings(max_examples=300, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(route=st.sampled_from(app_routes), data=st.data())
        def fuzz(route: tuple[str, str], data: st.DataObject) -> None:
            method, template = route
            path = re.sub(r"\{(\w+)\}", lambda m: data.draw(st.one_of(
                st.just({"model": MODEL, "version": "1"}.get(m.group(1), "x")), SAFE.filter(bool))), template)
            headers = {"X-API-Key": data.draw(keys)}
            for name, value in OPTIONAL_HEADERS:
                if data.draw(st.booleans()):
                    headers[name] = data.draw(value)
            params = {k: v for k, v in (("callback", data.draw(callbacks)), ("timeout", data.draw(timeouts)))
                      if v is not None}
            body = data.draw(bodies()) if method in ("POST", "PUT", "PATCH") else b""
            if path.endswith("/infer") and data.draw(st.booleans()):  # a valid call, junk only around it
                headers["X-API-Key"], body = s.key, json.dumps(BODY).encode()
                path = f"/v2/models/{MODEL}/infer"
                headers.pop("Inference-Header-Content-Length", None)
            resp = http.request(method, path, headers=headers, params=params, content=body)
            seen.append(resp.status_code)
            intended = resp.status_code == 504 and path.endswith("/infer")
            assert resp.status_code < 500 or intended, (method, path, params, headers, body[:200], resp.text)
            if resp.status_code >= 400 and resp.headers.get("content-type", "").startswith(JSON_TYPE):
                assert "error" in resp.json(), resp.text

        with httpx.Client(base_url=s.url, timeout=30, trust_env=False) as http:
            await asyncio.to_thread(fuzz)
        # the junk reached deep: successes, async accepts, validation, auth and lookup failures
        assert {200, 202, 400, 401, 404} <= set(seen), sorted(set(seen))
