"""Partition strategies for training data: which data partition (hence which trainer) gets a row.

Every strategy returns one partition number per row, computed from the data and a seed only, so the
same push gives the same layout on any machine:

- ``random``: a seeded shuffle dealt round-robin (balanced, i.i.d. partitions);
- ``sequential``: contiguous ranges of rows (partition p holds rows [p*n/P, (p+1)*n/P));
- ``stratified``: each class is shuffled and dealt round-robin, so every partition holds every class
  in the data's proportions (regression targets are stratified by quantile bins);
- ``label``: by label value, each class wholly on one partition (non-IID: a trainer sees only its
  classes); classes go largest first to the partition with the fewest rows so far (regression
  targets by quantile bin). Before ``stratified`` existed, ``label`` named what ``stratified`` does;
- ``hash``: a stable hash of the row's feature bytes (blake2b, not Python's salted ``hash``), so the
  same row always lands on the same partition.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np

from aiaas.schemas.errors import AiaasError, ErrorCode

Strategy = Literal["random", "sequential", "stratified", "label", "hash"]
STRATEGIES: tuple[Strategy, ...] = ("random", "sequential", "stratified", "label", "hash")
REGRESSION_BINS = 10


def _bad(reason: str, **details: object) -> AiaasError:
    return AiaasError(reason, code=ErrorCode.BAD_REQUEST, **details)


def random_split(n: int, partitions: int, seed: int) -> np.ndarray:
    """Balanced random assignment: partition sizes differ by at most one."""
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.arange(n) % partitions
    return out


def sequential_split(n: int, partitions: int) -> np.ndarray:
    """Contiguous, non-decreasing ranges of (near) equal size."""
    return (np.arange(n, dtype=np.int64) * partitions) // max(n, 1)


def _strata(y: np.ndarray) -> np.ndarray:
    """Class labels as strata; float targets become quantile bins."""
    if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
        return y.astype(np.int64)
    flat = y.reshape(len(y), -1)[:, 0].astype(np.float64)
    edges = np.quantile(flat, np.linspace(0, 1, REGRESSION_BINS + 1)[1:-1])
    return np.searchsorted(edges, flat, side="right").astype(np.int64)


def stratified_split(y: np.ndarray, partitions: int, seed: int) -> np.ndarray:
    """Each stratum shuffled and dealt round-robin, continuing where the last one ended."""
    strata = _strata(y)
    rng = np.random.default_rng(seed)
    out = np.empty(len(strata), dtype=np.int64)
    start = 0
    for value in np.unique(strata):
        rows = np.flatnonzero(strata == value)
        if len(rows) < partitions:
            raise _bad("a class has fewer rows than partitions; 'stratified' cannot give every "
                       "partition every class", field="data.partitions", label=int(value), rows=len(rows),
                       partitions=partitions)
        rows = rng.permutation(rows)
        out[rows] = (start + np.arange(len(rows))) % partitions
        start = (start + len(rows)) % partitions
    return out


def label_split(y: np.ndarray, partitions: int) -> np.ndarray:
    """Each label value wholly on one partition: largest first onto the emptiest partition."""
    strata = _strata(y)
    values, counts = np.unique(strata, return_counts=True)
    if len(values) < partitions:
        raise _bad(f"strategy 'label' puts each label on one partition: {len(values)} labels cannot fill "
                   f"{partitions} partitions (use 'stratified' for every label on every partition)",
                   field="data.strategy", labels=len(values), partitions=partitions)
    load = np.zeros(partitions, np.int64)
    out = np.empty(len(strata), dtype=np.int64)
    for i in np.argsort(-counts, kind="stable"):
        p = int(np.argmin(load))
        out[strata == values[i]] = p
        load[p] += counts[i]
    return out


def row_hash(row: np.ndarray) -> int:
    """A stable 64-bit hash of a row's float32 little-endian bytes."""
    data = np.ascontiguousarray(row, dtype="<f4").tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def hash_split(x: np.ndarray, partitions: int) -> np.ndarray:
    return np.fromiter((row_hash(r) % partitions for r in x), dtype=np.int64, count=len(x))


def assign(strategy: str, x: np.ndarray, y: np.ndarray, partitions: int, seed: int = 0) -> np.ndarray:
    """The partition (0..partitions-1) of every row of ``x``/``y`` under ``strategy``."""
    if partitions < 1:
        raise _bad("partitions must be >= 1", field="data.partitions", partitions=partitions)
    if len(x) != len(y):
        raise _bad("x and y differ in rows", x_rows=len(x), y_rows=len(y))
    if strategy == "random":
        return random_split(len(x), partitions, seed)
    if strategy == "sequential":
        return sequential_split(len(x), partitions)
    if strategy == "stratified":
        return stratified_split(np.asarray(y), partitions, seed)
    if strategy == "label":
        return label_split(np.asarray(y), partitions)
    if strategy == "hash":
        return hash_split(np.asarray(x), partitions)
    raise _bad("unknown partition strategy", field="data.strategy", strategy=strategy,
               allowed=list(STRATEGIES))
