"""Prediction record values of stream scoring (agents/inference/predictions.py), without a broker."""

from __future__ import annotations

import json

import numpy as np

from aiaas.agents.inference.predictions import encode, predictions


def test_logits_give_the_argmax_and_the_row() -> None:
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]], np.float32)
    preds, scores = predictions({"logits": logits}, ["logits"])
    assert preds == [1, 0]
    np.testing.assert_allclose(scores, logits, rtol=1e-7)


def test_a_label_output_wins_with_probabilities_as_scores() -> None:
    outs = {"output": np.zeros((2, 3), np.float32), "label": np.array([7, 2], np.int64),
            "probabilities": np.array([[0.2, 0.3, 0.5], [0.9, 0.05, 0.05]], np.float32)}
    preds, scores = predictions(outs, ["output", "label", "probabilities"])
    assert preds == [7, 2]
    np.testing.assert_allclose(scores, outs["probabilities"], rtol=1e-7)


def test_a_regressor_predicts_its_value() -> None:
    preds, scores = predictions({"output": np.array([[1.5], [-2.0]], np.float32)}, ["output"])
    assert preds == [1.5, -2.0] and scores == [[1.5], [-2.0]]


def test_values_carry_version_and_passthrough_but_passthrough_never_overrides() -> None:
    logits = np.array([[0.0, 1.0], [np.nan, np.inf]], np.float32)
    values = encode({"logits": logits}, ["logits"], 3,
                    [{"id": "a", "prediction": "forged"}, {"id": "b", "nested.path": 4}])
    first, second = (json.loads(v) for v in values)
    assert first == {"id": "a", "prediction": 1, "scores": [0.0, 1.0], "model_version": 3}
    assert second["id"] == "b" and second["nested.path"] == 4
    assert second["scores"] == [None, None]  # NaN and infinity are not JSON: null


def test_passthrough_values_msgspec_cannot_encode_become_plain_values() -> None:
    values = encode({"logits": np.zeros((2, 2), np.float32)}, ["logits"], 1,
                    [{"n": np.int64(7), "x": np.float32(0.5)}, {"when": object}])
    first, second = (json.loads(v) for v in values)
    assert first["n"] == 7 and first["x"] == 0.5 and isinstance(second["when"], str)
