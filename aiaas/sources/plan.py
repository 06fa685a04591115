"""The column layout of a Source, computed once: how raw per-record values become feature rows.

Every format decoder first produces a *raw* float32 matrix, one column per numeric feature (an array
feature gives ``width`` columns, a categorical feature one column holding its vocabulary index, -1
when the value is outside the vocabulary), then the label as the last column when there is one.
``Plan.finish`` turns that matrix into ``Decoded``: one-hot expansion, vocabulary and finiteness
checks, label split. All of it is numpy on the whole batch; nothing here loops over records.
See docs/sources.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from aiaas.schemas.sources import FeatureField, Source
from aiaas.sources.decoded import Decoded, Rejection


@dataclass(frozen=True)
class Column:
    """One feature's place in the raw matrix and in the output rows."""

    field: FeatureField
    raw: int  # first raw column
    out: int  # first output column
    vocab: dict[str, int] | None  # categorical: value -> index
    default_index: int  # categorical: index of the default, -1 when there is none

    @property
    def raw_width(self) -> int:
        return 1 if self.vocab is not None else (self.field.width or 1)

    @property
    def one_hot(self) -> bool:
        return self.vocab is not None and self.field.encoding == "one_hot"


def _column(f: FeatureField, raw: int, out: int) -> Column:
    vocab = {v: i for i, v in enumerate(f.vocabulary)} if f.vocabulary is not None else None
    dflt = vocab[f.default] if vocab is not None and isinstance(f.default, str) else -1
    return Column(f, raw, out, vocab, dflt)


def label_vocab(source: Source) -> dict[Any, int] | None:
    """Class name -> index; integer class indices within range map to themselves."""
    if source.label_vocabulary is None:
        return None
    names: dict[Any, int] = {name: i for i, name in enumerate(source.label_vocabulary)}
    names.update({i: i for i in range(len(source.label_vocabulary))})
    return names


@dataclass
class Part:
    """Raw rows of some records of a batch (one schema's, one format reader's), before ``finish``."""

    raw: np.ndarray  # float32 [rows, plan.raw_width]
    passthrough: list[dict[str, Any]] | None = None
    keys: list[Any] | None = None


def merge(parts: list[tuple[np.ndarray, Part]]) -> tuple[np.ndarray, Part]:
    """Parts at batch positions (ok arrays) -> one Part in batch order."""
    if len(parts) == 1:
        return parts[0]
    ok = np.concatenate([o for o, _ in parts])
    order = np.argsort(ok, kind="stable")
    raw = np.concatenate([p.raw for _, p in parts])[order]
    pt = [x for _, p in parts for x in (p.passthrough or [])]
    keys = [x for _, p in parts for x in (p.keys or [])]
    return ok[order], Part(raw, [pt[i] for i in order] if pt else None,
                           [keys[i] for i in order] if parts[0][1].keys is not None else None)


def _kept(items: list[Any] | None, keep: np.ndarray) -> list[Any] | None:
    return None if items is None else [p for p, k in zip(items, keep, strict=True) if k]


class Plan:
    """A Source's layout, shared by every format decoder (see the module docstring)."""

    def __init__(self, source: Source, labels: bool = True) -> None:
        self.source = source
        self.columns: list[Column] = []
        raw = out = 0
        for f in source.fields():
            col = _column(f, raw, out)
            self.columns.append(col)
            raw, out = raw + col.raw_width, out + f.columns()
        self.feature_raw_width = raw
        self.width = out
        self.label = source.label if labels else None
        self.label_vocab = label_vocab(source) if self.label else None
        self.raw_width = raw + (1 if self.label else 0)
        self._identity = not any(c.one_hot for c in self.columns)
        self._categorical = [c for c in self.columns if c.vocab is not None]

    def finish(self, raw: np.ndarray, ok: np.ndarray, rejected: list[Rejection],
               passthrough: list[dict[str, Any]] | None = None, keys: list[Any] | None = None,
               schema_ids: set[int] | None = None) -> Decoded:
        """Raw matrix of the records at ``ok`` -> Decoded; refuses rows failing the checks."""
        bad = self._check(raw, ok, rejected)
        if bad is not None:
            keep = ~bad
            raw, ok = raw[keep], ok[keep]
            passthrough = _kept(passthrough, keep)
            keys = _kept(keys, keep)
        rejected.sort(key=lambda r: r.index)
        x = self._expand(raw)
        y = None
        if self.label is not None:
            col = raw[:, -1]
            y = col.astype(np.int64) if self.label_vocab is not None else np.ascontiguousarray(col)
        return Decoded(x=x, ok=ok, y=y, passthrough=passthrough or [], rejected=rejected,
                       schema_ids=schema_ids or set(), keys=keys)

    def _check(self, raw: np.ndarray, ok: np.ndarray, rejected: list[Rejection]) -> np.ndarray | None:
        """Rows outside a vocabulary or not finite -> rejections; the mask of those rows, or None."""
        if len(raw) == 0:
            return None
        bad = ~np.isfinite(raw)
        for c in self._categorical:
            bad[:, c.raw] |= raw[:, c.raw] < 0
        if self.label_vocab is not None:
            bad[:, -1] |= raw[:, -1] < 0
        rows: np.ndarray = bad.any(axis=1)
        if not rows.any():
            return None
        for i in np.flatnonzero(rows):
            col = int(np.argmax(bad[i]))
            rejected.append(Rejection(int(ok[i]), *self._why(col, float(raw[i, col]))))
        return rows

    def _why(self, raw_col: int, value: float) -> tuple[str, str]:
        if self.label is not None and raw_col == self.raw_width - 1:
            return self.label, ("not a finite number" if self.label_vocab is None
                                else "not in label_vocabulary")
        for c in self.columns:
            if c.raw <= raw_col < c.raw + c.raw_width:
                if c.vocab is not None and np.isfinite(value):
                    return c.field.path, "not in vocabulary"
                return c.field.path, "not a finite number"
        return "", "not a finite number"  # unreachable: every raw column belongs to a field

    def _expand(self, raw: np.ndarray) -> np.ndarray:
        feats = raw[:, : self.feature_raw_width]
        if self._identity:
            return np.ascontiguousarray(feats, dtype=np.float32)
        x = np.zeros((len(raw), self.width), np.float32)
        rows = np.arange(len(raw))
        for c in self.columns:
            if c.one_hot:
                x[rows, c.out + feats[:, c.raw].astype(np.int64)] = 1.0
            else:
                x[:, c.out : c.out + c.raw_width] = feats[:, c.raw : c.raw + c.raw_width]
        return x

    def empty(self, rejected: list[Rejection], schema_ids: set[int] | None = None) -> Decoded:
        return self.finish(np.zeros((0, self.raw_width), np.float32), np.zeros(0, np.int64),
                           rejected, [], [] if self.source.key else None, schema_ids)
