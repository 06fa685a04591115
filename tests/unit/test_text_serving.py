"""Text serving in the worker without a broker (``aiaas.agents.inference.text``): the worker's tokenizer
against transformers' on 100 texts, sub-batches by length, the request checks, and the order of the
outputs when texts of mixed lengths share onnxruntime calls."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import numpy as np
import pytest

from aiaas.agents.inference.text import IDS, MASK, TEXT, TextModel, TextSettings, checked, plan
from aiaas.data.pretrained import pretrained_dir, text_tokenizer, tokenizer_json
from aiaas.data.textdata import debian_split
from aiaas.schemas.errors import BadInput, InvalidMessage
from aiaas.schemas.inference import InferenceRequest
from aiaas.schemas.jobs import JobSpec
from aiaas.streams.tensorcodec import to_numpy

NAME = "all-MiniLM-L6-v2"
TRICKY = ["a", "Ünïcödé àccents and CAPITALS", "日本語のテキスト", "emoji 🚀 rocket", "tab\tand\nnewline",
          "don't split-words (parentheses) [brackets] {braces}", "x" * 300, "numbers 3.14159 and 1,000,000",
          "word " * 200, "  leading and trailing spaces  "]


def _model(max_length: int = 64, **cfg: Any) -> TextModel:
    return TextModel(text_tokenizer(tokenizer_json(NAME), max_length), max_length, [IDS, MASK], True,
                     cfg=TextSettings.model_validate(cfg))


@cache
def _texts() -> list[str]:
    spec = JobSpec.model_validate({
        "job_id": "t", "steps": 1,
        "model": {"kind": "transformer-classifier", "output_dim": 4, "max_seq_len": 32},
        "data": {"source": "debian", "text": {"max_length": 32, "per_class": 30,
                                              "sections": ["games", "graphics", "science", "sound"]}}})
    split = debian_split(spec.data)
    return (split.train_texts + split.test_texts)[:90] + TRICKY


def test_worker_tokenizer_matches_transformers_on_100_texts_and_flags_truncation() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoTokenizer

    texts = _texts()
    assert len(texts) == 100
    ref = AutoTokenizer.from_pretrained(str(pretrained_dir(NAME)), local_files_only=True)
    want = ref(texts, truncation=True, max_length=64)["input_ids"]
    full = ref(texts)["input_ids"]
    ids, truncated = _model(64).tokenize(texts)
    assert ids == want
    assert truncated.tolist() == [len(f) > 64 for f in full] and truncated.sum() >= 1


def test_plan_sorts_by_length_and_keeps_one_long_text_from_padding_short_ones() -> None:
    cfg = TextSettings()
    lengths = np.array([12] * 31 + [128])
    parts = plan(lengths, cfg)
    assert [len(p) for p in parts] == [31, 1] and parts[1].tolist() == [31]
    rng = np.random.default_rng(0)
    lengths = rng.integers(8, 129, 128)
    parts = plan(lengths, cfg)
    assert sorted(np.concatenate(parts).tolist()) == list(range(128))
    assert all(len(p) <= cfg.batch and len(p) * lengths[p].max() <= cfg.max_tokens for p in parts)
    padded = sum(len(p) * int(lengths[p].max()) for p in parts)
    assert 1 - lengths.sum() / padded <= 0.25  # arrival order in batches of 32 pads ~45%
    assert [len(p) for p in plan(np.array([5, 5]), TextSettings(batch=1))] == [1, 1]


def test_request_checks_name_what_is_wrong() -> None:
    arrays = {TEXT: np.array([b"caf\xc3\xa9", "plain"], dtype=object)}
    assert checked(arrays) == 2 and arrays[TEXT].tolist() == ["café", "plain"]
    bad = [({TEXT: np.array([b"ok", b"\xff\xfe"], dtype=object)}, "not valid UTF-8"),
           ({TEXT: np.array([""], dtype=object)}, "text is empty"),
           ({TEXT: np.array([" \n"], dtype=object)}, "text is empty"),
           ({TEXT: np.array([3], dtype=object)}, "text must be a string"),
           ({TEXT: np.zeros(2, np.float32)}, "wrong datatype"),
           ({TEXT: np.array([["a", "b"]], dtype=object)}, "wrong shape"),
           ({TEXT: np.array(["a"], dtype=object), "other": np.zeros(1)}, "one BYTES input named 'text'")]
    for arrays, reason in bad:
        with pytest.raises(BadInput, match=reason) as err:
            checked(arrays)
        assert err.value.status_code == 400
    with pytest.raises(BadInput) as err:
        checked({TEXT: np.array([b"ok", b"\xff\xfe"], dtype=object)})
    assert err.value.details["index"] == 1 and err.value.details["position"] == 0
    body = b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["half \\ud800"]}]}'
    with pytest.raises(InvalidMessage, match="lone surrogate"):  # a worker's plain OIP JSON record
        to_numpy(InferenceRequest.from_record(body).inputs[0])


def _fake_run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A stand-in graph whose answer for a row depends only on that row's unpadded tokens."""
    ids, mask = feeds[IDS], feeds[MASK]
    total = (ids * mask).sum(axis=1, dtype=np.float64)
    scores = np.stack([total, mask.sum(axis=1)], axis=1).astype(np.float32)
    return {"scores": scores, "label": np.where(total % 2 == 0, "even", "odd").astype(object)}


