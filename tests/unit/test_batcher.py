"""Batcher and reply encoding without a broker: signature checks, grouping, concat/split, frame replies."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from aiaas.agents.inference import replies
from aiaas.agents.inference.batcher import Work, check_inputs, group, run_group
from aiaas.agents.inference.sessions import Loaded, canary_pick
from aiaas.registry.store import signature
from aiaas.schemas.errors import BadInput
from aiaas.schemas.registry import ModelVersion
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams.record import Record
from aiaas.streams.replywire import replies_of
from tests import examples


@pytest.fixture(scope="module")
def multi() -> Loaded:
    data = examples.multi_io()
    inputs, outputs = signature(data)
    mv = ModelVersion(name="multi", version=1, sha256="0" * 64, size_bytes=len(data), inputs=inputs,
                      outputs=outputs)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return Loaded(mv, session, [o.name for o in session.get_outputs()])


def feeds(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(rows, 4)).astype(np.float32), "ids": rng.integers(0, 9, (rows, 3)),
            "mask": rng.random((rows, 3)) > 0.5}


def work(model: Loaded, inputs: dict[str, np.ndarray], wanted: list[str] | None = None) -> Work:
    rec = Record("t", 0, 0, None, b"", {})
    return Work(rec, "r", None, inputs, model, check_inputs(model.mv.inputs, inputs), wanted)


def test_check_inputs_names_dtypes_shapes(multi: Loaded) -> None:
    sig = multi.mv.inputs
    assert check_inputs(sig, feeds(3, 0)) == 3
    cases = {
        "missing input": {k: v for k, v in feeds(1, 0).items() if k != "ids"},
        "unknown input name": {**feeds(1, 0), "extra": np.zeros(1)},
        "wrong datatype": {**feeds(1, 0), "ids": np.zeros((1, 3), np.int32)},
        "wrong shape": {**feeds(1, 0), "x": np.zeros((1, 5), np.float32)},
    }
    for reason, arrays in cases.items():
        with pytest.raises(BadInput) as info:
            check_inputs(sig, arrays)
        assert info.value.reason == reason and info.value.status_code == 400
    mixed_rows = {**feeds(2, 0), "x": np.zeros((3, 4), np.float32)}
    assert check_inputs(sig, mixed_rows) is None  # valid, but cannot be batched with others


def test_check_inputs_cache_gives_the_same_verdicts(multi: Loaded) -> None:
    cache: dict[tuple[object, ...], object] = {}
    bad = {**feeds(1, 0), "x": np.zeros((1, 5), np.float32)}
    for _ in range(2):
        assert check_inputs(multi.mv.inputs, feeds(2, 1), cache) == 2  # type: ignore[arg-type]
        with pytest.raises(BadInput, match="wrong shape"):
            check_inputs(multi.mv.inputs, bad, cache)  # type: ignore[arg-type]
    assert len(cache) == 2


def test_groups_batch_and_split_back(multi: Loaded) -> None:
    works = [work(multi, feeds(r, i)) for i, r in enumerate([1, 3, 2, 1])]
    works.append(work(multi, feeds(2, 9), wanted=["total"]))
    works.append(work(multi, {**feeds(2, 8), "x": np.zeros((3, 4), np.float32)}))  # cannot batch
    groups = group(works, max_batch=3)
    assert [len(g) for g in groups] == [3, 2, 1]
    calls = multi.calls
    results = [res for g in groups for res in run_group(g)]
    assert multi.calls - calls == 3  # two batched calls and one solo call
    for w, res in zip(works[:5], results[:5], strict=True):
        want = dict(zip(multi.output_names, multi.session.run(None, w.inputs), strict=True))
        assert isinstance(res, dict)
        assert set(res) == set(w.outputs or want)
        for name, arr in res.items():
            np.testing.assert_array_equal(arr, want[name])
    solo = results[5]
    assert isinstance(solo, dict) and solo["y"].shape == (3, 4) and solo["total"].shape == (2, 1)


def test_a_failing_request_does_not_fail_its_batch(multi: Loaded) -> None:
    good = [work(multi, feeds(1, i)) for i in range(2)]
    bad = work(multi, feeds(1, 5))
    bad.inputs = {**bad.inputs, "x": np.zeros((1, 5), np.float32)}  # past the checks: onnxruntime fails
    results = run_group([good[0], bad, good[1]])
    assert isinstance(results[1], BadInput) and "failed" in results[1].reason
    assert isinstance(results[0], dict) and isinstance(results[2], dict)


def test_frame_replies_say_what_single_replies_say() -> None:
    outs = {"y": np.arange(6, dtype=np.float32).reshape(2, 3), "k": np.array([[1], [2]], np.int64)}
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    hdrs = {"traceparent": f"00-{trace}-00f067aa0ba902b7-01", "tenant": "acme"}
    for rid in ("r1", "naïve \"id\""):
        entry = replies.ok_entry("m", 3, [rid], outs, hdrs)
        value, headers = replies.single(replies.ok_entry("m", 3, [rid], outs, hdrs))
        got, want = dict(entry.headers), dict(headers)
        # each reply is its own span in the caller's trace: same trace id, fresh span id
        for tp in (got.pop("traceparent"), want.pop("traceparent")):
            assert tp.split("-")[1] == trace and tp.split("-")[2] != "00f067aa0ba902b7"
        assert got == {"tenant": "acme"} and want["tenant"] == "acme"
        [back] = replies_of(*_framed(entry))
        result = back.result()
        body = json.loads(value)
        assert (result.id, result.model_version) == (body["id"], body["model_version"]) == (rid, "3")
        for name, arr in outs.items():
            np.testing.assert_array_equal(result.outputs[name], arr)


def _framed(entry: frame.Entry) -> tuple[bytes, dict[str, str]]:
    value, headers = frame.encode([entry])
    return value, h.decode(headers)


def test_canary_pick_is_sticky_and_proportional() -> None:
    ids = [f"req-{i}" for i in range(10_000)]
    picked = sum(canary_pick(i, 0.2) for i in ids)
    assert 1800 < picked < 2200
    assert [canary_pick(i, 0.2) for i in ids[:50]] == [canary_pick(i, 0.2) for i in ids[:50]]
    assert not any(canary_pick(i, 0.0) for i in ids) and all(canary_pick(i, 1.0) for i in ids)
