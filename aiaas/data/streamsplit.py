"""Which rows of a user's topic train where: the held-out split and the partition strategies, per row.

A job that trains from a declared source (README, "Train from your topic") never copies the topic:
every trainer and the aggregator read it, and each keeps what a deterministic function of the record
gives it. That function must agree across processes and restarts, so it depends only on the record
(its source partition, offset, key, label, features) and the job's seed:

- held out: a stable hash of the record's key (blake2b of the Kafka key; partition:offset when the
  record has none) below ``fraction``; a held-out key never trains, wherever it appears;
- ``random``/``stratified``: a seeded mix of (source partition, offset) modulo the partitions (in a
  stream every class reaches every partition in its proportion, which is what stratified asks);
- ``sequential``: contiguous offset ranges of each source partition when the range is bounded, else
  runs of ``block`` consecutive offsets dealt in turn;
- ``label``: the class index modulo the partitions (non-IID);
- ``hash``: the key hash modulo the partitions (the same key always lands on the same trainer).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from aiaas.schemas.errors import AiaasError, ErrorCode

SPLIT_BUCKETS = 10_000
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def key_hashes(keys: Sequence[bytes | None], partition: int, offsets: np.ndarray) -> np.ndarray:
    """A stable 64-bit hash per record of its key (``partition:offset`` for a record without one)."""
    out = np.empty(len(keys), np.uint64)
    for i, key in enumerate(keys):
        raw = key if key else f"{partition}:{int(offsets[i])}".encode()
        out[i] = int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")
    return out


def held_out(hashes: np.ndarray, fraction: float) -> np.ndarray:
    """True for the rows whose key is in the held-out share (never trained on)."""
    return (hashes % np.uint64(SPLIT_BUCKETS)) < np.uint64(round(fraction * SPLIT_BUCKETS))


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64 of uint64 values: a cheap, vectorised, well-spread integer hash."""
    with np.errstate(over="ignore"):
        z = (values + np.uint64(0x9E3779B97F4A7C15)) & _M64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
        return z ^ (z >> np.uint64(31))


def route(strategy: str, partitions: int, *, seed: int, partition: int, offsets: np.ndarray,
          hashes: np.ndarray, y: np.ndarray | None, span: tuple[int, int] | None = None,
          block: int = 64) -> np.ndarray:
    """The job partition (0..partitions-1) of each record of one source partition.

    ``span`` is the [first, end) offsets read from this source partition when the range is bounded
    (``sequential`` cuts it into contiguous ranges); ``y`` the class indices (``label``)."""
    n = np.uint64(partitions)
    offs = offsets.astype(np.uint64)
    if strategy in ("random", "stratified"):
        base = np.uint64((seed & 0xFFFFFFFF) << 32 | (partition & 0xFFFFFFFF))
        return (_mix(offs ^ _mix(np.full(len(offs), base, np.uint64))) % n).astype(np.int64)
    if strategy == "sequential":
        if span is not None and span[1] > span[0]:
            lo, hi = span
            cut = np.clip((offsets - lo) * partitions // (hi - lo), 0, partitions - 1)
            return np.asarray(cut, np.int64)
        return (((offsets // block) + partition) % partitions).astype(np.int64)
    if strategy == "label":
        if y is None:
            raise AiaasError("strategy 'label' needs the source's label", code=ErrorCode.BAD_REQUEST,
                             field="data.strategy")
        labels = np.asarray(y).reshape(len(y), -1)[:, 0]
        return (labels.astype(np.int64) % partitions).astype(np.int64)
    if strategy == "hash":
        return (hashes % n).astype(np.int64)
    raise AiaasError("unknown partition strategy", code=ErrorCode.BAD_REQUEST, field="data.strategy",
                     strategy=strategy)


def fit_scaling(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feature means and standard deviations of a window (a constant column gets std 1, as the
    pushed datasets do), float32."""
    mean = x.mean(axis=0).astype(np.float32)
    std = x.std(axis=0).astype(np.float32)
    std[std < 1e-6] = 1.0
    return mean, std
