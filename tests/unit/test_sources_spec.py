"""The Source spec (validation, width, JSON Schema export) and the decoders' one promise on any bytes:
every record of a batch is decoded or rejected, exactly once, and nothing raises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from aiaas.cli.main import app
from aiaas.schemas.sources import Source
from aiaas.sources import compile_source


@pytest.mark.parametrize("bad", [
    {"features": []},
    {"features": ["a..b"]},
    {"features": [{"path": "v[]"}]},  # an array needs its width
    {"features": ["v[]"]},
    {"features": [{"path": "c", "vocabulary": ["x"], "default": "y"}]},
    {"features": [{"path": "c", "vocabulary": ["x"], "default": 0}]},
    {"features": [{"path": "n", "default": "zero"}]},
    {"features": ["a"], "format": "csv"},
    {"features": ["a"], "format": "avro"},
    {"features": ["a"], "format": "avro", "avro": {"file": "a.avsc", "ids": {1: "a.avsc"}}},
    {"features": ["a"], "passthrough": ["bad path"]},
    {"features": ["a"], "surprise": 1},
])
def test_invalid_specs_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Source.model_validate({"topic": "t", **bad})


def test_width_counts_every_column() -> None:
    s = Source.model_validate({"topic": "t", "features": [
        "a", {"path": "v[]", "width": 4}, {"path": "c", "vocabulary": ["x", "y", "z"]},
        {"path": "d", "vocabulary": ["x", "y"], "encoding": "index"}]})
    assert s.width() == 1 + 4 + 3 + 1 and [f.path for f in s.fields()] == ["a", "v[]", "c", "d"]


def test_schemas_export_includes_the_source(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["schemas", "export", str(tmp_path)])
    assert result.exit_code == 0, result.output
    schema = json.loads((tmp_path / "source.schema.json").read_text())
    assert {"topic", "features"} <= set(schema["required"]) and "avro" in schema["properties"]


SPECS = [
    {"topic": "t", "label": "y", "passthrough": ["id"],
     "features": ["a.b", {"path": "v[]", "width": 2, "default": 0}, {"path": "c", "vocabulary": ["x", "y"]}]},
    {"topic": "t", "format": "csv", "csv": {"columns": ["a", "b", "c"]},
     "features": ["a", {"path": "c", "vocabulary": ["x"], "default": "x"}], "label": "b"},
    {"topic": "t", "format": "csv", "csv": {"columns": ["a", "b"]}, "features": ["a", "b"]},
    {"topic": "t", "format": "tensor", "features": [{"path": "x[]", "width": 3}], "label": "y"},
    {"topic": "t", "format": "avro", "avro": {"ids": {1: "AVSC"}}, "features": ["a"], "label": "s"},
]
AVSC = {"type": "record", "name": "R",
        "fields": [{"name": "a", "type": "double"}, {"name": "s", "type": "string"}]}

junk = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"{}", b'{"a": {"b": 1}, "v": [1, 2], "c": "x", "y": 1}', b"1,2,x", b"1,2",
                     b"null", b"\x00\x00\x00\x00\x01", b"AIT1", b"\r\x00", b'1,"x\ry",2',  # csv.Error
                     b"\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xf0?\x02s"]),
    st.none(),
)


@settings(max_examples=150, deadline=None)
@given(which=st.integers(0, len(SPECS) - 1), values=st.lists(junk, max_size=12))
def test_any_bytes_are_decoded_or_rejected_exactly_once(tmp_path_factory: pytest.TempPathFactory, which: int,
                                                        values: list[bytes | None]) -> None:
    spec = json.loads(json.dumps(SPECS[which]))
    if spec.get("format") == "avro":
        path = tmp_path_factory.mktemp("avsc") / "r.avsc"
        path.write_text(json.dumps(AVSC))
        spec["avro"]["ids"] = {1: str(path)}
    source = Source.model_validate(spec)
    d = compile_source(source).decode(values)  # type: ignore[arg-type] # None: a tombstone
    rejected = [r.index for r in d.rejected]
    assert len(set(rejected)) == len(rejected) and not set(rejected) & set(d.ok.tolist())
    assert set(rejected) | set(d.ok.tolist()) == set(range(len(values)))
    assert d.x.shape == (len(d.ok), source.width()) and (d.y is None or len(d.y) == len(d.ok))
    if source.format != "tensor":  # a tensor record may hold several rows
        assert len(set(d.ok.tolist())) == len(d.ok)
