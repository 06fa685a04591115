"""Datasets for training jobs: load, split, standardise, so every process sees the same numbers.

Features are standardised with the *train* split's statistics only (the test split must not leak
into them); regression targets are standardised the same way so that one learning rate suits
every dataset (``y_mean``/``y_std`` undo it for reporting). Classification labels are mapped to
``0..n_classes-1``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from aiaas.schemas.errors import AiaasError, ErrorCode
from aiaas.schemas.jobs import DataSpec

Task = Literal["classification", "regression"]
MAX_CLASSES = 1000  # integer targets with more distinct values than this are treated as regression
_BUILTIN_TASK: dict[str, Task] = {"digits": "classification", "diabetes": "regression"}


@dataclass(frozen=True, slots=True)
class Dataset:
    """A train/test split ready for torch: float32 features, int64 labels or float32 targets."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: Task
    n_features: int
    n_classes: int  # 0 for regression
    name: str = "dataset"
    x_mean: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    x_std: np.ndarray = field(default_factory=lambda: np.ones(0, np.float32))
    y_mean: float = 0.0
    y_std: float = 1.0
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def train_rows(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def test_rows(self) -> int:
        return int(self.x_test.shape[0])


def _bad(reason: str, **details: object) -> AiaasError:
    return AiaasError(reason, code=ErrorCode.BAD_REQUEST, **details)


def _read_csv(path: Path, target_column: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Numeric CSV with a header row; the target is ``target_column`` (default: the last column)."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise _bad("CSV needs a header row and at least one data row", field="data.path", path=str(path))
    header, body = rows[0], rows[1:]
    target = target_column or header[-1]
    if target not in header:
        raise _bad(f"target column {target!r} not in the CSV header of {path} (columns: "
                   f"{', '.join(header[:20])}{', ...' if len(header) > 20 else ''})",
                   field="data.target_column", column=target)
    try:
        table = np.asarray(body, dtype=np.float64)
    except ValueError as exc:
        raise _bad("CSV holds non-numeric values", field="data.path", detail=str(exc)) from exc
    col = header.index(target)
    return np.delete(table, col, axis=1), table[:, col]


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``.npz`` with arrays ``x`` (or ``X``) and ``y``."""
    with np.load(path, allow_pickle=False) as loaded:
        keys = set(loaded.files)
        xk = "x" if "x" in keys else "X" if "X" in keys else None
        if xk is None or "y" not in keys:
            raise _bad(".npz needs arrays 'x' (or 'X') and 'y'", field="data.path", found=sorted(keys))
        return np.asarray(loaded[xk]), np.asarray(loaded["y"])


def _read_npy(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A 2-D ``.npy`` whose last column is the target."""
    arr = np.load(path, allow_pickle=False)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise _bad(".npy must be 2-D with the target in the last column", field="data.path")
    return arr[:, :-1], arr[:, -1]


def _raw(spec: DataSpec) -> tuple[np.ndarray, np.ndarray, str]:
    # sklearn (with scipy) is imported where a dataset is loaded, not with this module: every trainer
    # and aggregator process imports this module and none loads a dataset itself; the import was
    # about a third of their start-up (as much as torch).
    from sklearn.datasets import load_diabetes, load_digits

    if spec.source == "digits":
        d = load_digits()
        return d.data, d.target, "digits"
    if spec.source == "diabetes":
        d = load_diabetes()
        return d.data, d.target, "diabetes"
    path = Path(spec.path or "")
    if not path.is_file():
        raise _bad(f"data file not found: {path} (data.path)", field="data.path", path=str(path))
    if spec.source == "csv":
        x, y = _read_csv(path, spec.target_column)
    elif path.suffix == ".npz":
        x, y = _read_npz(path)
    else:
        x, y = _read_npy(path)
    return x, y, path.stem


def infer_task(y: np.ndarray, wanted: str = "auto") -> Task:
    """Integer-valued 1-D targets with few distinct values (at most one per ten rows) are classes;
    anything else is regression. ``wanted`` (``data.task``) overrides the guess."""
    if wanted in ("classification", "regression"):
        return wanted  # type: ignore[return-value]
    integral = y.ndim == 1 and bool(np.all(np.isfinite(y))) and bool(np.all(np.equal(np.mod(y, 1), 0)))
    few = 2 <= len(np.unique(y)) <= min(MAX_CLASSES, max(2, len(y) // 10))
    return "classification" if integral and few else "regression"


def _check(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise _bad("features must be 2-D with one target per row",
                   x_shape=list(x.shape), y_shape=list(y.shape))
    if not np.all(np.isfinite(x)):
        raise _bad("features hold NaN or Inf", field="data.path")
    return x, y


def _standardise(
    x_tr: np.ndarray, x_te: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Both splits scaled with the train split's mean and std (constant columns left at std 1)."""
    mean, std = x_tr.mean(axis=0), x_tr.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    f32 = np.float32
    return ((x_tr - mean) / std).astype(f32), ((x_te - mean) / std).astype(f32), mean.astype(f32), \
        std.astype(f32)


def _scale_targets(y_tr: np.ndarray, y_te: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    y_mean, y_std = float(y_tr.mean()), float(y_tr.std()) or 1.0
    return ((y_tr - y_mean) / y_std).astype(np.float32), ((y_te - y_mean) / y_std).astype(np.float32), \
        y_mean, y_std


@dataclass(frozen=True, slots=True)
class RawSplit:
    """The train/test split before any scaling: what a caller of the served model holds (raw
    features, class values as in the source); ``y`` are label indices for classification."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: Task
    classes: np.ndarray
    name: str

    @property
    def test_values(self) -> np.ndarray:
        """The test targets as the source has them (class values, not label indices)."""
        return self.classes[self.y_test] if self.task == "classification" else self.y_test


def raw_split(spec: DataSpec) -> RawSplit:
    """Load ``spec.source`` and split off ``spec.test_fraction`` (stratified for classes); no scaling."""
    from sklearn.model_selection import train_test_split

    x, y, name = _raw(spec)
    x, y = _check(x, y)
    task = infer_task(y, _BUILTIN_TASK.get(spec.source, spec.task) if spec.task == "auto" else spec.task)
    classes = np.zeros(0)
    if task == "classification":
        classes, y = np.unique(y, return_inverse=True)
        y = y.astype(np.int64)
    stratify = y if task == "classification" and np.bincount(y).min() >= 2 else None
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=spec.test_fraction, random_state=spec.seed, stratify=stratify
    )
    return RawSplit(x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, task=task, classes=classes,
                    name=name)


def text_dataset(spec: DataSpec) -> Dataset:
    """``source: debian``: labelled texts tokenized into int64 rows (``aiaas.data.textdata``); nothing
    to standardise (mean 0, std 1), classes are label indices (the names are ``data.text.sections``)."""
    from aiaas.data.textdata import debian_split, token_rows

    split = debian_split(spec)
    x_tr, x_te = token_rows(spec, split.train_texts), token_rows(spec, split.test_texts)
    width = x_tr.shape[1]
    return Dataset(x_train=x_tr, y_train=split.y_train, x_test=x_te, y_test=split.y_test,
                   task="classification", n_features=width, n_classes=len(split.labels), name="debian",
                   x_mean=np.zeros(width, np.float32), x_std=np.ones(width, np.float32),
                   classes=np.arange(len(split.labels), dtype=np.float64))


def load_dataset(spec: DataSpec) -> Dataset:
    """``raw_split``, then features standardised with the train split's statistics (and regression
    targets too); the statistics travel with the data (``aiaas.data.datapush``) into the served graph."""
    if spec.source == "debian":
        return text_dataset(spec)
    raw = raw_split(spec)
    x_tr, x_te, mean, std = _standardise(raw.x_train, raw.x_test)
    y_tr, y_te = raw.y_train, raw.y_test
    y_mean, y_std = 0.0, 1.0
    if raw.task == "regression":
        y_tr, y_te, y_mean, y_std = _scale_targets(y_tr.astype(np.float64), y_te.astype(np.float64))
    return Dataset(
        x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te, task=raw.task,
        n_features=int(raw.x_train.shape[1]), n_classes=len(raw.classes), name=raw.name,
        x_mean=mean, x_std=std, y_mean=y_mean, y_std=y_std, classes=raw.classes,
    )
