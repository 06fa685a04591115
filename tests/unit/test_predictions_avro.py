"""Avro prediction values: the schema derived from the passthrough paths, and values that read back."""

from __future__ import annotations

import io
import struct
from typing import Any, cast

import numpy as np
import pytest
from fastavro import parse_schema, schemaless_reader

from aiaas.agents.inference.predictions_avro import AvroEncoder, output_schema
from aiaas.schemas.errors import BadInput


def test_passthrough_paths_become_avro_names_and_ours_win() -> None:
    names = [f["name"] for f in output_schema(["user.id", "9lives", "prediction"])["fields"]]
    assert names == ["user_id", "_9lives", "prediction", "scores", "model_version"]
    with pytest.raises(BadInput, match="same Avro name"):
        output_schema(["a.b", "a_b"])


def test_values_read_back_with_nan_nested_passthrough_and_the_confluent_frame() -> None:
    enc = AvroEncoder(["id", "meta.tags"], schema_id=42)
    logits = np.array([[0.5, np.nan], [2.0, 1.0]], np.float32)
    values = enc.encode({"logits": logits}, ["logits"], 3,
                        [{"id": "a", "meta.tags": ["x", 1]}, {"id": np.int64(7), "meta.tags": None}])
    assert all(v[:5] == struct.pack(">bI", 0, 42) for v in values)
    schema = parse_schema(enc.schema)
    got = [cast(dict[str, Any], schemaless_reader(io.BytesIO(v[5:]), schema, None)) for v in values]
    assert got[0]["id"] == "a" and got[0]["meta_tags"] == '["x",1]' and np.isnan(got[0]["scores"][1])
    assert got[1] == {"id": 7, "meta_tags": None, "prediction": 0, "scores": [2.0, 1.0], "model_version": 3}