def test_mixed_lengths_in_one_call_answer_each_request_in_order_with_its_truncation() -> None:
    tm = _model(32, batch=4)
    texts = [*_texts()[:20], "word " * 100]
    requests = [np.array(texts[i:i + 3], dtype=object) for i in range(0, 21, 3)]
    together = tm.run(_fake_run, requests)
    for r, (outs, params) in zip(requests, together, strict=True):
        alone = [tm.run(_fake_run, [np.array([t], dtype=object)])[0][0] for t in r.tolist()]
        assert np.array_equal(outs["scores"], np.concatenate([a["scores"] for a in alone]))
        assert outs["label"].tolist() == [a["label"][0] for a in alone]
        assert params["truncated"] is (r[-1] == "word " * 100)
    assert together[-1][1] == {"truncated": True, "truncated_count": 1, "max_length": 32,
                               "truncated_rows": "2"}
    assert tm.pads / tm.tokens < 0.5


def test_a_graph_without_label_gets_it_from_labels_json() -> None:
    tm = TextModel(text_tokenizer(tokenizer_json(NAME), 16), 16, [IDS, MASK], False, ["even", "odd"])

    def scores_only(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        odd = (_fake_run(feeds)["label"] == "odd").astype(np.float32)
        return {"scores": np.stack([1 - odd, odd], axis=1)}

    texts = np.array(["a chess engine", "an FM synthesizer", "x"], dtype=object)
    outs, params = tm.run(scores_only, [texts])[0]
    want = _model(16).run(_fake_run, [texts])[0][0]["label"]  # the graph's own label
    assert outs["label"].tolist() == want.tolist() and params == {"truncated": False}


def _tiny_text_graph() -> bytes:
    """input_ids, attention_mask -> scores [batch, 2] (sum of the ids, count of tokens), with the
    metadata a job's export writes (aiaas.ml.textexport) but no label output."""
    from onnx import TensorProto, helper

    ids = helper.make_tensor_value_info(IDS, TensorProto.INT64, ["batch", "sequence"])
    mask = helper.make_tensor_value_info(MASK, TensorProto.INT64, ["batch", "sequence"])
    out = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 2])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [helper.make_node("Mul", [IDS, MASK], ["kept"]),
             helper.make_node("ReduceSum", ["kept", "axes"], ["total"], keepdims=1),
             helper.make_node("ReduceSum", [MASK, "axes"], ["count"], keepdims=1),
             helper.make_node("Concat", ["total", "count"], ["both"], axis=1),
             helper.make_node("Cast", ["both"], ["scores"], to=TensorProto.FLOAT)]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [ids, mask], [out], [axes]),
                              opset_imports=[helper.make_opsetid("", 18)])
    helper.set_model_props(model, {"aiaas.task": "text-classification", "aiaas.max_length": "8",
                                   "aiaas.labels": '["sum", "count"]', "aiaas.outputs": '["scores"]',
                                   "aiaas.tokenizer": tokenizer_json(NAME)})
    return bytes(model.SerializeToString())


async def test_a_job_export_without_bundle_files_loads_its_tokenizer_from_the_graph() -> None:
    import onnxruntime as ort

    from aiaas.agents.inference.text import load_text
    from aiaas.registry.artifacts import signature
    from aiaas.schemas.registry import ModelVersion

    graph = _tiny_text_graph()
    inputs, outputs = signature(graph)
    mv = ModelVersion(name="m", version=1, sha256="0" * 64, size_bytes=len(graph), inputs=inputs,
                      outputs=outputs)
    sess = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    tm = await load_text(None, mv, sess)  # type: ignore[arg-type]  # no bundle files: no registry read
    assert tm is not None and tm.max_length == 8 and not tm.has_label and tm.labels == ["sum", "count"]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"scores": sess.run(["scores"], feeds)[0]}

    texts = np.array(["a chess engine for the terminal and more words", "x"], dtype=object)
    outs, params = tm.run(run, [texts])[0]
    assert outs["scores"][:, 1].tolist() == [8, 3] and outs["label"].tolist() == ["sum", "sum"]
    assert params == {"truncated": True, "truncated_count": 1, "max_length": 8, "truncated_rows": "0"}
