"""Prediction records as Avro (``aiaas score --output-format avro``; README, "Score your topic").

The same fields as the JSON values (``predictions``): the passthrough fields the source spec names,
``prediction`` (a label, class index or value), ``scores`` (doubles; NaN and infinity kept, Avro
has them) and ``model_version``. The writer schema is derived from the source spec, once: a
passthrough path becomes a field named with ``_`` for each character Avro names do not allow
(``user.id`` -> ``user_id``) and holds null, a boolean, a long, a double or a string (a nested
object or array is written as its JSON text). With ``--output-registry URL`` (a Confluent-compatible
schema registry) the schema is registered under ``<to>-value`` and each value is framed as the
Confluent wire format (magic byte 0, the 4-byte schema id, then the Avro binary); without, values
are bare Avro binary and ``--output-schema FILE`` writes the schema for readers.
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Sequence
from typing import Any

import httpx
import msgspec
from fastavro import parse_schema, schemaless_writer

from aiaas.agents.inference.predictions import RESERVED, predictions
from aiaas.agents.inference.predictions import encode as encode_json
from aiaas.agents.inference.scoring_settings import ScoringSettings
from aiaas.agents.inference.scoringbatch import Encode
from aiaas.schemas.errors import BadInput, Unavailable

SCALAR = ["null", "boolean", "long", "double", "string"]


def field_name(path: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", path)
    return f"_{name}" if name[0].isdigit() else name


def output_schema(passthrough: Sequence[str], name: str = "Prediction") -> dict[str, Any]:
    """The Avro record schema of the prediction values of a source with these passthrough paths."""
    fields: list[dict[str, Any]] = []
    seen = set(RESERVED)
    for path in passthrough:
        if path in RESERVED:  # ours win, as in JSON
            continue
        fname = field_name(path)
        if fname in seen:
            raise BadInput("two passthrough fields have the same Avro name", path=path, avro_name=fname)
        seen.add(fname)
        fields.append({"name": fname, "type": SCALAR, "default": None, "doc": f"passthrough {path}"})
    fields += [{"name": "prediction", "type": ["long", "double", "string"]},
               {"name": "scores", "type": {"type": "array", "items": "double"}},
               {"name": "model_version", "type": "long"}]
    return {"type": "record", "name": name, "namespace": "aiaas.scoring", "fields": fields}


def register(url: str, subject: str, schema: dict[str, Any], timeout_s: float = 10.0) -> int:
    """The id of ``schema`` under ``subject`` in a Confluent-compatible registry (registered if new)."""
    try:
        resp = httpx.post(f"{url.rstrip('/')}/subjects/{subject}/versions",
                          json={"schema": json.dumps(schema)}, timeout=timeout_s,
                          headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    except httpx.HTTPError as exc:
        raise Unavailable("the schema registry cannot be reached", url=url, detail=str(exc)) from exc
    if resp.status_code >= 400:
        raise BadInput("the schema registry refused the output schema", url=url, subject=subject,
                       status=resp.status_code, detail=resp.text[:300])
    return int(resp.json()["id"])


class AvroEncoder:
    """``encode(outputs, names, version, passthrough)`` as ``predictions.encode``, in Avro."""

    def __init__(self, passthrough: Sequence[str], schema_id: int | None = None) -> None:
        self.schema = output_schema(passthrough)
        self._parsed = parse_schema(self.schema)
        self._names = {p: field_name(p) for p in passthrough if p not in RESERVED}
        self._frame = b"" if schema_id is None else struct.pack(">bI", 0, schema_id)

    def encode(self, outputs: dict[str, Any], names: Sequence[str], version: int,
               passthrough: Sequence[dict[str, Any]] | None = None) -> list[bytes]:
        preds, scores = predictions(outputs, names)
        extras = passthrough or [{}] * len(preds)
        out: list[bytes] = []
        for extra, p, s in zip(extras, preds, scores, strict=True):
            rec = {self._names[k]: _scalar(v) for k, v in extra.items() if k in self._names}
            rec.update(prediction=p, scores=s, model_version=version)
            buf = io.BytesIO(self._frame)
            buf.seek(len(self._frame))
            schemaless_writer(buf, self._parsed, rec)
            out.append(buf.getvalue())
        return out


def _scalar(value: Any) -> Any:
    """A passthrough value as one of the union's types (an object or array as its JSON text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    item = getattr(value, "item", None)  # a numpy scalar
    if callable(item):
        return item()
    return msgspec.json.encode(value, enc_hook=str).decode()


def value_encoder(cfg: ScoringSettings, passthrough: Sequence[str]) -> Encode:
    """The worker's value encoder: JSON, or Avro (the schema registered, or written to a file)."""
    if cfg.output_format == "json":
        return encode_json
    schema_id = None
    if cfg.output_registry_url:
        schema_id = register(cfg.output_registry_url, f"{cfg.to_topic}-value", output_schema(passthrough))
    encoder = AvroEncoder(passthrough, schema_id)
    if cfg.output_schema is not None:
        cfg.output_schema.write_text(json.dumps(encoder.schema, indent=2) + "\n")
    return encoder.encode
