"""Served answers are right on raw features, for every data source (real broker, in-process job).

Training sees standardised features (and, for regression, standardised targets); the exported
model must fold that in. Each source (digits, diabetes, a CSV, an .npz) is pushed, trained
briefly, its registered ONNX loaded from the registry and run with onnxruntime on the RAW held-out
rows a caller holds: the served accuracy (classifiers: the ``label`` output against the source's
class values) or R² (regression, against raw targets) equals the run's own test figure within one
point.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_wine

from aiaas.agents.launcher import run_in_process
from aiaas.data.datasets import raw_split
from aiaas.ml.export import metadata, session
from aiaas.registry.store import Registry
from aiaas.schemas.jobs import JobSpec
from aiaas.streams.settings import Settings

pytestmark = pytest.mark.timeout(180)


def _breast_cancer_csv(path: Path) -> None:
    """Features over four orders of magnitude (areas ~1000, smoothness ~0.1), classes 3 and 7."""
    x, y = load_breast_cancer(return_X_y=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"f{i}" for i in range(x.shape[1])] + ["diagnosis"])
        w.writerows([*row, 3 + 4 * int(t)] for row, t in zip(x, y, strict=True))


def _spec(source: str, tmp_path: Path) -> JobSpec:
    base: dict[str, Any] = {
        "job_id": f"served-{source}", "trainers": 1, "batch_size": 32, "steps": 60, "eval_interval": 30,
        "optimizer": {"name": "adam", "lr": 3e-3}, "sync": {"mode": "sync"},
        "data": {"source": source, "partitions": 1},
    }
    if source == "digits":
        return JobSpec.model_validate(base | {"model": {"input_dim": 64, "hidden": [32], "output_dim": 10}})
    if source == "diabetes":
        return JobSpec.model_validate(base | {"loss": "mse",
                                              "model": {"input_dim": 10, "hidden": [16], "output_dim": 1}})
    if source == "npy":  # wine: proline ~1000 beside hue ~1; classes 10, 20, 30
        x, y = load_wine(return_X_y=True)
        np.savez(tmp_path / "wine.npz", x=x, y=10 * (y + 1))
        return JobSpec.model_validate(base | {
            "model": {"input_dim": 13, "hidden": [16], "output_dim": 3},
            "data": {"source": "npy", "path": str(tmp_path / "wine.npz"), "partitions": 1}})
    path = tmp_path / "cancer.csv"
    _breast_cancer_csv(path)
    return JobSpec.model_validate(base | {
        "model": {"input_dim": 30, "hidden": [16], "output_dim": 2},
        "data": {"source": "csv", "path": str(path), "target_column": "diagnosis", "partitions": 1}})


async def _served(settings: Settings, spec: JobSpec) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every output of the registered model on the raw test rows, and the model's metadata (the
    ONNX's, with the registered version's classes as ``classes``)."""
    async with Registry(settings) as registry:
        mv = await registry.get(spec.model_name)
        onnx_bytes = await registry.load_bytes(mv)
    x = raw_split(spec.data).x_test.astype(np.float32)
    sess = session(onnx_bytes)
    names = [o.name for o in sess.get_outputs()]
    assert names[0] == "output"  # clients reading output 0 still get the model's output
    return dict(zip(names, sess.run(names, {"input": x}), strict=True)), \
        {**metadata(onnx_bytes), "classes": json.dumps(mv.lineage.classes)}


@pytest.mark.parametrize("source", ["digits", "diabetes", "csv", "npy"])
async def test_served_model_answers_raw_features_as_well_as_it_tested(
    settings: Settings, source: str, tmp_path: Path
) -> None:
    spec = _spec(source, tmp_path)
    status = await run_in_process(settings, spec, timeout_s=150)
    assert status.state == "succeeded", status.error
    outputs, meta = await _served(settings, spec)
    raw = raw_split(spec.data)
    if raw.task == "classification":
        served = float(np.mean(outputs["label"] == raw.test_values))
        assert served == pytest.approx(status.metrics["test_accuracy"], abs=0.01)
        assert served >= 0.85  # raw features unscaled would give far less (one class for all rows)
        assert json.loads(meta["aiaas.classes"]) == [float(c) for c in raw.classes]
        assert json.loads(meta["classes"]) == [f"{c:g}" for c in raw.classes]  # registered with it
        probs = outputs["probabilities"]
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert np.array_equal(raw.classes[probs.argmax(axis=1)], outputs["label"])
    else:
        y = raw.y_test.astype(np.float64)
        pred = outputs["output"].reshape(len(y)).astype(np.float64)
        r2 = 1.0 - float(((pred - y) ** 2).sum()) / float(((y - y.mean()) ** 2).sum())
        assert r2 == pytest.approx(status.metrics["test_r2"], abs=0.01)
        assert r2 > 0.2
