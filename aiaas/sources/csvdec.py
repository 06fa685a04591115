"""CSV lines: one record per value, columns named once in the spec (records carry no header).

A batch is split into a numpy array of byte cells [records, columns] and each feature column is
converted with one numpy cast; a vocabulary is matched with ``searchsorted`` over the sorted
entries. Only a column whose cast fails is walked cell by cell, to name the bad records. A feature
``name[]`` with ``width`` w takes w consecutive columns starting at ``name``. A line holding a quote
is parsed by the ``csv`` module (quoted delimiters). See docs/sources.md.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from aiaas.schemas.errors import AiaasError, ErrorCode
from aiaas.schemas.sources import Source
from aiaas.sources.decoded import Decoded, Rejection
from aiaas.sources.plan import Plan

FAST_MISSES = 8  # after this many batches in a row that the fast path could not read, stop trying


def _vocab_index(cells: np.ndarray, vocab: dict[Any, int], default: int) -> np.ndarray:
    """Index of each cell in ``vocab`` (string keys), ``default`` when it is not there."""
    names = sorted(k.encode() for k in vocab if isinstance(k, str))
    if not names:
        return np.full(len(cells), default, np.float32)
    table = np.array(names)
    index = np.array([vocab[n.decode()] for n in names], np.float32)
    pos = np.minimum(np.searchsorted(table, cells), len(table) - 1)
    return np.where(table[pos] == cells, index[pos], np.float32(default))


class CsvDecoder:
    """``decode(values) -> Decoded`` for CSV lines (see the module docstring)."""

    def __init__(self, source: Source, plan: Plan) -> None:
        assert source.csv is not None  # Source validation guarantees it
        self.plan = plan
        self.delim = source.csv.delimiter.encode()
        self.ncols = len(source.csv.columns)
        where = {name: i for i, name in enumerate(source.csv.columns)}

        def col(path: str) -> int:
            name = path.removesuffix("[]")
            if name not in where:
                raise AiaasError(f"{name!r} is not one of the csv columns", code=ErrorCode.BAD_REQUEST,
                                 path=path)
            return where[name]

        self.cols = [col(c.field.path) for c in plan.columns]
        for c, i in zip(plan.columns, self.cols, strict=True):
            if i + c.raw_width > self.ncols:
                raise AiaasError(f"{c.field.path!r} needs {c.raw_width} columns from {c.field.path}",
                                 code=ErrorCode.BAD_REQUEST, path=c.field.path)
        self.label_col = col(plan.label) if plan.label else None
        self.passthrough = [(p, col(p)) for p in source.passthrough]
        self.key_col = col(source.key) if source.key else None
        # the raw columns when every feature and the label are plain numbers (the fast path)
        numeric = all(c.vocab is None for c in plan.columns) and plan.label_vocab is None
        cols = [i + k for c, i in zip(plan.columns, self.cols, strict=True) for k in range(c.raw_width)]
        cols += [self.label_col] if self.label_col is not None else []
        self.numeric_cols: list[int] | None = cols if numeric else None
        self._misses = 0  # consecutive batches the fast path could not read (text columns: stop trying)

    def _split(self, values: Sequence[bytes], rejected: list[Rejection]) -> tuple[np.ndarray, np.ndarray]:
        """Cells [records, columns] of the lines with the right number of columns, and their positions."""
        d, n = self.delim, self.ncols
        rows: list[list[bytes] | None] = [v.rstrip(b"\r\n").split(d) if isinstance(v, bytes) else None
                                          for v in values]
        bad = [i for i, r in enumerate(rows) if r is None or len(r) != n or b'"' in values[i]]
        for i in bad:
            v = values[i]
            if v is None:
                rejected.append(Rejection(i, "", "no value (tombstone)"))
                rows[i] = None
                continue
            text = bytes(v).decode("utf-8", "replace").rstrip("\r\n")
            try:
                got = next(csv.reader([text], delimiter=d.decode()), [])
            except csv.Error as exc:  # a newline or NUL inside the line
                rows[i] = None
                rejected.append(Rejection(i, "", f"not a CSV line: {exc}"))
                continue
            rows[i] = [c.encode() for c in got] if len(got) == n else None
            if len(got) != n:
                rejected.append(Rejection(i, "", f"expected {n} columns, got {len(got)}"))
        ok = np.array([i for i, r in enumerate(rows) if r is not None], np.int64)
        cells = np.array([r for r in rows if r is not None], dtype=np.bytes_).reshape(len(ok), n)
        return cells, ok

    def _numbers(self, cells: np.ndarray, default: float | None, bad: np.ndarray, why: list[str],
                 path: str) -> np.ndarray:
        """One numeric column (cast once; cell by cell only when the cast fails)."""
        cells = np.char.strip(cells)
        empty = cells == b""
        try:
            with np.errstate(over="ignore"):
                out = np.where(empty, b"nan", cells).astype(np.float32)
        except ValueError:
            with np.errstate(over="ignore"):
                out = np.array([_float(c) for c in cells.tolist()], np.float32)
            wrong = np.isnan(out) & ~empty & (np.char.lower(cells) != b"nan")
            self._mark(bad, why, wrong, path, "not a number")
        if empty.any():
            if default is None:
                self._mark(bad, why, empty, path, "missing")
            else:
                out[empty] = default
        return out

    @staticmethod
    def _mark(bad: np.ndarray, why: list[str], rows: np.ndarray, path: str, reason: str) -> None:
        for i in np.flatnonzero(rows & ~bad):
            why[i] = f"{path}\0{reason}"
        bad |= rows

    def _fast(self, values: Sequence[bytes]) -> Decoded | None:
        """All-numeric lines parsed by one C strtod pass over the joined batch, or None."""
        d, n = self.delim, self.ncols
        try:
            lines = [v.rstrip(b"\r\n") for v in values]
            if any(v.count(d) != n - 1 for v in lines):
                return None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                flat = np.fromstring(d.join(lines), dtype=np.float64, sep=d.decode())
        except (TypeError, ValueError, AttributeError):  # a None value, a text or empty cell, a quote
            return None
        if flat.size != len(lines) * n:
            return None
        with np.errstate(over="ignore"):
            raw = flat.reshape(len(lines), n)[:, self.numeric_cols].astype(np.float32)
        ok = np.arange(len(lines), dtype=np.int64)
        if not (self.passthrough or self.key_col is not None):
            return self.plan.finish(raw, ok, [])
        cells = np.array([v.split(d) for v in lines], dtype=np.bytes_).reshape(len(lines), n)
        return self.plan.finish(raw, ok, [], self._passthrough(cells), self._keys(cells))

    def decode(self, values: Sequence[bytes]) -> Decoded:
        if self.numeric_cols is not None and self._misses < FAST_MISSES:
            got = self._fast(values)
            self._misses = 0 if got is not None else self._misses + 1
            if got is not None:
                return got
        rejected: list[Rejection] = []
        cells, ok = self._split(values, rejected)
        n = len(ok)
        bad, why = np.zeros(n, bool), [""] * n
        raw = np.empty((n, self.plan.raw_width), np.float32)
        for c, i in zip(self.plan.columns, self.cols, strict=True):
            f = c.field
            if c.vocab is not None:
                raw[:, c.raw] = _vocab_index(np.char.strip(cells[:, i]), c.vocab, c.default_index)
                continue
            dflt = float(f.default) if f.default is not None else None
            for k in range(c.raw_width):
                raw[:, c.raw + k] = self._numbers(cells[:, i + k], dflt, bad, why, f.path)
        if self.label_col is not None:
            raw[:, -1] = self._label(np.char.strip(cells[:, self.label_col]), bad, why)
        rejected += [Rejection(int(ok[i]), *why[i].split("\0")) for i in np.flatnonzero(bad)]
        keep = ~bad
        cells, ok, raw = cells[keep], ok[keep], raw[keep]
        return self.plan.finish(raw, ok, rejected, self._passthrough(cells), self._keys(cells))

    def _label(self, cells: np.ndarray, bad: np.ndarray, why: list[str]) -> np.ndarray:
        if self.plan.label_vocab is None:
            return self._numbers(cells, None, bad, why, self.plan.label or "")
        names = self.plan.label_vocab  # names win over the digits of class indices
        digits = {str(k): v for k, v in names.items() if isinstance(k, int)}
        return _vocab_index(cells, {**digits, **names}, -1)

    def _passthrough(self, cells: np.ndarray) -> list[dict[str, Any]] | None:
        if not self.passthrough:
            return None
        names = [p for p, _ in self.passthrough]
        return [{p: c.decode("utf-8", "replace") for p, c in zip(names, row, strict=True)}
                for row in cells[:, [j for _, j in self.passthrough]].tolist()]

    def _keys(self, cells: np.ndarray) -> list[Any] | None:
        if self.key_col is None:
            return None
        return [k.decode("utf-8", "replace") for k in cells[:, self.key_col].tolist()]

def _float(cell: bytes) -> float:
    try:
        return float(cell)
    except ValueError:
        return float("nan")
