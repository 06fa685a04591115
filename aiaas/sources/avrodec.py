"""Avro records: bare binary against an .avsc file, or Confluent-framed against schemas by id.

Each writer schema gets a reader compiled once. A schema whose record holds only fixed-size
numbers (double, float, boolean; nested records of them) has a fixed binary layout: a batch of it is
one ``np.frombuffer`` with a structured dtype, no per-record work at all. Any other schema is read
by fastavro into dicts that msgspec converts (in C) into the Source's Struct, so validation and
extraction are those of JSON records (``aiaas.sources.structs``). A record that does not decode is a
Rejection, never an exception. See docs/sources.md.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import numpy as np
from fastavro import schemaless_reader

from aiaas.schemas.sources import Source
from aiaas.sources.avroschemas import HEADER, MAGIC, WriterSchemas
from aiaas.sources.decoded import Decoded, Rejection
from aiaas.sources.plan import Part, merge
from aiaas.sources.structs import StructForm

_FIXED = {"double": "<f8", "float": "<f4", "boolean": "u1"}
Got = tuple[np.ndarray, Part] | None  # (batch positions, their rows), or None: try the next reader
Reader = Callable[[list[bytes], np.ndarray, list[Rejection]], Got]


def _leaves(schema: Any, prefix: str, out: list[tuple[str, str]]) -> bool:
    """Flatten a record of fixed-size numbers into (path, dtype); False if it is not one."""
    if isinstance(schema, dict) and schema.get("type") == "record":
        return all(_leaves(f["type"], f"{prefix}{f['name']}.", out) for f in schema["fields"])
    name = schema.get("type") if isinstance(schema, dict) else schema
    if name not in _FIXED:
        return False
    out.append((prefix.rstrip("."), _FIXED[name]))
    return True


def fixed_reader(schema: Any, form: StructForm) -> Reader | None:
    """The numpy reader of a fixed-layout schema, when the Source can use one."""
    plan, leaves = form.plan, list[tuple[str, str]]()
    if plan.source.passthrough or plan.source.key or plan.label_vocab is not None:
        return None
    if any(c.vocab is not None or c.field.path.endswith("[]") for c in plan.columns):
        return None
    if not _leaves(schema, "", leaves):
        return None
    names = [p for p, _ in leaves]
    wanted = [c.field.path for c in plan.columns] + ([plan.label] if plan.label else [])
    if not set(wanted) <= set(names):
        return None
    dtype = np.dtype([(f"c{i}", d) for i, (_, d) in enumerate(leaves)])
    cols = [f"c{names.index(p)}" for p in wanted]
    bools = [f"c{i}" for i, (_, d) in enumerate(leaves) if d == "u1"]

    def read(payloads: list[bytes], ok: np.ndarray, rejected: list[Rejection]) -> Got:
        sized = np.fromiter(map(len, payloads), np.int64, len(payloads)) == dtype.itemsize
        if not sized.all():
            return None
        arr = np.frombuffer(b"".join(payloads), dtype=dtype)
        if bools and any((arr[b] > 1).any() for b in bools):
            return None  # a boolean byte other than 0/1: let the generic reader name the record
        with np.errstate(over="ignore"):
            raw = np.stack([arr[c].astype(np.float32) for c in cols], axis=1)
        return ok, Part(raw)

    return read


def generic_reader(schema: Any, form: StructForm) -> Reader:
    """fastavro into dicts, msgspec into the Source's Struct; one record at a time only on failure."""
    many, one = form.struct_list, form.struct

    def load(v: bytes) -> Any:
        buf = io.BytesIO(v)
        rec = schemaless_reader(buf, schema, None)
        if buf.tell() != len(v):
            raise ValueError(f"{len(v) - buf.tell()} bytes after the record")
        return rec

    def read(payloads: list[bytes], ok: np.ndarray, rejected: list[Rejection]) -> Got:
        try:
            return ok, form.extract(msgspec.convert([load(v) for v in payloads], many, strict=False))
        except Exception:  # corrupt bytes raise anything; each record is named below
            pass
        recs, kept = [], []
        for i, v in zip(ok.tolist(), payloads, strict=True):
            try:
                rec = load(v)
            except Exception as exc:  # EOFError, UnicodeDecodeError, IndexError...
                rejected.append(Rejection(i, "", f"not an Avro record of its schema ({type(exc).__name__})"))
                continue
            try:
                recs.append(msgspec.convert(rec, one, strict=False))
                kept.append(i)
            except msgspec.ValidationError as exc:
                rejected.append(Rejection(i, *form.explain(exc)))
        return np.asarray(kept, np.int64), form.extract(recs)

    return read


class AvroDecoder:
    """``decode(values) -> Decoded`` for Avro records (see the module docstring)."""

    def __init__(self, source: Source, form: StructForm) -> None:
        assert source.avro is not None  # Source validation guarantees it
        self.form = form
        self.schemas = WriterSchemas(source.avro)
        self._readers: dict[int | None, list[Reader]] = {}

    def _readers_of(self, schema_id: int | None, schema: Any) -> list[Reader]:
        readers = self._readers.get(schema_id)
        if readers is None:
            fixed = fixed_reader(schema, self.form)
            readers = [*([fixed] if fixed else []), generic_reader(schema, self.form)]
            self._readers[schema_id] = readers
        return readers

    def decode(self, values: Sequence[bytes]) -> Decoded:
        rejected: list[Rejection] = []
        groups = self._group(values, rejected)
        parts, seen = [], set()
        for schema_id, idx in groups.items():
            schema = self.schemas.single if schema_id is None else self.schemas.by_id(schema_id)
            if schema is None:
                rejected += [Rejection(i, "", f"unknown schema id {schema_id}") for i in idx]
                continue
            if schema_id is not None:
                seen.add(schema_id)
            cut = HEADER if schema_id is not None else 0
            payloads = [values[i][cut:] for i in idx]
            ok = np.asarray(idx, np.int64)
            for read in self._readers_of(schema_id, schema):
                if (got := read(payloads, ok, rejected)) is not None:
                    parts.append(got)
                    break
        parts = [p for p in parts if len(p[0])]
        if not parts:
            return self.form.plan.empty(rejected, seen)
        ok, part = merge(parts)
        return self.form.plan.finish(part.raw, ok, rejected, part.passthrough, part.keys, seen)

    def _group(self, values: Sequence[bytes], rejected: list[Rejection]) -> dict[int | None, list[int]]:
        """Batch positions by schema id (None: the file schema); unframed values are refused."""
        if not self.schemas.framed:
            ok = [i for i, v in enumerate(values) if isinstance(v, bytes | bytearray | memoryview)]
            if len(ok) < len(values):
                gone = sorted(set(range(len(values))) - set(ok))
                rejected += [Rejection(i, "", "no value (tombstone)") for i in gone]
            return {None: ok} if ok else {}
        groups: dict[int | None, list[int]] = {}
        for i, v in enumerate(values):
            if v is None or len(v) < HEADER or v[0] != MAGIC:
                rejected.append(Rejection(i, "", "not Confluent-framed Avro (magic byte 0 + schema id)"))
                continue
            groups.setdefault(int.from_bytes(v[1:HEADER], "big"), []).append(i)
        return groups

    def close(self) -> None:
        self.schemas.close()
