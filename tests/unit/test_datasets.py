"""Dataset loading: every source, the split kept apart, train-only standardisation, named errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aiaas.data.datasets import load_dataset, raw_split
from aiaas.schemas.errors import AiaasError
from aiaas.schemas.jobs import DataSpec


def _table(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(10.0, 4.0, size=(n, 3))
    return x, (x[:, 0] > 10).astype(np.int64) + 2 * (x[:, 1] > 10)


def test_digits_is_split_stratified_and_standardised_on_train() -> None:
    ds = load_dataset(DataSpec(source="digits", test_fraction=0.2))
    assert (ds.task, ds.n_features, ds.n_classes) == ("classification", 64, 10)
    assert ds.train_rows + ds.test_rows == 1797 and ds.test_rows == 360
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-4)
    assert abs(float(ds.x_test.mean())) > 1e-4  # test split scaled with train stats, not its own
    assert set(np.unique(ds.y_test)) == set(range(10))


def test_diabetes_is_regression_with_scaled_targets() -> None:
    ds = load_dataset(DataSpec(source="diabetes"))
    assert ds.task == "regression" and ds.n_classes == 0 and ds.y_train.dtype == np.float32
    assert abs(float(ds.y_train.mean())) < 1e-5 and ds.y_std > 1.0


def test_csv_with_target_column(tmp_path: Path) -> None:
    x, y = _table()
    path = tmp_path / "d.csv"
    rows = ["a,label,b,c"] + [f"{r[0]},{t},{r[1]},{r[2]}" for r, t in zip(x, y, strict=True)]
    path.write_text("\n".join(rows) + "\n")
    ds = load_dataset(DataSpec(source="csv", path=str(path), target_column="label"))
    assert (ds.task, ds.n_features, ds.n_classes) == ("classification", 3, 4)
    with pytest.raises(AiaasError) as err:
        load_dataset(DataSpec(source="csv", path=str(path), target_column="nope"))
    assert err.value.details["field"] == "data.target_column"


def test_npz_and_npy(tmp_path: Path) -> None:
    x, y = _table()
    np.savez(tmp_path / "d.npz", x=x, y=y.astype(np.float64) * 0.37)
    ds = load_dataset(DataSpec(source="npy", path=str(tmp_path / "d.npz")))
    assert ds.task == "regression" and ds.n_features == 3
    np.save(tmp_path / "d.npy", np.column_stack([x, y]))
    ds = load_dataset(DataSpec(source="npy", path=str(tmp_path / "d.npy"), task="regression"))
    assert ds.task == "regression"  # data.task overrides the integer-label guess
    assert load_dataset(DataSpec(source="npy", path=str(tmp_path / "d.npy"))).task == "classification"


def test_missing_file_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(AiaasError) as err:
        load_dataset(DataSpec(source="csv", path=str(tmp_path / "absent.csv")))
    assert err.value.details["field"] == "data.path"


def test_data_info_carries_the_scaling_and_survives_the_wire() -> None:
    """What the push writes beside the test split: the statistics the served graph folds in."""
    from aiaas.data.datainfo import JobData, describe

    spec = DataSpec(source="digits")
    ds = load_dataset(spec)
    data = JobData.unpack(describe("j", spec, ds).pack())
    assert data.info.n_features == 64 and data.info.n_classes == 10 and data.info.classes == list(range(10))
    np.testing.assert_allclose(data.x_mean, ds.x_mean)
    np.testing.assert_allclose(data.x_std, ds.x_std)
    raw = raw_split(spec)  # the rows a caller holds scale to exactly what training saw
    np.testing.assert_allclose((raw.x_test - data.x_mean) / data.x_std, ds.x_test, atol=1e-4)
