"""Avro sources: bare records against an .avsc file, Confluent framing against the offline ids map
(schema evolution within one batch, unknown ids, lineage), the fixed-layout numpy reader agreeing
with fastavro's, and corrupt bytes as Rejections; tensor records (what ``aiaas data push`` writes)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest

from aiaas.schemas.errors import AiaasError, Unavailable
from aiaas.schemas.sources import Source
from aiaas.schemas.training import DataBatch
from aiaas.sources import compile_source
from aiaas.sources.avroschemas import SchemaRegistry
from aiaas.streams import codecs

USER = {"type": "record", "name": "User", "fields": [
    {"name": "age", "type": "double"}, {"name": "city", "type": "string"}]}
V1 = {"type": "record", "name": "Event", "namespace": "t", "fields": [
    {"name": "id", "type": "long"},
    {"name": "user", "type": USER},
    {"name": "v", "type": {"type": "array", "items": "float"}},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
    {"name": "label", "type": "string"}]}
V2 = {**V1, "fields": [*V1["fields"], {"name": "score", "type": ["null", "double"], "default": None}]}
SPEC: dict[str, Any] = {
    "topic": "t", "format": "avro",
    "features": ["user.age", {"path": "user.city", "vocabulary": ["paris", "rome"]},
                 {"path": "v[]", "width": 2}, {"path": "kind", "vocabulary": ["A", "B"], "encoding": "index"},
                 {"path": "score", "default": -1}],
    "label": "label", "label_vocabulary": ["no", "yes"], "passthrough": ["id"], "key": "id",
}


def avro(schema: dict[str, Any], rec: dict[str, Any], prefix: bytes = b"") -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), rec)
    return prefix + buf.getvalue()


def framed(schema_id: int) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big")


def rec(i: int, **over: Any) -> dict[str, Any]:
    r = {"id": i, "user": {"age": 20.0 + i, "city": "rome"}, "v": [1.0, 2.0], "kind": "B", "label": "yes"}
    return {**r, **over}


@pytest.fixture
def schemas(tmp_path: Path) -> dict[str, str]:
    out = {}
    for name, schema in (("v1", V1), ("v2", V2)):
        (tmp_path / f"{name}.avsc").write_text(json.dumps(schema))
        out[name] = str(tmp_path / f"{name}.avsc")
    return out


def test_avro_file_schema_nested_arrays_enums_and_rejections(schemas: dict[str, str]) -> None:
    dec = compile_source(Source.model_validate({**SPEC, "avro": {"file": schemas["v2"]}}))
    values = [avro(V2, rec(1, score=2.5)), avro(V2, rec(2, score=None)), avro(V2, rec(3, v=[1.0])),
              avro(V2, rec(4, user={"age": 1.0, "city": "oslo"})), b"\x02\x00", avro(V2, rec(6)) + b"xx",
              avro(V2, rec(7, label="no"))]
    d = dec.decode(values)
    assert d.ok.tolist() == [0, 1, 6]
    np.testing.assert_array_equal(d.x[0], [21, 0, 1, 1, 2, 1, 2.5])
    assert d.x[1, -1] == -1  # null score -> the default
    assert d.y is not None and d.y.tolist() == [1, 1, 0]
    assert d.passthrough == [{"id": 1}, {"id": 2}, {"id": 7}] and d.keys == [1, 2, 7]
    why = {r.index: (r.field, r.reason) for r in d.rejected}
    assert why[2][0] == "v[]" and why[3] == ("user.city", "not in vocabulary")
    assert why[4][0] == "" and why[4][1].startswith("not an Avro record")
    assert why[5][0] == "" and why[5][1].startswith("not an Avro record")  # trailing bytes
    assert d.schema_ids == set()


def test_confluent_framing_with_the_ids_map(schemas: dict[str, str]) -> None:
    """Two writer schemas (v1 lacks ``score``: its default) in one batch, in order; unknown id refused."""
    ids = {1: schemas["v1"], 2: schemas["v2"]}
    dec = compile_source(Source.model_validate({**SPEC, "avro": {"ids": ids}}))
    values = [avro(V1, rec(0), framed(1)), avro(V2, rec(1, score=9.0), framed(2)),
              avro(V1, rec(2), framed(1)), avro(V1, rec(3), framed(7)), avro(V1, rec(4)), None,
              avro(V2, rec(6, score=1.0), framed(2))]
    d = dec.decode(values)  # type: ignore[arg-type] # None: a tombstone
    assert d.ok.tolist() == [0, 1, 2, 6] and d.keys == [0, 1, 2, 6]
    assert d.x[:, -1].tolist() == [-1, 9, -1, 1] and d.x[:, 0].tolist() == [20, 21, 22, 26]
    assert d.schema_ids == {1, 2}
    why = {r.index: (r.field, r.reason) for r in d.rejected}
    assert why[3] == ("", "unknown schema id 7")
    assert why[4][1].startswith("not Confluent-framed") and why[5][1].startswith("not Confluent-framed")


def test_fixed_layout_reader_agrees_with_fastavro(tmp_path: Path) -> None:
    inner = {"type": "record", "name": "In", "fields": [
        {"name": "b", "type": "float"}, {"name": "on", "type": "boolean"}]}
    schema = {"type": "record", "name": "F", "fields": [
        {"name": "a", "type": "double"}, {"name": "in", "type": inner}, {"name": "y", "type": "double"}]}
    (tmp_path / "f.avsc").write_text(json.dumps(schema))
    spec = {"topic": "t", "format": "avro", "avro": {"file": str(tmp_path / "f.avsc")},
            "features": ["in.b", "a", "in.on"], "label": "y"}
    rows = [{"a": float(i), "in": {"b": i / 4, "on": i % 2 == 0}, "y": i * 10.0} for i in range(20)]
    values = [avro(schema, r) for r in rows]
    fast = compile_source(Source.model_validate(spec)).decode(values)
    # passthrough fields are read by the generic reader (fastavro) only
    generic = compile_source(Source.model_validate({**spec, "passthrough": ["a"]})).decode(values)
    np.testing.assert_array_equal(fast.x, generic.x)
    assert fast.y is not None and generic.y is not None and fast.y.tolist() == generic.y.tolist()
    np.testing.assert_array_equal(fast.x[3], [0.75, 3.0, 0.0])
    short = [*values[:2], values[2][:-1], b"\x00" * 17 + b"\x07"]
    bad = compile_source(Source.model_validate(spec)).decode(short)
    assert bad.ok.tolist() == [0, 1] and {r.index for r in bad.rejected} == {2, 3}


def test_tensor_records_from_data_push() -> None:
    head = DataBatch(job_id="j", batch_index=0, rows=3)
    many = codecs.pack(head, {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "y": np.array([0, 1, 2])})
    one = codecs.pack(head, {"x": np.arange(4, dtype=np.float32), "y": np.array([7])})
    no_x = codecs.pack(head, {"z": np.zeros(4, np.float32), "y": np.array([1])})
    spec = {"topic": "t", "format": "tensor", "features": [{"path": "x[]", "width": 4}], "label": "y",
            "label_vocabulary": ["a", "b", "c"], "passthrough": ["job_id"]}
    d = compile_source(Source.model_validate(spec)).decode([many, one, no_x, b"AIT1junk", many[:-5]])
    assert d.ok.tolist() == [0, 0, 0]  # one record of three rows
    np.testing.assert_array_equal(d.x, np.arange(12).reshape(3, 4))
    assert d.y is not None and d.y.tolist() == [0, 1, 2] and d.passthrough == [{"job_id": "j"}] * 3
    why = {r.index: (r.field, r.reason) for r in d.rejected}
    assert why[1] == ("y", "not in label_vocabulary") and why[2] == ("x[]", "missing")
    assert set(why) == {1, 2, 3, 4}


def test_unreadable_schema_file_is_a_bad_spec(tmp_path: Path) -> None:
    (tmp_path / "bad.avsc").write_text('{"type": "nonsense"}')
    for path in (tmp_path / "bad.avsc", tmp_path / "absent.avsc"):
        with pytest.raises(AiaasError) as info:
            compile_source(Source.model_validate({**SPEC, "avro": {"file": str(path)}}))
        assert info.value.code.value == "bad_request"


def test_unreachable_registry_is_unavailable_not_a_rejection() -> None:
    """A registry that cannot be reached is not the record's fault: retriable, offsets kept."""
    registry = SchemaRegistry("http://127.0.0.1:9", timeout_s=0.5, deadline_s=0.5)
    with pytest.raises(Unavailable) as info:
        registry.fetch(1)
    assert info.value.retriable and "127.0.0.1:9" in info.value.reason
